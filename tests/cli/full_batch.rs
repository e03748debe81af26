//! Full-batch training equals the reference, step for step, on both backends: `train` on a small CSV from a
//! PyTorch-style `--init` file, against `cpu::sgd_step` and against the reference's Adam, parameters and
//! optimizer moments alike; the file written is in PyTorch's `nn.Linear` layout.

use std::path::PathBuf;

use backprop::checkpoint::Checkpoint;
use backprop::cpu;
use backprop::data::{Normalization, Task};
use backprop::model::{Activation, Loss, MlpSpec, Output as OutputLayer, Params};
use backprop::optim::{OptimConfig, OptimizerKind};
use ndarray::Array2;
use safetensors::Dtype;

use super::common::cli::{load, ok, s};
use super::common::pytorch::write_init;
use super::common::reference::Reference;
use super::common::{assert_close, assert_slices_close};
use super::{random_params, write_class_csv};

/// Asserts `|got − want| <= atol + rtol·|want|` for every parameter, naming the tensor and the worst element.
fn assert_params_close(what: &str, got: &Params<f32>, want: &Params<f64>, atol: f64, rtol: f64) {
    assert_eq!(got.weights.len(), want.weights.len(), "{what}: layer count");
    let mut tensors: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for l in 0..got.weights.len() {
        assert_eq!(got.weights[l].dim(), want.weights[l].dim(), "{what}: layer {l} weight shape");
        assert_eq!(got.biases[l].len(), want.biases[l].len(), "{what}: layer {l} bias length");
        let gw = got.weights[l].iter().map(|&v| v as f64).collect();
        tensors.push((format!("W{l}"), gw, want.weights[l].iter().copied().collect()));
        let gb = got.biases[l].iter().map(|&v| v as f64).collect();
        tensors.push((format!("b{l}"), gb, want.biases[l].to_vec()));
    }
    for (name, g, w) in tensors {
        assert_slices_close(&format!("{what}: {name}"), &g, &w, atol, rtol);
    }
}

pub(super) const SIZES: [usize; 3] = [5, 7, 3];
const ROWS: usize = 13;

/// The fixtures of the full-batch runs: a 13-row, 5-feature, 3-class CSV and a metadata-free init file.
struct FullBatch {
    dir: tempfile::TempDir,
    csv: PathBuf,
    init_file: PathBuf,
    init: Params<f32>,
    x: Array2<f64>,
    y: Array2<f64>,
    spec: MlpSpec,
}

fn full_batch() -> FullBatch {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("small.csv");
    let (x, y) = write_class_csv(&csv, ROWS, SIZES[0], SIZES[2], 7);
    let init = random_params(&SIZES, 11);
    let init_file = dir.path().join("init.safetensors");
    write_init(&init_file, &init);
    let spec =
        MlpSpec::with_output(SIZES.to_vec(), Activation::Tanh, OutputLayer::Softmax, Loss::CrossEntropy).unwrap();
    FullBatch { dir, csv, init_file, init, x, y, spec }
}

/// `train` on the small set, full batch, no shuffle, no split, no normalisation, 5 epochs (= 5 steps).
fn train_full_batch(f: &FullBatch, backend: &str, optimizer: &str, lr: &str) -> Checkpoint {
    let out = f.dir.path().join(format!("{backend}-{optimizer}.safetensors"));
    let args = [
        "train",
        "--data",
        &s(&f.csv),
        "--init",
        &s(&f.init_file),
        "--no-shuffle",
        "--batch-size",
        "13",
        "--test-split",
        "0",
        "--normalize",
        "none",
        "--optimizer",
        optimizer,
        "--lr",
        lr,
        "--epochs",
        "5",
        "--layers",
        "5,7,3",
        "--activation",
        "tanh",
        "--out",
        &s(&out),
        "--quiet",
        "--backend",
        backend,
    ];
    ok(&args);
    // The file itself is in PyTorch's nn.Linear layout: weights (O, I), biases (O), f32.
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, shape) in [
        ("layers.0.weight", vec![7, 5]),
        ("layers.0.bias", vec![7]),
        ("layers.1.weight", vec![3, 7]),
        ("layers.1.bias", vec![3]),
    ] {
        let t = st.tensor(name).unwrap_or_else(|_| panic!("{backend}: no tensor {name}"));
        assert_eq!((t.shape(), t.dtype()), (&shape[..], Dtype::F32), "{backend}: {name}");
    }
    let ck = load(&out);
    assert_eq!(ck.model.spec, f.spec, "{backend}: the saved network");
    assert_eq!(ck.model.task, Some(Task::Classification { classes: 3 }), "{backend}");
    let norm = ck.model.normalizer.as_ref().expect("a trained model keeps its normalizer");
    assert_eq!(norm.kind, Normalization::None, "{backend}");
    let t = ck.training.as_ref().expect("a checkpoint written by train --out can be resumed");
    assert_eq!(t.epoch, 5, "{backend}");
    assert_eq!(t.state.step, 5, "{backend}: 5 epochs of one full batch are 5 steps");
    assert_eq!(t.optimizer.kind.name(), optimizer, "{backend}");
    ck
}

#[test]
fn full_batch_sgd_on_cpu_and_gpu_matches_five_reference_steps() {
    let f = full_batch();
    let mut want = f.init.to_f64();
    for _ in 0..5 {
        cpu::sgd_step(&f.spec, &mut want, f.x.view(), f.y.view(), 0.1).unwrap();
    }
    // The run must have moved the weights, or the comparison proves nothing.
    let moved = want.to_flat().iter().zip(f.init.to_flat()).map(|(a, b)| (a - b as f64).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-3, "5 SGD steps moved no weight by more than {moved}");

    for backend in ["cpu", "gpu"] {
        let ck = train_full_batch(&f, backend, "sgd", "0.1");
        assert!(ck.training.as_ref().unwrap().state.m.is_empty());
        assert_params_close(&format!("sgd on {backend}"), &ck.model.params, &want, 1e-5, 1e-4);
    }
}

#[test]
fn full_batch_adam_on_cpu_and_gpu_matches_five_reference_updates() {
    let f = full_batch();
    let cfg = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 };
    let mut reference = Reference::new(&f.spec, &f.init, cfg, None);
    for _ in 0..5 {
        reference.step(f.x.view(), f.y.view(), 0.01);
    }
    let (want, m, v) = (reference.params(), &reference.m, &reference.v);

    for backend in ["cpu", "gpu"] {
        let ck = train_full_batch(&f, backend, "adam", "0.01");
        let t = ck.training.as_ref().unwrap();
        assert_eq!(t.optimizer, cfg, "{backend}: the saved optimizer");
        assert_params_close(&format!("adam on {backend}"), &ck.model.params, &want, 1e-5, 1e-4);
        assert_close(&format!("adam on {backend}: optimizer.m"), &t.state.m, m, 1e-6, 1e-4);
        assert_close(&format!("adam on {backend}: optimizer.v"), &t.state.v, v, 1e-8, 1e-4);
    }
}
