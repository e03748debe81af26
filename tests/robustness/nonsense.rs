//! No silent nonsense out: non-finite outputs, one-class and sparse labels, an output wider than the
//! classes, synthetic sets drawn with the model's seed, and messages that count right.

use std::path::Path;

use backprop::checkpoint;

use super::Fixture;
use super::common::cli::{backprop, load, ok, s, stderr, stdout, strings};

#[test]
fn a_model_whose_outputs_overflow_makes_eval_and_predict_fail() {
    let f = Fixture::new();
    let mut ck = load(&f.dir.path().join("model.safetensors"));
    for w in ck.model.params.weights.iter_mut() {
        w.mapv_inplace(|v| v * 1e30); // finite, but the products overflow f32
    }
    let huge = f.dir.path().join("huge.safetensors");
    checkpoint::save(&huge, &ck).unwrap();
    let mut b = f.battery();
    for backend in ["cpu", "gpu"] {
        let eval = strings(&["eval", "--model", &s(&huge), "--data", "digits", "--backend", backend]);
        b.case(&format!("eval on the {backend}"), &eval, &["huge.safetensors", "NaN or infinite"]);
        let out = f.path("preds.csv");
        let predict =
            strings(&["predict", "--model", &s(&huge), "--data", "digits", "--out", &out, "--backend", backend]);
        b.case(&format!("predict on the {backend}"), &predict, &["huge.safetensors", "NaN or infinite", "rows"]);
    }
    b.finish("non-finite outputs");
}

#[test]
fn one_class_data_is_refused_and_sparse_labels_are_warned_about() {
    let f = Fixture::new();
    let mut b = f.battery();
    let one = f.dir.path().join("one.csv");
    std::fs::write(&one, "a,b,label\n1,2,3\n3,4,3\n5,6,3\n7,8,3\n").unwrap();
    b.case("one class", &f.train(&["--data", &s(&one)]), &["one.csv", "label 3", "two classes"]);
    b.finish("one class");

    let sparse = f.dir.path().join("sparse.csv");
    std::fs::write(&sparse, "a,b,label\n1,2,0\n3,4,1000\n5,6,0\n7,8,1000\n9,1,0\n").unwrap();
    let o = ok(&["train", "--data", &s(&sparse), "--epochs", "1", "--backend", "cpu", "--quiet"]);
    let warning = stderr(&o);
    assert!(warning.starts_with("warning: ") && warning.contains("2 of 1001 classes"), "{warning}");
}

#[test]
fn an_output_wider_than_the_classes_trains_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("wide.safetensors");
    ok(&["train", "--layers", "64,32,12", "--epochs", "2", "--backend", "cpu", "--quiet", "--out", &s(&model)]);
    assert_eq!(load(&model).model.spec.output_width(), 12);
    let o = ok(&["eval", "--model", &s(&model), "--data", "digits", "--backend", "cpu", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let confusion: Vec<Vec<usize>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!((confusion.len(), confusion[0].len()), (12, 12));
    assert_eq!(confusion[10..].iter().flatten().sum::<usize>(), 0, "no row has class 10 or 11");
    // One row of the matrix per line of the JSON.
    let text = stdout(&o);
    for row in &confusion {
        let line = format!("[{}]", row.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "));
        assert!(text.lines().any(|l| l.trim().trim_end_matches(',') == line), "no line {line} in:\n{text}");
    }
}

/// The loss `eval --json` reports for `model` on spirals, with `extra` flags.
fn eval_loss(model: &Path, extra: &[&str]) -> f64 {
    let o =
        ok(&[&["eval", "--model", &s(model), "--data", "spirals", "--backend", "cpu", "--json"][..], extra].concat());
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["loss"].as_f64().unwrap()
}

#[test]
fn eval_draws_a_synthetic_set_with_the_seed_the_model_was_trained_with() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("spirals.safetensors");
    ok(&[
        "train",
        "--data",
        "spirals",
        "--seed",
        "5",
        "--epochs",
        "2",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &s(&model),
    ]);
    let default = eval_loss(&model, &[]);
    assert_eq!(default, eval_loss(&model, &["--seed", "5"]), "the default seed is the model's, 5");
    assert_ne!(default, eval_loss(&model, &["--seed", "42"]), "another seed draws other points");
}

#[test]
fn counts_are_singular_and_plural_and_a_resumed_run_says_how_many_epochs_it_trained() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("sine.safetensors");
    let o =
        ok(&["train", "--data", "sine", "--layers", "1,8,1", "--epochs", "1", "--backend", "cpu", "--out", &s(&ck)]);
    assert!(stdout(&o).starts_with("trained 1 epoch in "), "{}", stdout(&o));
    assert!(stderr(&o).contains("1 feature, 1 regression target)"), "{}", stderr(&o));
    let o = ok(&["train", "--data", "sine", "--epochs", "3", "--backend", "cpu", "--resume", &s(&ck), "--quiet"]);
    assert!(stdout(&o).starts_with("trained 3 epochs (2 in this run) in "), "{}", stdout(&o));
    let o = backprop(&["predict", "--model", &s(&ck), "--data", "sine", "--out", &s(&dir.path().join("p.csv"))]);
    assert!(stderr(&o).contains("wrote 256 predictions"), "{}", stderr(&o));
}
