//! Training as a user runs it: `backprop` with no arguments trains the bundled digits (as text with a
//! progress line per epoch, or as one JSON object), `--metrics` and `--plot` write one row per epoch and a
//! PNG, and `--verify` checks the GPU's steps against the reference.

use super::common::cli::{ok, s, stderr, stdout};

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
