//! `backprop` with no arguments, `train`, `eval` and `predict`, run as a user runs them: the default run
//! on the bundled digits, full-batch training checked step for step against the f64 reference on the
//! CPU and the GPU backends, eval and predict on a saved model, metrics and plots, resuming, `--verify`,
//! and a battery of bad inputs that must each end in one clear `error:` line and leave every file alone.

mod common;
#[path = "cli_train/library.rs"]
mod library;
#[path = "cli_train/outputs.rs"]
mod outputs;
#[path = "cli_train/resume.rs"]
mod resume;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backprop::checkpoint::{self, Checkpoint};
use backprop::cpu;
use backprop::data::{Normalization, Task};
use backprop::model::{Activation, Loss, MlpSpec, Output as OutputLayer, Params};
use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars};
use ndarray::{Array1, Array2};
use safetensors::{Dtype, tensor::TensorView};

// ---------------------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------------------

use common::cli::{Gen, backprop, ok, s, stderr, stdout};

// ---------------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------------

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `params` as a PyTorch user would: `layers.{l}.weight` (O, I) and `layers.{l}.bias` (O), f32,
/// no metadata at all.
fn write_init(path: &Path, params: &Params<f32>) {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (l, (w, b)) in params.weights.iter().zip(&params.biases).enumerate() {
        let (i, o) = w.dim();
        let wt: Vec<f32> = w.t().iter().copied().collect(); // (O, I) row-major
        buffers.push((format!("layers.{l}.weight"), vec![o, i], le_bytes(&wt)));
        buffers.push((format!("layers.{l}.bias"), vec![o], le_bytes(&b.to_vec())));
    }
    write_tensors(path, &buffers);
}

fn write_tensors(path: &Path, buffers: &[(String, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(name, shape, bytes)| (name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Random weights (I, O) in [-0.5, 0.5] and biases in [-0.1, 0.1] for `sizes`.
fn random_params(sizes: &[usize], seed: u64) -> Params<f32> {
    let mut g = Gen::new(seed);
    let mut weights = Vec::new();
    let mut biases = Vec::new();
    for w in sizes.windows(2) {
        weights.push(Array2::from_shape_fn((w[0], w[1]), |_| g.uniform(0.5) as f32));
        biases.push(Array1::from_shape_fn(w[1], |_| g.uniform(0.1) as f32));
    }
    Params { weights, biases }
}

/// A classification CSV with a header: `rows` rows of `features` values in [-2, 2] (3 decimals), and a
/// label column `row % classes`. Returns the path and the features and one-hot targets as the binary
/// reads them (parsed as f32, then widened).
fn write_class_csv(path: &Path, rows: usize, features: usize, classes: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut g = Gen::new(seed);
    let mut text = (0..features).map(|j| format!("f{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    let mut x = Array2::zeros((rows, features));
    let mut y = Array2::zeros((rows, classes));
    for r in 0..rows {
        let cells: Vec<String> = (0..features).map(|_| format!("{:.3}", g.uniform(2.0))).collect();
        for (j, c) in cells.iter().enumerate() {
            x[[r, j]] = c.parse::<f32>().unwrap() as f64;
        }
        let label = r % classes;
        y[[r, label]] = 1.0;
        text += &format!("{},{label}\n", cells.join(","));
    }
    std::fs::write(path, text).unwrap();
    (x, y)
}

fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

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

fn assert_slices_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(f64, usize)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN difference must fail, so not `d > tolerance`
        if !(d <= atol + rtol * w.abs()) && worst.is_none_or(|(wd, _)| d > wd || d.is_nan()) {
            worst = Some((d, i));
        }
    }
    if let Some((d, i)) = worst {
        panic!(
            "{what}: element {i} is {} but the reference is {} (|diff| {d:.3e} > {atol:e} + {rtol:e}·|ref|)",
            got[i], want[i]
        );
    }
}

/// Every entry of a directory (recursively), with the contents of each file: a before/after picture.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), None);
                todo.push(p);
            } else {
                out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// 1. The main job: `backprop` with no arguments
// ---------------------------------------------------------------------------------------------------------

#[test]
fn no_arguments_trains_the_digits_to_96_percent_with_one_progress_line_per_epoch() {
    let o = ok::<&str>(&[]);
    let out = stdout(&o);
    let last = out.trim_end().lines().last().unwrap_or_default();
    let at = last.find("held-out accuracy ").unwrap_or_else(|| panic!("no held-out accuracy on stdout:\n{out}"));
    let pct: f64 = last[at + "held-out accuracy ".len()..]
        .trim_end()
        .strip_suffix('%')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the accuracy in {last:?}"));
    assert!(pct >= 96.0, "held-out accuracy {pct}% < 96%:\n{out}");
    assert!(last.starts_with("trained 30 epochs"), "{last}");

    // stderr is a pipe here: one plain line per epoch, in order.
    let err = stderr(&o);
    let epochs: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(epochs.len(), 30, "expected 30 epoch lines on stderr:\n{err}");
    for (i, l) in epochs.iter().enumerate() {
        let n = l.split_whitespace().nth(1).unwrap_or_default();
        assert_eq!(n, format!("{}/30", i + 1), "{l}");
        assert!(l.contains("train loss") && l.contains("test acc"), "{l}");
    }
    assert!(err.lines().any(|l| l.starts_with("backend: ")), "no backend line:\n{err}");
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn no_arguments_with_json_and_quiet_prints_one_json_object() {
    let o = ok(&["--json", "--quiet"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", stdout(&o)));
    assert!(v.is_object(), "{v}");
    let acc = v["test_accuracy"].as_f64().unwrap_or_else(|| panic!("no test_accuracy: {v}"));
    assert!(acc >= 0.96, "test_accuracy {acc} < 0.96: {v}");
    assert_eq!(v["epochs"], 30, "{v}");
    assert_eq!(v["sizes"], serde_json::json!([64, 64, 10]), "{v}");
    assert!(v["train_loss"].as_f64().is_some_and(|l| l.is_finite() && l > 0.0), "{v}");
    assert!(v["test_loss"].as_f64().is_some_and(|l| l.is_finite() && l > 0.0), "{v}");
    assert!(v["out"].is_null(), "{v}");
    let err = stderr(&o);
    assert!(!err.lines().any(|l| l.starts_with("epoch") || l.starts_with("backend:")), "--quiet printed:\n{err}");
}

// ---------------------------------------------------------------------------------------------------------
// 2. Full-batch training equals the reference, step for step, on both backends
// ---------------------------------------------------------------------------------------------------------

const SIZES: [usize; 3] = [5, 7, 3];
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
    let mut flat = f.init.to_f64().to_flat();
    let (mut m, mut v) = (vec![0.0f64; flat.len()], vec![0.0f64; flat.len()]);
    for t in 1..=5 {
        let p = Params::from_flat(&f.spec, &flat).unwrap();
        let trace = cpu::forward_backward(&f.spec, &p, f.x.view(), f.y.view()).unwrap();
        optim::update(&cfg, &mut flat, &trace.grads.to_flat(), &mut m, &mut v, StepScalars::new(&cfg, 0.01, t));
    }
    let want = Params::from_flat(&f.spec, &flat).unwrap();

    for backend in ["cpu", "gpu"] {
        let ck = train_full_batch(&f, backend, "adam", "0.01");
        let t = ck.training.as_ref().unwrap();
        assert_eq!(t.optimizer, cfg, "{backend}: the saved optimizer");
        assert_params_close(&format!("adam on {backend}"), &ck.model.params, &want, 1e-5, 1e-4);
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        assert_slices_close(&format!("adam on {backend}: optimizer.m"), &widen(&t.state.m), &m, 1e-6, 1e-4);
        assert_slices_close(&format!("adam on {backend}: optimizer.v"), &widen(&t.state.v), &v, 1e-8, 1e-4);
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3. eval and predict on a saved model
// ---------------------------------------------------------------------------------------------------------

/// The cells of a CSV text's data rows (after the header).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

#[test]
fn eval_and_predict_a_model_trained_on_the_digits() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("digits.safetensors");
    let o = ok(&["train", "--epochs", "3", "--backend", "cpu", "--quiet", "--out", &s(&model)]);
    assert!(stdout(&o).contains(&format!("model saved to {}", model.display())), "{}", stdout(&o));
    let digits = backprop::data::digits().unwrap();
    let labels = digits.labels.clone().unwrap();
    assert_eq!(labels.len(), 1797);

    // Text: the loss, an accuracy line and a 10x10 confusion matrix that counts every row once.
    let o = ok(&["eval", "--model", &s(&model), "--data", "digits", "--backend", "cpu"]);
    let out = stdout(&o);
    let acc_line = out.lines().find(|l| l.starts_with("accuracy ")).unwrap_or_else(|| panic!("no accuracy:\n{out}"));
    let text_acc: f64 = acc_line["accuracy ".len()..].trim().trim_end_matches('%').parse().unwrap();
    assert!(text_acc > 80.0, "{acc_line}");
    let lines: Vec<&str> = out.lines().collect();
    let c = lines.iter().position(|l| l.starts_with("confusion matrix")).unwrap_or_else(|| panic!("{out}"));
    let header: Vec<&str> = lines[c + 1].split_whitespace().collect();
    assert_eq!(header, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], "{out}");
    let mut total = 0;
    for i in 0..10 {
        let cells: Vec<usize> = lines[c + 2 + i].split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert_eq!(cells.len(), 11, "row {i}: {}", lines[c + 2 + i]);
        assert_eq!(cells[0], i);
        total += cells[1..].iter().sum::<usize>();
    }
    assert_eq!(total, 1797, "{out}");

    // JSON: the same numbers.
    let o = ok(&["eval", "--model", &s(&model), "--data", "digits", "--backend", "cpu", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["loss"].as_f64().is_some_and(|l| l.is_finite() && l > 0.0), "{v}");
    let acc = v["accuracy"].as_f64().unwrap();
    assert_eq!(v["rows"], 1797, "{v}");
    let confusion: Vec<Vec<usize>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(confusion.len(), 10);
    assert!(confusion.iter().all(|r| r.len() == 10), "{v}");
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 1797);
    let diagonal: usize = (0..10).map(|i| confusion[i][i]).sum();
    assert!((acc - diagonal as f64 / 1797.0).abs() < 1e-12, "accuracy {acc} vs diagonal {diagonal}/1797");
    assert!((100.0 * acc - text_acc).abs() <= 0.005 + 1e-9, "text {text_acc}% vs json {acc}");
    for (i, row) in confusion.iter().enumerate() {
        let n = labels.iter().filter(|&&l| l == i).count();
        assert_eq!(row.iter().sum::<usize>(), n, "row {i} of the confusion matrix counts the rows of class {i}");
    }

    // predict on the bundled set: a header, 1797 rows, the class is the argmax of the outputs.
    let preds = dir.path().join("preds.csv");
    let o = ok(&["predict", "--model", &s(&model), "--data", "digits", "--out", &s(&preds), "--backend", "cpu"]);
    assert!(stderr(&o).contains("1797"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&preds).unwrap();
    let want_header: Vec<String> =
        std::iter::once("predicted".to_string()).chain((0..10).map(|j| format!("output_{j}"))).collect();
    assert_eq!(text.lines().next().unwrap(), want_header.join(","));
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 1797);
    let mut predicted = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 11, "row {r}: {row:?}");
        let class: usize = row[0].parse().unwrap();
        let outputs: Vec<f64> = row[1..].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(class, argmax(&outputs), "row {r}: {row:?}");
        let sum: f64 = outputs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "row {r}: softmax outputs sum to {sum}");
        predicted.push(class);
    }
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    assert_eq!(correct, diagonal, "predict and eval disagree on how many rows are right");

    // predict on a CSV of features only (64 columns, no labels, no header), and on one with the labels.
    let n = 100;
    let mut features = String::new();
    let mut with_labels = (0..64).map(|j| format!("p{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for (r, label) in labels.iter().enumerate().take(n) {
        let cells: Vec<String> = digits.x.row(r).iter().map(|v| v.to_string()).collect();
        features += &(cells.join(",") + "\n");
        with_labels += &format!("{},{}\n", cells.join(","), label);
    }
    for (name, contents) in [("features.csv", features), ("labelled.csv", with_labels)] {
        let input = dir.path().join(name);
        std::fs::write(&input, contents).unwrap();
        let out = dir.path().join(format!("preds-{name}"));
        ok(&["predict", "--model", &s(&model), "--data", &s(&input), "--out", &s(&out), "--backend", "cpu"]);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().next().unwrap(), want_header.join(","), "{name}");
        let got = csv_rows(&text);
        assert_eq!(got.len(), n, "{name}");
        for (r, (g, w)) in got.iter().zip(&rows).enumerate() {
            assert_eq!(g[0], w[0], "{name} row {r}: the class differs from predict on the bundled digits");
            for (a, b) in g[1..].iter().zip(&w[1..]) {
                let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                assert!((a - b).abs() < 1e-6, "{name} row {r}: {a} vs {b}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 4. --metrics and --plot
// ---------------------------------------------------------------------------------------------------------

#[test]
fn metrics_csv_has_one_row_per_epoch_and_plot_is_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.csv");
    let plot = dir.path().join("curves.png");
    let args = [
        "train",
        "--data",
        "spirals",
        "--epochs",
        "4",
        "--backend",
        "cpu",
        "--optimizer",
        "sgd",
        "--lr",
        "0.04",
        "--schedule",
        "step",
        "--lr-step",
        "2",
        "--lr-gamma",
        "0.5",
        "--metrics",
        &s(&metrics),
        "--plot",
        &s(&plot),
        "--quiet",
    ];
    ok(&args);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("epoch,train_loss,test_loss,test_accuracy,seconds,lr"));
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let mut seconds = 0.0;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 6, "{text}");
        assert_eq!(r[0], (i + 1) as f64, "{text}");
        assert!(r[1].is_finite() && r[1] > 0.0 && r[2].is_finite() && r[2] > 0.0, "{text}");
        assert!((0.0..=1.0).contains(&r[3]), "{text}");
        assert!(r[4] >= seconds, "seconds go down: {text}");
        seconds = r[4];
        let lr = if i < 2 { 0.04 } else { 0.02 };
        assert!((r[5] - lr).abs() < 1e-12, "epoch {}: lr {} (step schedule wants {lr})", i + 1, r[5]);
    }
    let png = std::fs::read(&plot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {:?}", &png[..png.len().min(8)]);
    assert!(png.len() > 1000, "a {}-byte PNG", png.len());
    // Nothing but the two files (no temporary files left behind).
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

// ---------------------------------------------------------------------------------------------------------
// 5. --resume
// ---------------------------------------------------------------------------------------------------------

#[test]
fn resuming_two_plus_two_epochs_equals_four_epochs_straight_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    let common = ["train", "--data", "digits", "--backend", "cpu", "--seed", "5", "--quiet"];
    let run = |extra: &[&str]| ok(&[&common[..], extra].concat());
    run(&["--epochs", "2", "--out", &s(&a)]);
    assert_eq!(load(&a).training.unwrap().epoch, 2);
    let o = run(&["--resume", &s(&a), "--epochs", "4", "--out", &s(&a)]);
    assert!(stdout(&o).contains("trained 4 epochs"), "{}", stdout(&o));
    run(&["--epochs", "4", "--out", &s(&b)]);

    let (ca, cb) = (load(&a), load(&b));
    let (ta, tb) = (ca.training.as_ref().unwrap(), cb.training.as_ref().unwrap());
    assert_eq!((ta.epoch, tb.epoch), (4, 4));
    assert_eq!(ta.state.step, tb.state.step, "optimizer steps");
    assert_eq!(ca.model.normalizer, cb.model.normalizer);
    assert_eq!(ca.model.spec, cb.model.spec);
    let tensors = [
        ("parameters", ca.model.params.to_flat(), cb.model.params.to_flat()),
        ("optimizer.m", ta.state.m.clone(), tb.state.m.clone()),
        ("optimizer.v", ta.state.v.clone(), tb.state.v.clone()),
    ];
    for (name, x, y) in tensors {
        assert_eq!(x.len(), y.len(), "{name}");
        let differ: Vec<(usize, f32)> = x
            .iter()
            .zip(&y)
            .enumerate()
            .filter(|(_, (p, q))| p.to_bits() != q.to_bits())
            .map(|(i, (p, q))| (i, (p - q).abs()))
            .collect();
        if let Some(&(i, d)) = differ.iter().max_by(|p, q| p.1.total_cmp(&q.1)) {
            panic!(
                "{name}: 2 + 2 resumed epochs differ from 4 straight in {} of {} values; largest |diff| {d:e} at {i} ({} vs {})",
                differ.len(),
                x.len(),
                x[i],
                y[i]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// 6. --verify on the GPU
// ---------------------------------------------------------------------------------------------------------

#[test]
fn verify_every_5_steps_on_the_gpu_passes() {
    let o = ok(&["train", "--data", "xor", "--backend", "gpu", "--epochs", "5", "--batch-size", "2", "--verify", "5"]);
    let err = stderr(&o);
    assert!(err.lines().next().unwrap_or_default().starts_with("backend: gpu"), "{err}");
    let verified: Vec<&str> = err.lines().filter(|l| l.starts_with("verify step")).collect();
    // 4 rows in batches of 2 for 5 epochs: 10 steps, checked at steps 1, 5 and 10.
    for (line, step) in verified.iter().zip([1, 5, 10]) {
        assert!(line.starts_with(&format!("verify step {step}: ok")), "{line}\n{err}");
    }
    assert_eq!(verified.len(), 3, "{err}");
    assert!(!err.contains("FAILED"), "{err}");
    for t in ["Z0", "A1", "delta0", "gradients", "updated parameters"] {
        assert!(err.lines().any(|l| l.trim_start().starts_with(t) && l.contains("max abs")), "no {t} line:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// 7. Bad inputs: one `error:` line, no panic, no file written or changed
// ---------------------------------------------------------------------------------------------------------

/// Runs bad commands and collects every way they misbehave, so one run reports all of them.
struct Battery {
    dir: PathBuf,
    failures: Vec<String>,
}

impl Battery {
    fn new(dir: &Path) -> Self {
        Battery { dir: dir.to_path_buf(), failures: Vec::new() }
    }

    /// Runs `args`; expects a failure whose single `error:` line contains every needle (case-insensitive),
    /// no panic, `absent` paths still absent, and the temp dir exactly as before (no file created, changed
    /// or left behind).
    fn case(&mut self, name: &str, args: &[String], needles: &[&str], absent: &[&Path]) {
        let before = snapshot(&self.dir);
        let o = backprop(args);
        let after = snapshot(&self.dir);
        let err = stderr(&o);
        let mut problems = Vec::new();
        if o.status.success() {
            problems.push("exited 0".to_string());
        }
        if err.contains("panicked") {
            problems.push("panicked".into());
        }
        // clap reports its own usage errors with exit status 2 and a usage/help trailer; allow that trailer.
        let clap = o.status.code() == Some(2);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("note:"))
            .filter(|l| {
                !(clap
                    && (l.trim().is_empty()
                        || l.starts_with("Usage: ")
                        || l.starts_with("For more information")
                        || l.starts_with("  tip: ")))
            })
            .collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        if errors.len() != 1 || lines.len() != 1 {
            problems.push(format!("stderr should be exactly one `error: ` line, got {} line(s)", lines.len()));
        }
        if let Some(line) = errors.first() {
            let lower = line.to_lowercase();
            for n in needles {
                if !lower.contains(&n.to_lowercase()) {
                    problems.push(format!("the error does not mention {n:?}"));
                }
            }
        }
        for p in absent {
            if p.exists() {
                problems.push(format!("{} was created", p.display()));
            }
        }
        if before != after {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| k.display().to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            problems.push(format!("files created, changed or removed: {changed:?}"));
        }
        if !problems.is_empty() {
            self.failures.push(format!(
                "[{name}] backprop {}\n    exit {:?}; {}\n    stderr: {:?}",
                args.join(" "),
                o.status.code(),
                problems.join("; "),
                err
            ));
        }
    }

    /// Also checks, by name, that an existing output file still holds `bytes`.
    fn untouched(&mut self, path: &str, bytes: &[u8]) {
        if std::fs::read(path).ok().as_deref() != Some(bytes) {
            self.failures.push(format!("the existing output {path} was changed or removed"));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} bad-input case(s) misbehave:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What an existing output file holds before the failed runs (which must leave it so).
const KEEP: &[u8] = b"an earlier result that a failed run must not touch";

/// A temp dir with a valid 5-feature 3-class CSV, a 10-class digits model and an existing output file.
struct BadInputs {
    dir: tempfile::TempDir,
    good_csv: String,
    model: String,
    /// Would-be outputs of train: they must never appear.
    new_out: PathBuf,
    new_metrics: PathBuf,
    new_plot: PathBuf,
    /// An existing file passed as an output: it must stay as it is.
    keep: String,
}

impl BadInputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        write_class_csv(&good, 12, 5, 3, 3);
        let model = dir.path().join("digits.safetensors");
        ok(&["train", "--epochs", "1", "--backend", "cpu", "--quiet", "--out", &s(&model)]);
        let keep = dir.path().join("keep.safetensors");
        std::fs::write(&keep, KEEP).unwrap();
        let p = dir.path();
        BadInputs {
            good_csv: s(&good),
            model: s(&model),
            new_out: p.join("new.safetensors"),
            new_metrics: p.join("new.csv"),
            new_plot: p.join("new.png"),
            keep: s(&keep),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        s(&self.dir.path().join(name))
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
        self.path(name)
    }

    /// `train` with `extra`, writing (if it ever got that far) a checkpoint, metrics and a plot.
    fn train(&self, extra: &[&str]) -> Vec<String> {
        let mut v = strings(&["train"]);
        v.extend(strings(extra));
        let defaults = [
            ("--backend", "cpu".to_string()),
            ("--epochs", "2".to_string()),
            ("--out", s(&self.new_out)),
            ("--metrics", s(&self.new_metrics)),
            ("--plot", s(&self.new_plot)),
        ];
        for (flag, value) in defaults {
            if !extra.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}="))) {
                v.push(flag.into());
                v.push(value);
            }
        }
        v
    }

    fn absent(&self) -> [&Path; 3] {
        [&self.new_out, &self.new_metrics, &self.new_plot]
    }
}

#[test]
fn bad_data_files_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = Battery::new(f.dir.path());
    let absent = f.absent();

    let missing = f.path("missing.csv");
    b.case("missing --data", &f.train(&["--data", &missing]), &["missing.csv", "no such file"], &absent);
    std::fs::create_dir(f.dir.path().join("a-directory.csv")).unwrap();
    let d = f.path("a-directory.csv");
    b.case("directory as --data", &f.train(&["--data", &d]), &["a-directory.csv", "directory"], &absent);
    let ragged = f.write("ragged.csv", "a,b,label\n1,2,0\n3,4,1\n5,1\n");
    b.case(
        "ragged CSV, existing --out",
        &f.train(&["--data", &ragged, "--out", &f.keep]),
        &["ragged.csv", "line 4", "expected 3 columns", "found 2"],
        &absent,
    );
    let word = f.write("word.csv", "1,2,0\n3,4,1\n5,six,1\n");
    b.case(
        "non-numeric cell",
        &f.train(&["--data", &word]),
        &["word.csv", "line 3", "column 2", "six", "not a number"],
        &absent,
    );
    let nan = f.write("nan.csv", "1,2,0\n3,NaN,1\n5,6,1\n");
    b.case("NaN cell", &f.train(&["--data", &nan]), &["nan.csv", "line 2", "NaN", "not finite"], &absent);
    let neg = f.write("negative.csv", "1,2,0\n3,4,-1\n");
    b.case("negative label", &f.train(&["--data", &neg]), &["negative.csv", "line 2", "-1", "label"], &absent);
    let frac = f.write("fraction.csv", "1,2,0\n3,4,1.5\n");
    b.case("fractional label", &f.train(&["--data", &frac]), &["fraction.csv", "1.5", "label"], &absent);

    // eval with a 10-class model: a label of 10 is out of range.
    let cells = vec!["3"; 64].join(",");
    let ten = f.write("label10.csv", format!("{cells},9\n{cells},10\n"));
    b.case(
        "label out of range for eval",
        &strings(&["eval", "--model", &f.model, "--data", &ten, "--backend", "cpu"]),
        &["label10.csv", "line 2", "10", "out of range", "10 classes"],
        &[],
    );

    // IDX files.
    let images = |n: u32, missing: usize| {
        let mut v = [0x803u32, n, 2, 2].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        v.extend((0..(n as usize * 4 - missing)).map(|i| (i * 37 % 256) as u8));
        v
    };
    let labels = |n: u32| {
        let mut v = [0x801u32, n].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        v.extend((0..n).map(|i| (i % 3) as u8));
        v
    };
    let img = f.write("images.idx", images(6, 0));
    let lab = f.write("labels.idx", labels(6));
    // Sanity: the pair itself is fine.
    ok(&["train", "--data", &img, "--labels", &lab, "--epochs", "1", "--backend", "cpu", "--quiet"]);
    b.case("IDX images without --labels", &f.train(&["--data", &img]), &["images.idx", "--labels"], &absent);
    let short = f.write("short-images.idx", images(6, 5));
    b.case(
        "truncated IDX images",
        &f.train(&["--data", &short, "--labels", &lab]),
        &["short-images.idx", "truncated"],
        &absent,
    );
    let lab5 = f.write("labels5.idx", labels(5));
    b.case(
        "IDX count mismatch",
        &f.train(&["--data", &img, "--labels", &lab5]),
        &["labels5.idx", "5 labels", "6 images"],
        &absent,
    );
    b.untouched(&f.keep, KEEP);
    b.finish();
}

#[test]
fn bad_flags_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = Battery::new(f.dir.path());
    let absent = f.absent();
    let good_bytes = std::fs::read(&f.good_csv).unwrap();
    let model_bytes = std::fs::read(&f.model).unwrap();
    let data = ["--data", f.good_csv.as_str()];
    let case = |b: &mut Battery, name: &str, extra: &[&str], needles: &[&str]| {
        b.case(name, &f.train(&[&data[..], extra].concat()), needles, &absent);
    };

    case(
        &mut b,
        "--layers first width",
        &["--layers", "4,8,3"],
        &["good.csv", "5 feature columns", "input width is 4"],
    );
    case(&mut b, "--layers last width", &["--layers", "5,8,2"], &["good.csv", "3 classes", "output width is 2"]);
    case(&mut b, "--layers 5,x,3", &["--layers", "5,x,3"], &["--layers", "'x'"]);
    case(&mut b, "--layers 5,0,3", &["--layers", "5,0,3"], &["width", "0"]);
    case(&mut b, "unknown --activation", &["--activation", "swish"], &["activation", "swish"]);
    case(&mut b, "unknown --optimizer", &["--optimizer", "lion"], &["optimizer", "lion"]);
    case(&mut b, "unknown --loss", &["--loss", "hinge"], &["loss", "hinge"]);
    case(&mut b, "unknown --output", &["--output", "tanh"], &["output", "tanh"]);
    case(&mut b, "unknown --schedule", &["--schedule", "warmup"], &["schedule", "warmup"]);
    case(&mut b, "unknown --normalize", &["--normalize", "zscore"], &["normaliz", "zscore"]);
    case(&mut b, "unknown --backend", &["--backend", "quantum"], &["backend", "quantum"]);
    case(
        &mut b,
        "--output softmax --loss mse",
        &["--output", "softmax", "--loss", "mse"],
        &["--output softmax", "--loss"],
    );
    case(&mut b, "--epochs 0", &["--epochs", "0"], &["--epochs", "at least 1"]);
    case(&mut b, "--batch-size 0", &["--batch-size", "0"], &["--batch-size", "at least 1"]);
    case(&mut b, "--lr -1", &["--lr", "-1"], &["--lr", "-1"]);
    case(&mut b, "--lr=-1", &["--lr=-1"], &["--lr", "-1"]);
    case(&mut b, "--test-split 1.5", &["--test-split", "1.5"], &["--test-split", "1.5"]);
    case(&mut b, "--verify 0", &["--verify", "0"], &["--verify", ">= 1"]);
    case(&mut b, "--lr-step 0", &["--schedule", "step", "--lr-step", "0"], &["--lr-step", "at least 1"]);
    case(&mut b, "--momentum=1.5", &["--optimizer", "momentum", "--momentum=1.5"], &["--momentum", "1.5"]);
    case(&mut b, "--weight-decay=-1", &["--weight-decay=-1"], &["--weight-decay", "-1"]);
    case(&mut b, "--plot out.txt", &["--plot", &f.path("out.txt")], &["--plot", ".png"]);
    let nowhere = f.path("no-such-dir/model.safetensors");
    case(&mut b, "--out in a missing directory", &["--out", &nowhere], &["no-such-dir", "does not exist"]);
    let nowhere_csv = f.path("no-such-dir/metrics.csv");
    case(&mut b, "--metrics in a missing directory", &["--metrics", &nowhere_csv], &["no-such-dir", "does not exist"]);
    case(&mut b, "--out is --data", &["--out", &f.good_csv], &["good.csv", "both an input and an output"]);

    // eval and predict flags.
    b.case(
        "eval --batch-size 0",
        &strings(&["eval", "--model", &f.model, "--data", "digits", "--batch-size", "0"]),
        &["--batch-size", "at least 1"],
        &[],
    );
    let preds = f.dir.path().join("preds.csv");
    b.case(
        "predict --out is --data",
        &strings(&["predict", "--model", &f.model, "--data", &f.good_csv, "--out", &f.good_csv, "--backend", "cpu"]),
        &["good.csv", "both an input and the output"],
        &[],
    );
    b.case(
        "predict --out is --model",
        &strings(&["predict", "--model", &f.model, "--data", "digits", "--out", &f.model, "--backend", "cpu"]),
        &["digits.safetensors", "both an input and the output"],
        &[],
    );
    b.case(
        "predict --out in a missing directory",
        &strings(&["predict", "--model", &f.model, "--data", "digits", "--out", &nowhere_csv, "--backend", "cpu"]),
        &["no-such-dir", "does not exist"],
        &[&preds],
    );
    b.case(
        "predict with too few columns",
        &strings(&["predict", "--model", &f.model, "--data", &f.good_csv, "--out", &s(&preds), "--backend", "cpu"]),
        &["good.csv", "64"],
        &[&preds],
    );
    b.untouched(&f.good_csv, &good_bytes);
    b.untouched(&f.model, &model_bytes);
    b.finish();
}

#[test]
fn bad_checkpoints_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = Battery::new(f.dir.path());
    let absent = f.absent();
    let random = f.write("random.safetensors", Gen::new(99).bytes(4096));
    let valid = std::fs::read(&f.model).unwrap();
    let half = f.write("half.safetensors", &valid[..valid.len() / 2]);
    let keep_csv = f.write("keep.csv", KEEP);

    for (file, name) in [(&random, "random.safetensors"), (&half, "half.safetensors")] {
        let what = if name.starts_with("random") { "random bytes" } else { "truncated" };
        b.case(
            &format!("{what} as --init"),
            &f.train(&["--data", &f.good_csv, "--init", file, "--out", &f.keep]),
            &[name, "safetensors"],
            &absent,
        );
        b.case(&format!("{what} as --resume"), &f.train(&["--resume", file]), &[name, "safetensors"], &absent);
        b.case(
            &format!("{what} as eval --model"),
            &strings(&["eval", "--model", file, "--data", "digits", "--backend", "cpu"]),
            &[name, "safetensors"],
            &[],
        );
        b.case(
            &format!("{what} as predict --model, existing --out"),
            &strings(&["predict", "--model", file, "--data", "digits", "--out", &keep_csv, "--backend", "cpu"]),
            &[name, "safetensors"],
            &[],
        );
    }

    // An init file with the right names but the wrong shapes: (I, O) instead of PyTorch's (O, I), and a
    // network the file does not fit.
    let p = random_params(&SIZES, 1);
    let transposed: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        ("layers.0.weight".into(), vec![5, 7], le_bytes(&p.weights[0].iter().copied().collect::<Vec<_>>())),
        ("layers.0.bias".into(), vec![7], le_bytes(&p.biases[0].to_vec())),
        ("layers.1.weight".into(), vec![7, 3], le_bytes(&p.weights[1].iter().copied().collect::<Vec<_>>())),
        ("layers.1.bias".into(), vec![3], le_bytes(&p.biases[1].to_vec())),
    ];
    let t = f.dir.path().join("transposed.safetensors");
    write_tensors(&t, &transposed);
    b.case(
        "--init with (I, O) weights",
        &f.train(&["--data", &f.good_csv, "--layers", "5,7,3", "--init", &s(&t)]),
        &["transposed.safetensors", "layers.0.weight", "[5, 7]", "[7, 5]"],
        &absent,
    );
    let init = f.dir.path().join("init.safetensors");
    write_init(&init, &p);
    b.case(
        "--init for another network",
        &f.train(&["--data", &f.good_csv, "--layers", "5,6,3", "--init", &s(&init), "--out", &f.keep]),
        &["init.safetensors", "layers.0.weight", "[7, 5]", "[6, 5]"],
        &absent,
    );
    b.case(
        "--init with too few layers",
        &f.train(&["--data", &f.good_csv, "--layers", "5,7,7,3", "--init", &s(&init)]),
        &["init.safetensors", "layers.1.weight"],
        &absent,
    );
    // A bare init file is not a checkpoint.
    b.case(
        "--resume from an init file",
        &f.train(&["--data", &f.good_csv, "--resume", &s(&init)]),
        &["init.safetensors", "--init"],
        &absent,
    );
    // A checkpoint that has already trained as many epochs as asked for.
    let resumable = f.dir.path().join("resumable.safetensors");
    ok(&["train", "--epochs", "2", "--backend", "cpu", "--quiet", "--out", &s(&resumable)]);
    let r = s(&resumable);
    let resumable_bytes = std::fs::read(&r).unwrap();
    b.case(
        "--resume with no more epochs to train",
        &strings(&["train", "--resume", &r, "--epochs", "2", "--out", &r, "--backend", "cpu"]),
        &["2 epochs", "--epochs"],
        &[],
    );
    b.untouched(&f.keep, KEEP);
    b.untouched(&keep_csv, KEEP);
    b.untouched(&r, &resumable_bytes);
    b.finish();
}
