//! The file format, read with the `safetensors` crate itself: exactly the documented tensors, in PyTorch's
//! `nn.Linear` layout, and exactly the documented metadata, with the optional parts present or absent.

use std::collections::{BTreeSet, HashMap};

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::optim::OptimConfig;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use super::common::bits;
use super::{adam, ce_model, momentum, mse_model, training};

fn meta_json(meta: &HashMap<String, String>, key: &str) -> Value {
    let s = meta.get(key).unwrap_or_else(|| panic!("metadata lacks {key}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("metadata {key} = {s:?} is not JSON: {e}"))
}

fn f32_list(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn read_f32(t: &TensorView<'_>) -> Vec<f32> {
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The documented example: the 5-7-3 classifier with Adam's state, saved; the model, its training state and
/// the bytes of the file.
fn saved_example() -> (Model, TrainingState, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let t = training(&model, adam());
    let ck = Checkpoint { model: model.clone(), training: Some(t.clone()) };
    let path = dir.path().join("layout.safetensors");
    checkpoint::save(&path, &ck).unwrap();
    (model, t, std::fs::read(&path).unwrap())
}

#[test]
fn the_files_tensors_are_exactly_the_documented_layout() {
    let (model, t, bytes) = saved_example();
    let st = SafeTensors::deserialize(&bytes).unwrap();

    // Tensor names: exactly the layers and the two Adam moments.
    let names: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    let want: BTreeSet<String> =
        ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "optimizer.m", "optimizer.v"]
            .into_iter()
            .map(String::from)
            .collect();
    assert_eq!(names, want);

    let spec = &model.spec;
    for l in 0..spec.layers() {
        let (i, o) = spec.layer_shape(l);
        let w = st.tensor(&format!("layers.{l}.weight")).unwrap();
        assert_eq!(w.dtype(), Dtype::F32, "layers.{l}.weight dtype");
        assert_eq!(w.shape(), &[o, i], "layers.{l}.weight is (O, I)");
        let wt = read_f32(&w);
        // Element (j, i) of the (O, I) tensor is W[i][j]: every element, bit for bit.
        for ii in 0..i {
            for j in 0..o {
                assert_eq!(
                    wt[j * i + ii].to_bits(),
                    model.params.weights[l][[ii, j]].to_bits(),
                    "layers.{l}.weight[{j}][{ii}] must be W{l}[{ii}][{j}]"
                );
            }
        }
        let b = st.tensor(&format!("layers.{l}.bias")).unwrap();
        assert_eq!(b.dtype(), Dtype::F32, "layers.{l}.bias dtype");
        assert_eq!(b.shape(), &[o], "layers.{l}.bias shape");
        assert_eq!(bits(&read_f32(&b)), bits(&model.params.biases[l].to_vec()), "layers.{l}.bias values");
    }
    // A few hand-picked elements: the planted values land where nn.Linear keeps them.
    let w0 = read_f32(&st.tensor("layers.0.weight").unwrap()); // (7, 5)
    assert_eq!(w0[0].to_bits(), (-0.0f32).to_bits(), "W0[0][0] = -0 is weight[0][0]");
    assert_eq!(w0[6 * 5 + 4].to_bits(), 1, "W0[4][6] (subnormal) is weight[6][4]");
    assert_eq!(w0[2 * 5 + 1], model.params.weights[0][[1, 2]], "W0[1][2] is weight[2][1]");
    let w1 = read_f32(&st.tensor("layers.1.weight").unwrap()); // (3, 7)
    assert_eq!(w1[2 * 7 + 6], f32::MAX, "W1[6][2] is weight[2][6]");
    assert_eq!(w1[7 + 3], model.params.weights[1][[3, 1]], "W1[3][1] is weight[1][3]");

    let n = spec.param_layout().len;
    assert_eq!(n, 5 * 7 + 7 + 7 * 3 + 3);
    for (name, want) in [("optimizer.m", &t.state.m), ("optimizer.v", &t.state.v)] {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::F32, "{name} dtype");
        assert_eq!(v.shape(), &[n], "{name} shape");
        assert_eq!(bits(&read_f32(&v)), bits(want), "{name} values in flat parameter order");
    }
}

#[test]
fn the_files_metadata_is_exactly_the_documented_layout() {
    let (model, _, bytes) = saved_example();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().expect("the checkpoint has metadata");

    // Metadata: exactly these keys, all strings, with these values.
    let keys: BTreeSet<&str> = meta.keys().map(String::as_str).collect();
    let want_keys: BTreeSet<&str> =
        ["format", "format_version", "sizes", "activations", "output", "loss", "normalization", "task", "training"]
            .into_iter()
            .collect();
    assert_eq!(keys, want_keys);
    assert_eq!(meta["format"], "backprop-mlp");
    assert_eq!(meta["format"], checkpoint::FORMAT);
    assert_eq!(meta["format_version"], "1");
    assert_eq!(meta["output"], "softmax");
    assert_eq!(meta["loss"], "cross-entropy");
    assert_eq!(meta_json(&meta, "sizes"), json!([5, 7, 3]));
    assert_eq!(meta_json(&meta, "activations"), json!(["tanh", "identity"]));
    assert_eq!(meta_json(&meta, "task"), json!({"kind": "classification", "classes": 3}));
    let norm = meta_json(&meta, "normalization");
    let nm = norm.as_object().unwrap();
    assert_eq!(nm.keys().map(String::as_str).collect::<BTreeSet<_>>(), ["kind", "offset", "scale"].into());
    assert_eq!(norm["kind"], "standard");
    let want_norm = model.normalizer.as_ref().unwrap();
    assert_eq!(bits(&f32_list(&norm["offset"])), bits(&want_norm.offset));
    assert_eq!(bits(&f32_list(&norm["scale"])), bits(&want_norm.scale));
    let tr = meta_json(&meta, "training");
    let tm = tr.as_object().unwrap();
    assert_eq!(tm.keys().map(String::as_str).collect::<BTreeSet<_>>(), ["epoch", "optimizer", "seed", "step"].into());
    assert_eq!(tr["step"], json!(17));
    assert_eq!(tr["epoch"], json!(3));
    assert_eq!(tr["seed"], json!(9));
    assert_eq!(
        tr["optimizer"],
        json!({"name": "adam", "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    );
}

#[test]
fn the_mse_model_metadata_and_the_optional_parts() {
    let dir = tempfile::tempdir().unwrap();
    let model = mse_model();

    // With momentum: optimizer.m only.
    let path = dir.path().join("momentum.safetensors");
    checkpoint::save(&path, &Checkpoint { model: model.clone(), training: Some(training(&model, momentum())) })
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta = SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone().unwrap();
    let mut names: Vec<&str> = st.names();
    names.sort();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight",
            "layers.2.bias",
            "layers.2.weight",
            "optimizer.m"
        ]
    );
    assert_eq!(meta_json(&meta, "sizes"), json!([4, 6, 5, 2]));
    assert_eq!(meta_json(&meta, "activations"), json!(["relu", "relu", "sigmoid"]));
    assert_eq!(meta["output"], "sigmoid");
    assert_eq!(meta["loss"], "mse");
    assert_eq!(meta_json(&meta, "task"), json!({"kind": "regression", "targets": 2}));
    assert_eq!(meta_json(&meta, "normalization")["kind"], "minmax");
    assert_eq!(
        meta_json(&meta, "training"),
        json!({"optimizer": {"name": "momentum", "weight_decay": 0.1, "momentum": 0.9}, "step": 17, "epoch": 3, "seed": 9})
    );

    // With SGD: a training key, but no optimizer tensors.
    let path = dir.path().join("sgd.safetensors");
    checkpoint::save(&path, &Checkpoint { model: model.clone(), training: Some(training(&model, OptimConfig::sgd())) })
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta = SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone().unwrap();
    assert!(st.names().iter().all(|n| n.starts_with("layers.")), "SGD has no optimizer tensors: {:?}", st.names());
    assert_eq!(st.len(), 6);
    assert_eq!(
        meta_json(&meta, "training"),
        json!({"optimizer": {"name": "sgd", "weight_decay": 0.0}, "step": 17, "epoch": 3, "seed": 9})
    );

    // Without training state: no training key, no optimizer tensors; null normalisation and task.
    let bare = Model { normalizer: None, task: None, ..model };
    let path = dir.path().join("bare.safetensors");
    checkpoint::save(&path, &Checkpoint { model: bare, training: None }).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta = SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone().unwrap();
    assert!(!meta.contains_key("training"), "a checkpoint without training state has no training key: {meta:?}");
    assert!(st.tensor("optimizer.m").is_err() && st.tensor("optimizer.v").is_err());
    assert_eq!(st.len(), 6);
    assert_eq!(meta["normalization"], "null");
    assert_eq!(meta["task"], "null");
    assert_eq!(meta.len(), 8);
}
