//! Checkpoints: bitwise round trips, the documented safetensors layout read with the `safetensors` crate
//! itself, bare PyTorch-style weights for `--init`, corrupt files (never a panic), predictions after a
//! reload on the CPU and the GPU, resuming from a checkpoint, and atomic writes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{Normalization, Normalizer, Task};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;
use rand::RngExt;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use common::{gpu, random, rng};

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

fn adam() -> OptimConfig {
    OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 }
}

fn momentum() -> OptimConfig {
    OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.1 }
}

/// 5-7-3, tanh hidden, softmax + cross-entropy. Biases are non-zero and a few awkward f32 values (negative
/// zero, a subnormal, the largest finite value, a value that is not a short decimal) are planted.
fn ce_model() -> Model {
    let spec = MlpSpec::with_output(vec![5, 7, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let mut params = Params::init(&spec, 21);
    let mut r = rng(22);
    for b in params.biases.iter_mut() {
        b.iter_mut().for_each(|v| *v = r.random_range(-1.0f32..1.0));
    }
    params.weights[0][[0, 0]] = -0.0;
    params.weights[0][[4, 6]] = f32::from_bits(1); // smallest subnormal
    params.weights[1][[6, 2]] = f32::MAX;
    params.biases[1][1] = 1.0 / 3.0;
    let normalizer = Normalizer {
        kind: Normalization::Standard,
        offset: vec![0.1, -2.5, 1.0 / 3.0, -0.0, 1e-30],
        scale: vec![1.0, 0.3, 7.25, f32::from_bits(0x3f80_0001), 123456.79],
    };
    Model { spec, params, normalizer: Some(normalizer), task: Some(Task::Classification { classes: 3 }) }
}

/// 4-6-5-2, relu hidden, sigmoid output, MSE; min-max normalisation; regression over 2 targets.
fn mse_model() -> Model {
    let spec = MlpSpec::with_output(vec![4, 6, 5, 2], Activation::Relu, Output::Sigmoid, Loss::Mse).unwrap();
    let mut params = Params::init(&spec, 31);
    let mut r = rng(32);
    for b in params.biases.iter_mut() {
        b.iter_mut().for_each(|v| *v = r.random_range(-0.5f32..0.5));
    }
    let normalizer =
        Normalizer { kind: Normalization::MinMax, offset: vec![-1.0, 0.0, 2.0, 1e-7], scale: vec![0.5, 1.0, 0.1, 3.0] };
    Model { spec, params, normalizer: Some(normalizer), task: Some(Task::Regression { targets: 2 }) }
}

/// An optimizer state with non-zero moments (v > 0), as after 17 steps.
fn state_for(cfg: &OptimConfig, n: usize, seed: u64) -> OptimState {
    let mut r = rng(seed);
    let mut s = OptimState::new(cfg, n);
    s.m.iter_mut().for_each(|v| *v = r.random_range(-0.1f32..0.1));
    s.v.iter_mut().for_each(|v| *v = r.random_range(1e-8f32..1e-2));
    if let Some(first) = s.m.first_mut() {
        *first = -0.0;
    }
    s.step = 17;
    s
}

fn training(model: &Model, cfg: OptimConfig) -> TrainingState {
    let n = model.spec.param_layout().len;
    TrainingState { optimizer: cfg, state: state_for(&cfg, n, 40), epoch: 3, seed: 9 }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts two checkpoints are equal field by field, with every f32 bit-identical.
fn assert_bitwise_eq(got: &Checkpoint, want: &Checkpoint, what: &str) {
    assert_eq!(got.model.spec, want.model.spec, "{what}: spec");
    assert_eq!(got.model.spec.output(), want.model.spec.output(), "{what}: output");
    assert_eq!(got.model.task, want.model.task, "{what}: task");
    assert_eq!(bits(&got.model.params.to_flat()), bits(&want.model.params.to_flat()), "{what}: parameter bits");
    for l in 0..want.model.spec.layers() {
        assert_eq!(got.model.params.weights[l].dim(), want.model.params.weights[l].dim(), "{what}: W{l} shape");
        assert_eq!(got.model.params.biases[l].len(), want.model.params.biases[l].len(), "{what}: b{l} length");
    }
    match (&got.model.normalizer, &want.model.normalizer) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            assert_eq!(g.kind, w.kind, "{what}: normalisation kind");
            assert_eq!(bits(&g.offset), bits(&w.offset), "{what}: normalisation offset bits");
            assert_eq!(bits(&g.scale), bits(&w.scale), "{what}: normalisation scale bits");
        }
        (g, w) => panic!("{what}: normalizer {g:?} != {w:?}"),
    }
    match (&got.training, &want.training) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            assert_eq!(g.optimizer, w.optimizer, "{what}: optimizer");
            assert_eq!(g.epoch, w.epoch, "{what}: epoch");
            assert_eq!(g.seed, w.seed, "{what}: seed");
            assert_eq!(g.state.step, w.state.step, "{what}: step");
            assert_eq!(bits(&g.state.m), bits(&w.state.m), "{what}: optimizer.m bits");
            assert_eq!(bits(&g.state.v), bits(&w.state.v), "{what}: optimizer.v bits");
        }
        (g, w) => panic!("{what}: training {g:?} != {w:?}"),
    }
    assert_eq!(got, want, "{what}: PartialEq");
}

fn save_load(dir: &Path, name: &str, ck: &Checkpoint) -> Checkpoint {
    let path = dir.join(name);
    checkpoint::save(&path, ck).unwrap_or_else(|e| panic!("saving {name}: {e}"));
    checkpoint::load(&path).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn list(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A raw tensor to write with the safetensors crate.
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Raw {
    fn f32(name: &str, shape: &[usize], v: &[f32]) -> Raw {
        Raw { name: name.into(), dtype: Dtype::F32, shape: shape.to_vec(), bytes: f32_bytes(v) }
    }
    fn f64(name: &str, shape: &[usize], v: &[f64]) -> Raw {
        Raw { name: name.into(), dtype: Dtype::F64, shape: shape.to_vec(), bytes: f64_bytes(v) }
    }
}

fn write_raw(path: &Path, tensors: &[Raw], meta: Option<HashMap<String, String>>) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, meta).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The tensors PyTorch's `save_file(model.state_dict())` writes for `nn.Linear` layers: weight (O, I) = Wᵀ.
fn torch_layers_f32(p: &Params<f32>) -> Vec<Raw> {
    let mut out = Vec::new();
    for (l, (w, b)) in p.weights.iter().zip(&p.biases).enumerate() {
        let (i, o) = w.dim();
        let wt: Vec<f32> = w.t().iter().copied().collect();
        out.push(Raw::f32(&format!("layers.{l}.weight"), &[o, i], &wt));
        out.push(Raw::f32(&format!("layers.{l}.bias"), &[o], &b.to_vec()));
    }
    out
}

fn torch_layers_f64(p: &Params<f64>) -> Vec<Raw> {
    let mut out = Vec::new();
    for (l, (w, b)) in p.weights.iter().zip(&p.biases).enumerate() {
        let (i, o) = w.dim();
        let wt: Vec<f64> = w.t().iter().copied().collect();
        out.push(Raw::f64(&format!("layers.{l}.weight"), &[o, i], &wt));
        out.push(Raw::f64(&format!("layers.{l}.bias"), &[o], &b.to_vec()));
    }
    out
}

/// Runs `f`, turning a panic into a test failure that says what was being loaded.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked instead of returning an error: {msg}");
        }
    }
}

/// `load` of `path` must be an error whose message names the file.
fn assert_load_err(path: &Path, what: &str) -> String {
    let r = no_panic(what, || checkpoint::load(path));
    let e = match r {
        Ok(_) => panic!("{what}: load succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
    e
}

// ---------------------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------------------

#[test]
fn round_trip_is_bitwise_for_both_models_with_and_without_training_state() {
    let dir = tempfile::tempdir().unwrap();
    let ce = ce_model();
    let mse = mse_model();
    let cases = [
        ("ce-adam", Checkpoint { model: ce.clone(), training: Some(training(&ce, adam())) }),
        ("ce-momentum", Checkpoint { model: ce.clone(), training: Some(training(&ce, momentum())) }),
        ("ce-sgd", Checkpoint { model: ce.clone(), training: Some(training(&ce, OptimConfig::sgd())) }),
        ("ce-bare", Checkpoint { model: ce.clone(), training: None }),
        ("mse-adam", Checkpoint { model: mse.clone(), training: Some(training(&mse, adam())) }),
        ("mse-bare", Checkpoint { model: mse.clone(), training: None }),
        (
            "mse-no-normalizer-no-task",
            Checkpoint { model: Model { normalizer: None, task: None, ..mse.clone() }, training: None },
        ),
    ];
    for (name, ck) in &cases {
        let file = format!("{name}.safetensors");
        let loaded = save_load(dir.path(), &file, ck);
        assert_bitwise_eq(&loaded, ck, name);
        // The loaded checkpoint saves and loads to the same values again.
        let again = save_load(dir.path(), &format!("{name}-again.safetensors"), &loaded);
        assert_bitwise_eq(&again, ck, &format!("{name} saved twice"));
    }
    // The Adam case really has non-zero moments, step 17, epoch 3, seed 9.
    let t = cases[0].1.training.as_ref().unwrap();
    assert!(t.state.m.iter().any(|&v| v != 0.0) && t.state.v.iter().all(|&v| v > 0.0));
    assert_eq!((t.state.step, t.epoch, t.seed), (17, 3, 9));
}

#[test]
fn extreme_seed_step_and_epoch_survive_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let m = mse_model();
    let mut t = training(&m, adam());
    t.seed = u64::MAX;
    t.state.step = (1 << 53) + 1; // not representable as an f64
    t.epoch = 1_000_000_007;
    let ck = Checkpoint { model: m, training: Some(t) };
    let loaded = save_load(dir.path(), "extreme.safetensors", &ck);
    assert_bitwise_eq(&loaded, &ck, "extreme seed/step/epoch");
}

#[test]
fn saving_the_same_checkpoint_twice_writes_the_same_bytes() {
    // Checkpoints of the same run should be byte-for-byte reproducible (checksums, caches, diffs).
    let m = ce_model();
    let ck = Checkpoint { model: m.clone(), training: Some(training(&m, adam())) };
    let first = checkpoint::to_bytes(&ck).unwrap();
    for i in 0..8 {
        let again = checkpoint::to_bytes(&ck).unwrap();
        assert_eq!(first.len(), again.len());
        if again != first {
            let header = |b: &[u8]| {
                let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                String::from_utf8_lossy(&b[8..8 + n.min(160)]).into_owned()
            };
            panic!(
                "to_bytes #{i} of the same checkpoint differs from the first:\n first: {}...\n again: {}...",
                header(&first),
                header(&again)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The file format, read with the safetensors crate
// ---------------------------------------------------------------------------------------------------------

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

#[test]
fn the_file_is_exactly_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let t = training(&model, adam());
    let ck = Checkpoint { model: model.clone(), training: Some(t.clone()) };
    let path = dir.path().join("layout.safetensors");
    checkpoint::save(&path, &ck).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().expect("the checkpoint has metadata");

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

// ---------------------------------------------------------------------------------------------------------
// --init: bare layer tensors as PyTorch writes them
// ---------------------------------------------------------------------------------------------------------

#[test]
fn load_init_reads_pytorch_style_f32_and_f64_files_without_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;

    // F32, no metadata at all.
    let p32 = dir.path().join("torch32.safetensors");
    write_raw(&p32, &torch_layers_f32(&model.params), None);
    let got = checkpoint::load_init(&p32, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&model.params.to_flat()), "F32 init is bit-exact");
    got.check(spec).unwrap();

    // F32 with PyTorch's {"format": "pt"} metadata and an unrelated extra tensor: still fine for --init.
    let ppt = dir.path().join("torch_pt.safetensors");
    let mut tensors = torch_layers_f32(&model.params);
    tensors.push(Raw::f32("head.scale", &[1], &[2.0]));
    write_raw(&ppt, &tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())])));
    let got = checkpoint::load_init(&ppt, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&model.params.to_flat()));

    // F64: values exactly representable in f32 come back exact; others round to the nearest f32.
    let mut p64 = model.params.to_f64();
    p64.weights[0][[1, 2]] = 0.1; // not an f32
    p64.biases[1][0] = -1.0 / 3.0;
    let f64_path = dir.path().join("torch64.safetensors");
    write_raw(&f64_path, &torch_layers_f64(&p64), None);
    let got = checkpoint::load_init(&f64_path, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&p64.to_f32().to_flat()), "F64 init rounds to f32");
    assert_eq!(got.weights[0][[1, 2]], 0.1f32);
    assert_eq!(got.biases[1][0], -1.0f32 / 3.0);
}

/// `load_init` of the file must fail with a message naming the file and `tensor`.
fn assert_init_err(path: &Path, spec: &MlpSpec, tensor: &str, what: &str) {
    let r = no_panic(what, || checkpoint::load_init(path, spec));
    let e = match r {
        Ok(_) => panic!("{what}: load_init succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
    assert!(e.contains(tensor), "{what}: the error does not name the tensor {tensor}: {e}");
}

#[test]
fn load_init_rejects_wrong_shapes_and_dtypes_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    let good = || torch_layers_f32(&model.params);
    let p = &model.params;
    let file = |name: &str| dir.path().join(format!("{name}.safetensors"));

    // Weight stored as (I, O), i.e. W itself instead of Wᵀ.
    let path = file("transposed");
    let mut t = good();
    t[0] = Raw::f32("layers.0.weight", &[5, 7], &p.weights[0].iter().copied().collect::<Vec<_>>());
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.0.weight", "(I, O) weight");

    // Flattened weight (same element count, wrong rank).
    let path = file("flat_weight");
    let mut t = good();
    t[2] = Raw::f32("layers.1.weight", &[21], &p.weights[1].t().iter().copied().collect::<Vec<_>>());
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.1.weight", "rank-1 weight");

    // Bias of the wrong length, and a bias of shape (1, O).
    let path = file("bias_len");
    let mut t = good();
    t[1] = Raw::f32("layers.0.bias", &[6], &[0.0; 6]);
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.0.bias", "short bias");
    let path = file("bias_2d");
    let mut t = good();
    t[3] = Raw::f32("layers.1.bias", &[1, 3], &[0.0; 3]);
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.1.bias", "(1, O) bias");

    // A missing tensor.
    let path = file("missing");
    let mut t = good();
    t.remove(3);
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.1.bias", "missing bias");
    let path = file("missing_weight");
    let mut t = good();
    t.remove(0);
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.0.weight", "missing weight");

    // Non-finite values, in F32 and in F64.
    for (name, bad) in [("nan", f32::NAN), ("inf", f32::INFINITY), ("neg_inf", f32::NEG_INFINITY)] {
        let path = file(name);
        let mut t = good();
        let mut w: Vec<f32> = p.weights[1].t().iter().copied().collect();
        w[20] = bad;
        t[2] = Raw::f32("layers.1.weight", &[3, 7], &w);
        write_raw(&path, &t, None);
        assert_init_err(&path, spec, "layers.1.weight", &format!("{name} in F32"));
    }
    let path = file("f64_nan");
    let mut t = torch_layers_f64(&p.to_f64());
    t[1] = Raw::f64("layers.0.bias", &[7], &[0.0, 0.0, 0.0, f64::NAN, 0.0, 0.0, 0.0]);
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.0.bias", "NaN in F64");
    let path = file("f64_overflow");
    let mut t = torch_layers_f64(&p.to_f64());
    t[3] = Raw::f64("layers.1.bias", &[3], &[0.0, 1e300, 0.0]); // finite in f64, infinite in f32
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.1.bias", "F64 beyond the f32 range");

    // Non-float dtypes.
    for (dtype, width) in [(Dtype::I32, 4usize), (Dtype::I64, 8), (Dtype::U8, 1), (Dtype::F16, 2), (Dtype::BF16, 2)] {
        let path = file(&format!("dtype_{dtype:?}"));
        let mut t = good();
        t[0] = Raw { name: "layers.0.weight".into(), dtype, shape: vec![7, 5], bytes: vec![0u8; 35 * width] };
        write_raw(&path, &t, None);
        assert_init_err(&path, spec, "layers.0.weight", &format!("{dtype:?} weight"));
    }

    // A file that is not a safetensors file at all, and one that does not exist.
    let path = file("garbage");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let e = no_panic("garbage", || checkpoint::load_init(&path, spec)).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    let path = file("does_not_exist");
    let e = checkpoint::load_init(&path, spec).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn load_init_rejects_an_extra_layer_naming_the_extra_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    // A whole extra layer (a deeper PyTorch network than --layers describes).
    let path = dir.path().join("extra.safetensors");
    let mut t = torch_layers_f32(&model.params);
    t.push(Raw::f32("layers.2.weight", &[3, 3], &[0.0; 9]));
    t.push(Raw::f32("layers.2.bias", &[3], &[0.0; 3]));
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.2", "extra layer");
    // Only the bias of an extra layer.
    let path = dir.path().join("extra_bias.safetensors");
    let mut t = torch_layers_f32(&model.params);
    t.push(Raw::f32("layers.2.bias", &[3], &[0.0; 3]));
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.2.bias", "an extra layer's bias alone");
}

// ---------------------------------------------------------------------------------------------------------
// Corrupt files
// ---------------------------------------------------------------------------------------------------------

fn valid_bytes() -> Vec<u8> {
    let m = ce_model();
    let t = training(&m, adam());
    checkpoint::to_bytes(&Checkpoint { model: m, training: Some(t) }).unwrap()
}

#[test]
fn random_bytes_and_empty_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.safetensors");
    std::fs::write(&path, b"").unwrap();
    assert_load_err(&path, "empty file");
    let mut r = rng(50);
    for len in [1usize, 7, 8, 9, 64, 1000, 4096] {
        for k in 0..4 {
            let mut bytes: Vec<u8> = (0..len).map(|_| r.random::<u8>()).collect();
            if k == 1 && len >= 8 {
                // A plausible small header length followed by noise.
                let n = (len as u64).saturating_sub(8).min(200);
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
            if k == 2 && len >= 8 {
                // A header length far past the end.
                bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            }
            std::fs::write(&path, &bytes).unwrap();
            assert_load_err(&path, &format!("{len} random bytes (variant {k})"));
        }
    }
    // A directory and a missing file.
    assert_load_err(dir.path(), "a directory");
    assert_load_err(&dir.path().join("missing.safetensors"), "a missing file");
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let path = dir.path().join("truncated.safetensors");
    let mut lengths = vec![1, 4, 7, 8, 9, 8 + header / 2, 8 + header - 1, 8 + header, 8 + header + 1];
    lengths.extend([bytes.len() - 4, bytes.len() - 1, bytes.len() / 2]);
    for len in lengths {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert_load_err(&path, &format!("truncated to {len} of {} bytes", bytes.len()));
    }
    // Trailing garbage is also an error.
    let mut longer = bytes.clone();
    longer.extend([0u8; 4]);
    std::fs::write(&path, &longer).unwrap();
    assert_load_err(&path, "4 extra bytes at the end");
}

#[test]
fn flipped_bytes_in_the_header_never_panic_and_structural_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = valid_bytes();
    let path = dir.path().join("flipped.safetensors");
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let text = std::str::from_utf8(&bytes[8..8 + header]).unwrap().to_string();

    // Positions whose flip must be an error: the braces, the quotes around keys, the dtype, the format name.
    let mut must_fail: Vec<usize> = vec![0, text.rfind('}').unwrap()];
    must_fail.push(text.find("\"F32\"").unwrap() + 2); // F32 -> F22/F12/...
    must_fail.push(text.find("backprop-mlp").unwrap() + 3);
    must_fail.push(text.find("\"__metadata__\"").unwrap());
    must_fail.push(text.find("\"layers.0.weight\"").unwrap() + 1);
    must_fail.push(text.find("data_offsets").unwrap() + 1);
    for pos in must_fail {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[8 + pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            assert_load_err(&path, &format!("header byte {pos} ({:?}) ^ {mask:#x}", text.as_bytes()[pos] as char));
        }
    }

    // Every other single-byte flip: an error naming the file, or a checkpoint that loads (a changed digit in
    // a float can still be a valid file); never a panic.
    let mut errors = 0;
    for pos in 0..header {
        for mask in [0x01u8, 0x04, 0x10, 0x40, 0xff] {
            let mut b = bytes.clone();
            b[8 + pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            let what = format!("header byte {pos} ^ {mask:#x}");
            match no_panic(&what, || checkpoint::load(&path)) {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    let e = e.to_string();
                    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
                }
            }
        }
    }
    assert!(errors > header * 3, "most flips must be errors, got {errors} of {}", header * 5);

    // Flips in the 8-byte length prefix.
    for pos in 0..8 {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[pos] ^= mask;
            std::fs::write(&path, &b).unwrap();
            assert_load_err(&path, &format!("length byte {pos} ^ {mask:#x}"));
        }
    }
}

/// A file with the documented metadata, where the metadata is chosen by the test.
fn write_with_meta(path: &Path, tensors: &[Raw], edit: impl FnOnce(&mut HashMap<String, String>)) {
    let mut meta: HashMap<String, String> = [
        ("format", "backprop-mlp"),
        ("format_version", "1"),
        ("sizes", "[5,7,3]"),
        ("activations", "[\"tanh\",\"identity\"]"),
        ("output", "softmax"),
        ("loss", "cross-entropy"),
        ("normalization", "null"),
        ("task", "null"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    edit(&mut meta);
    write_raw(path, tensors, Some(meta));
}

#[test]
fn metadata_problems_are_errors_and_a_missing_format_points_to_init() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let layers = torch_layers_f32(&model.params);
    let path = dir.path().join("meta.safetensors");

    // The hand-written metadata is accepted as is (the baseline for the edits below).
    write_with_meta(&path, &layers, |_| {});
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(bits(&ck.model.params.to_flat()), bits(&model.params.to_flat()));
    assert_eq!(ck.model.spec, model.spec);

    // No metadata at all, or metadata without "format": the message names the file and --init.
    write_raw(&path, &layers, None);
    let e = assert_load_err(&path, "no metadata");
    assert!(e.contains("--init"), "a bare weights file should point to --init: {e}");
    write_with_meta(&path, &layers, |m| {
        m.remove("format");
    });
    let e = assert_load_err(&path, "no format key");
    assert!(e.contains("--init"), "a file without format should point to --init: {e}");

    type Edit = Box<dyn FnOnce(&mut HashMap<String, String>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("other format", Box::new(|m| drop(m.insert("format".into(), "gguf".into())))),
        ("version 2", Box::new(|m| drop(m.insert("format_version".into(), "2".into())))),
        ("no version", Box::new(|m| drop(m.remove("format_version")))),
        ("sizes not JSON", Box::new(|m| drop(m.insert("sizes".into(), "[5,7,".into())))),
        ("sizes disagree with tensors", Box::new(|m| drop(m.insert("sizes".into(), "[5,8,3]".into())))),
        ("a zero width", Box::new(|m| drop(m.insert("sizes".into(), "[5,0,3]".into())))),
        ("negative width", Box::new(|m| drop(m.insert("sizes".into(), "[5,-7,3]".into())))),
        ("one width", Box::new(|m| drop(m.insert("sizes".into(), "[5]".into())))),
        ("unknown activation", Box::new(|m| drop(m.insert("activations".into(), "[\"gelu\",\"identity\"]".into())))),
        ("too few activations", Box::new(|m| drop(m.insert("activations".into(), "[\"tanh\"]".into())))),
        ("unknown loss", Box::new(|m| drop(m.insert("loss".into(), "hinge".into())))),
        ("no loss", Box::new(|m| drop(m.remove("loss")))),
        ("no normalization", Box::new(|m| drop(m.remove("normalization")))),
        (
            "normalisation of the wrong width",
            Box::new(|m| {
                drop(m.insert("normalization".into(), "{\"kind\":\"standard\",\"offset\":[0],\"scale\":[1]}".into()))
            }),
        ),
        ("no task", Box::new(|m| drop(m.remove("task")))),
        ("training not JSON", Box::new(|m| drop(m.insert("training".into(), "{".into())))),
        (
            "training without optimizer tensors",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "adam", "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999,
                    "eps": 1e-8}, "step": 1, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
        (
            "training without a step",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "sgd", "weight_decay": 0.0}, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
        (
            "training with an invalid optimizer",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "sgd", "weight_decay": -1.0}, "step": 1, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
    ];
    for (what, edit) in cases {
        write_with_meta(&path, &layers, edit);
        assert_load_err(&path, what);
    }
}

#[test]
fn metadata_with_absurd_widths_is_an_error_not_a_panic() {
    // One corrupted width must not make the loader allocate (or overflow on) a huge parameter set before it
    // compares the tensors' shapes.
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let layers = torch_layers_f32(&model.params);
    let path = dir.path().join("absurd.safetensors");
    let huge = 1u64 << 32;
    // (Only sizes whose very first layer overflows: a merely huge first layer could make the allocator abort
    // the whole test binary.)
    for sizes in [format!("[{huge},{huge}]"), format!("[{},{huge},3]", huge * 2)] {
        let n = sizes.matches(',').count();
        let acts = json!(vec!["identity"; n]).to_string();
        write_with_meta(&path, &layers, |m| {
            m.insert("sizes".into(), sizes.clone());
            m.insert("activations".into(), acts);
            m.insert("output".into(), "identity".into());
            m.insert("loss".into(), "mse".into());
        });
        assert_load_err(&path, &format!("sizes {sizes}"));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Save, load, predict; resume
// ---------------------------------------------------------------------------------------------------------

fn batch(spec: &MlpSpec, n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut r = rng(seed);
    let x = random(&mut r, n, spec.input_width(), 1.0).mapv(|v| v as f32);
    let o = spec.output_width();
    let y = match spec.loss() {
        Loss::CrossEntropy => Array2::from_shape_fn((n, o), |(b, j)| if (b * 5 + 1) % o == j { 1.0 } else { 0.0 }),
        Loss::Mse => random(&mut r, n, o, 1.0).mapv(|v| (v * 0.5 + 0.5) as f32),
    };
    (x, y)
}

#[test]
fn save_load_predict_matches_the_trained_backend_on_cpu_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    for (name, model, cfg, lr) in [("ce", ce_model(), adam(), 0.01f32), ("mse", mse_model(), momentum(), 0.1)] {
        let mut params = model.params.clone();
        // Keep the planted f32::MAX out of a network that has to predict.
        params.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| v.clamp(-1.0, 1.0)));
        let mut cpu = CpuBackend::new(model.spec.clone(), params).unwrap();
        cpu.set_optimizer(cfg).unwrap();
        let (x, y) = batch(&model.spec, 7, 60);
        for _ in 0..5 {
            cpu.step(x.view(), y.view(), lr, false).unwrap();
        }
        let trained = Model { params: cpu.params().unwrap(), ..model.clone() };
        let state = cpu.optimizer_state().unwrap();
        assert_eq!(state.step, 5);
        let ck = Checkpoint {
            model: trained.clone(),
            training: Some(TrainingState { optimizer: cfg, state, epoch: 1, seed: 5 }),
        };
        let path = dir.path().join(format!("{name}.safetensors"));
        checkpoint::save(&path, &ck).unwrap();
        let loaded = checkpoint::load(&path).unwrap();
        assert_bitwise_eq(&loaded, &ck, name);

        let (xt, _) = batch(&model.spec, 9, 61);
        let want = cpu.predict(xt.view()).unwrap();
        let mut cpu2 = CpuBackend::new(loaded.model.spec.clone(), loaded.model.params.clone()).unwrap();
        let got = cpu2.predict(xt.view()).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}: CPU predictions from the loaded checkpoint"
        );
        let mut g = GpuMlp::new(gpu(), loaded.model.spec.clone(), &loaded.model.params).unwrap();
        let got = g.predict(xt.view()).unwrap();
        let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        common::assert_close(&format!("{name}: GPU predictions"), got.as_slice().unwrap(), &want64, 1e-5, 0.0);
    }
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [adam(), momentum(), OptimConfig::sgd()] {
        let model = mse_model();
        let (x, y) = batch(&model.spec, 7, 70);
        let lr = 0.02f32;
        let mut straight = CpuBackend::new(model.spec.clone(), model.params.clone()).unwrap();
        straight.set_optimizer(cfg).unwrap();
        for _ in 0..10 {
            straight.step(x.view(), y.view(), lr, false).unwrap();
        }

        let mut first = CpuBackend::new(model.spec.clone(), model.params.clone()).unwrap();
        first.set_optimizer(cfg).unwrap();
        for _ in 0..4 {
            first.step(x.view(), y.view(), lr, false).unwrap();
        }
        let ck = Checkpoint {
            model: Model { params: first.params().unwrap(), ..model.clone() },
            training: Some(TrainingState {
                optimizer: first.optimizer(),
                state: first.optimizer_state().unwrap(),
                epoch: 4,
                seed: 1,
            }),
        };
        let path: PathBuf = dir.path().join(format!("resume-{}.safetensors", cfg.kind.name()));
        checkpoint::save(&path, &ck).unwrap();
        drop(first);

        let loaded = checkpoint::load(&path).unwrap();
        let t = loaded.training.unwrap();
        assert_eq!(t.state.step, 4);
        let mut resumed = CpuBackend::new(loaded.model.spec, loaded.model.params).unwrap();
        resumed.set_optimizer(t.optimizer).unwrap();
        resumed.set_optimizer_state(&t.state).unwrap();
        for _ in 0..6 {
            resumed.step(x.view(), y.view(), lr, false).unwrap();
        }
        let name = cfg.kind.name();
        assert_eq!(
            bits(&resumed.params().unwrap().to_flat()),
            bits(&straight.params().unwrap().to_flat()),
            "{name}: resumed parameters"
        );
        assert_eq!(resumed.optimizer_state().unwrap(), straight.optimizer_state().unwrap(), "{name}: state");
    }
}

#[test]
fn a_checkpoint_that_saves_also_loads() {
    // `load` rejects non-finite values; `save` must not write a file `load` will refuse (a diverged run would
    // otherwise replace the last good checkpoint with one that cannot be read). Either outcome is fine here:
    // save refuses (and leaves the previous file), or the file it writes loads.
    let dir = tempfile::tempdir().unwrap();
    let model = mse_model();
    let good = Checkpoint { model: model.clone(), training: Some(training(&model, adam())) };
    let path = dir.path().join("diverged.safetensors");
    let mut nan_params = good.clone();
    nan_params.model.params.weights[1][[2, 3]] = f32::NAN;
    let mut inf_bias = good.clone();
    inf_bias.model.params.biases[0][1] = f32::INFINITY;
    let mut inf_v = good.clone();
    inf_v.training.as_mut().unwrap().state.v[4] = f32::INFINITY; // g² overflowed; θ itself stays finite
    for (what, ck) in [("NaN weight", nan_params), ("infinite bias", inf_bias), ("infinite Adam v", inf_v)] {
        checkpoint::save(&path, &good).unwrap();
        let before = std::fs::read(&path).unwrap();
        match checkpoint::save(&path, &ck) {
            Err(_) => assert_eq!(std::fs::read(&path).unwrap(), before, "{what}: a refused save keeps the old file"),
            Ok(()) => {
                if let Err(e) = checkpoint::load(&path) {
                    panic!("{what}: save wrote a checkpoint that load rejects: {e}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Atomic writes
// ---------------------------------------------------------------------------------------------------------

#[test]
fn saving_is_atomic_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let ck = Checkpoint { model: model.clone(), training: Some(training(&model, adam())) };
    let path = dir.path().join("model.safetensors");
    checkpoint::save(&path, &ck).unwrap();
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]), "after the first save");

    // Overwriting works and leaves only the file.
    let ck2 = Checkpoint { model: mse_model(), training: None };
    checkpoint::save(&path, &ck2).unwrap();
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]), "after overwriting");
    assert_bitwise_eq(&checkpoint::load(&path).unwrap(), &ck2, "overwritten");
    checkpoint::save(&path, &ck).unwrap();
    assert_bitwise_eq(&checkpoint::load(&path).unwrap(), &ck, "overwritten back");
    let original = std::fs::read(&path).unwrap();

    // A path whose directory is missing: an error naming the path, and nothing is created anywhere.
    let missing = dir.path().join("no_such_dir").join("model.safetensors");
    let e = checkpoint::save(&missing, &ck).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(!dir.path().join("no_such_dir").exists());
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]));
    assert_eq!(std::fs::read(&path).unwrap(), original, "the existing checkpoint is untouched");

    // A directory as the path: an error; the directory is still an (empty) directory.
    let sub = dir.path().join("sub.safetensors");
    std::fs::create_dir(&sub).unwrap();
    let e = checkpoint::save(&sub, &ck).unwrap_err().to_string();
    assert!(e.contains(&sub.display().to_string()), "{e}");
    assert!(sub.is_dir());
    assert!(list(&sub).is_empty());
    let e = checkpoint::save(dir.path(), &ck).unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string(), "sub.safetensors".to_string()]));

    // A checkpoint that cannot be written (state of the wrong length, params of the wrong shape) over an
    // existing file: an error, and the old file is untouched.
    let mut bad = ck.clone();
    bad.training.as_mut().unwrap().state.v.pop();
    assert!(checkpoint::save(&path, &bad).is_err());
    let mut bad = ck.clone();
    bad.model.params.biases[0] = ndarray::Array1::zeros(2);
    assert!(checkpoint::save(&path, &bad).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), original, "a failed save leaves the old checkpoint");
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string(), "sub.safetensors".to_string()]));

    // Saving a second file (another extension) beside the first leaves exactly the named files.
    let other = dir.path().join("other.ckpt");
    checkpoint::save(&other, &ck).unwrap();
    assert_eq!(
        list(dir.path()),
        BTreeSet::from(["model.safetensors".into(), "other.ckpt".into(), "sub.safetensors".into()])
    );
}

// ---------------------------------------------------------------------------------------------------------
// Reading within limits, from any source; metadata read strictly
// ---------------------------------------------------------------------------------------------------------

#[test]
fn a_missing_checkpoint_is_one_clear_line_for_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let m = missing.to_str().unwrap();
    let want = format!("{m}: no such file");
    assert_eq!(checkpoint::load(&missing).unwrap_err().to_string(), want);
    assert_eq!(checkpoint::load_init(&missing, &ce_model().spec).unwrap_err().to_string(), want);
    let out = dir.path().join("out.csv");
    let runs: [&[&str]; 4] = [
        &["train", "--backend", "cpu", "--resume", m],
        &["train", "--backend", "cpu", "--init", m],
        &["eval", "--backend", "cpu", "--model", m],
        &["predict", "--backend", "cpu", "--model", m, "--out", out.to_str().unwrap()],
    ];
    for args in runs {
        let o = common::cli::backprop(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(common::cli::stderr(&o), format!("error: {want}\n"), "{args:?}");
    }
}

#[test]
fn impossible_counts_and_tasks_in_the_metadata_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.safetensors");
    let layers = torch_layers_f32(&ce_model().params);
    let training = |step: Value, epoch: Value, seed: Value| json!({"optimizer": {"name": "sgd", "weight_decay": 0.0}, "step": step, "epoch": epoch, "seed": seed});
    let cases = [
        (
            "training",
            training(json!(5), json!(-1), json!(1)),
            vec!["metadata 'training': 'epoch' is -1", "whole number"],
        ),
        ("training", training(json!(1.5), json!(1), json!(1)), vec!["'step' is 1.5"]),
        ("training", training(json!(5), json!(1), json!("7")), vec!["'seed' is \"7\""]),
        ("training", training(json!(5), json!(1e20), json!(1)), vec!["'epoch' is 1e+20"]),
        ("task", json!({"kind": "classification", "targets": 3}), vec!["metadata 'task'", "\"classes\""]),
        ("task", json!({"kind": "clusters", "classes": 3}), vec!["metadata 'task'", "not a task"]),
        ("task", json!("3"), vec!["metadata 'task' \"3\" is not a task"]),
    ];
    for (key, value, needles) in cases {
        write_with_meta(&path, &layers, |m| drop(m.insert(key.into(), value.to_string())));
        let e = assert_load_err(&path, &format!("{key} {value}"));
        for n in needles {
            assert!(e.contains(n), "{key} {value}: {e:?} does not say {n:?}");
        }
    }
    // The largest counts are possible, and load.
    write_with_meta(&path, &layers, |m| {
        drop(m.insert("training".into(), training(json!(u64::MAX), json!(u64::MAX), json!(u64::MAX)).to_string()))
    });
    assert_eq!(checkpoint::load(&path).unwrap().training.unwrap().state.step, u64::MAX);
}

/// The first bytes of a checkpoint whose one tensor claims `bytes` bytes of data.
fn claiming(bytes: u64) -> Vec<u8> {
    let header = json!({"layers.0.weight": {"dtype": "F32", "shape": [bytes / 4], "data_offsets": [0, bytes]}});
    let mut head = header.to_string().into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    [&(head.len() as u64).to_le_bytes()[..], &head].concat()
}

#[test]
fn a_checkpoint_larger_than_the_memory_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let bytes = valid_bytes();
    std::fs::write(&path, &bytes).unwrap();
    let small = backprop::data::Limits::with_memory(bytes.len() as u64);
    let e = checkpoint::load_with(&path, &small).unwrap_err().to_string();
    assert!(e.contains("ck.safetensors") && e.contains("the limit given"), "{e}");
    // The header is parsed as JSON, which may take 16 times its size; the tensors twice theirs.
    assert!(checkpoint::load_with(&path, &backprop::data::Limits::with_memory(16 * bytes.len() as u64)).is_ok());

    // A header claiming 64 GiB of tensors, in a (sparse) file that long: refused from the header alone.
    let sparse = dir.path().join("sparse.safetensors");
    let head = claiming(64 << 30);
    std::fs::write(&sparse, &head).unwrap();
    std::fs::OpenOptions::new().write(true).open(&sparse).unwrap().set_len(head.len() as u64 + (64 << 30)).unwrap();
    let gib = backprop::data::Limits::with_memory(1 << 30);
    let e = checkpoint::load_with(&sparse, &gib).unwrap_err().to_string();
    assert!(e.contains("sparse.safetensors: its 64.0 GiB of tensors") && e.contains("more than the 1.0 GiB"), "{e}");
    let e = checkpoint::load_init_with(&sparse, &ce_model().spec, &gib).unwrap_err().to_string();
    assert!(e.contains("64.0 GiB"), "{e}");
}

#[test]
fn checkpoints_read_from_fifos_and_pipes_as_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ck.safetensors");
    let bytes = valid_bytes();
    std::fs::write(&file, &bytes).unwrap();
    let fifo = dir.path().join("ck.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (f, b) = (fifo.clone(), bytes.clone());
    let writer = std::thread::spawn(move || std::fs::write(f, b));
    assert_eq!(checkpoint::load(&fifo).unwrap(), checkpoint::load(&file).unwrap());
    writer.join().unwrap().unwrap();

    // A stream that claims 1 TiB after its header: refused there, without draining the writer.
    let f = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        std::io::Write::write_all(&mut w, &claiming(1 << 40)).unwrap();
        let block = vec![0u8; 65536];
        (0..1024).take_while(|_| std::io::Write::write_all(&mut w, &block).is_ok()).count()
    });
    let e = checkpoint::load_with(&fifo, &backprop::data::Limits::with_memory(1 << 30)).unwrap_err().to_string();
    assert!(e.contains("ck.fifo: its 1.0 TiB of tensors"), "{e}");
    assert!(writer.join().unwrap() < 1024, "the reader drained 64 MiB from a stream it refused");

    // `eval --model -`: the checkpoint through a pipe on standard input.
    let mut child = common::cli::cmd()
        .args(["eval", "--backend", "cpu", "--model", "-", "--data", "xor"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    // The model (5 inputs) does not fit xor (2 features): the error comes after the checkpoint was read.
    let err = common::cli::stderr(&o);
    assert!(err.contains("xor") && err.contains('5') && !err.contains("safetensors"), "{err}");
}
