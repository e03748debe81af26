//! `eval` and `predict` on a saved model: eval's text and JSON agree and count every row once, predict
//! writes the argmax of each row's outputs and agrees with eval, reads features with or without labels as it
//! reads the bundled set, from a file or from standard input.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

use super::common::cli::{backprop, cmd, digits_model, ok, s, stderr, stdout};

/// A model trained for 3 epochs on the digits, and what `eval` (text and JSON) and `predict` give for it on
/// the bundled set: run once and shared by the tests below.
struct Digits {
    model: PathBuf,
    eval_text: String,
    eval_json: Value,
    predictions: String,
}

fn digits() -> &'static Digits {
    static DIGITS: OnceLock<Digits> = OnceLock::new();
    DIGITS.get_or_init(|| {
        let model = digits_model(3);
        let m = s(&model);
        let eval_text = stdout(&ok(&["eval", "--model", &m, "--data", "digits", "--backend", "cpu"]));
        let o = ok(&["eval", "--model", &m, "--data", "digits", "--backend", "cpu", "--json"]);
        let eval_json: Value = serde_json::from_slice(&o.stdout).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let preds = dir.path().join("preds.csv");
        let o = ok(&["predict", "--model", &m, "--data", "digits", "--out", &s(&preds), "--backend", "cpu"]);
        assert!(stderr(&o).contains("1797"), "{}", stderr(&o));
        let predictions = std::fs::read_to_string(&preds).unwrap();
        Digits { model, eval_text, eval_json, predictions }
    })
}

/// The labels of the bundled digits: 1797 of them.
fn labels() -> Vec<usize> {
    let labels = backprop::data::digits().unwrap().labels.clone().unwrap();
    assert_eq!(labels.len(), 1797);
    labels
}

/// The accuracy, in percent, on eval's text output.
fn text_accuracy(out: &str) -> f64 {
    let acc_line = out.lines().find(|l| l.starts_with("accuracy ")).unwrap_or_else(|| panic!("no accuracy:\n{out}"));
    let text_acc: f64 = acc_line["accuracy ".len()..].trim().trim_end_matches('%').parse().unwrap();
    assert!(text_acc > 80.0, "{acc_line}");
    text_acc
}

/// The confusion matrix in eval's JSON, and its diagonal: the rows classified right.
fn confusion(v: &Value) -> (Vec<Vec<usize>>, usize) {
    let confusion: Vec<Vec<usize>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    let diagonal: usize = (0..10).map(|i| confusion[i][i]).sum();
    (confusion, diagonal)
}

/// The header of predict's CSV for 10 outputs.
fn predictions_header() -> String {
    let want: Vec<String> =
        std::iter::once("predicted".to_string()).chain((0..10).map(|j| format!("output_{j}"))).collect();
    want.join(",")
}

/// The cells of a CSV text's data rows (after the header).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

#[test]
fn eval_prints_the_accuracy_and_a_confusion_matrix_that_counts_every_row_once() {
    // Text: the loss, an accuracy line and a 10x10 confusion matrix that counts every row once.
    let out = &digits().eval_text;
    text_accuracy(out);
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
}

#[test]
fn eval_as_json_gives_the_numbers_the_text_gives() {
    let d = digits();
    let v = &d.eval_json;
    assert!(v["loss"].as_f64().is_some_and(|l| l.is_finite() && l > 0.0), "{v}");
    let acc = v["accuracy"].as_f64().unwrap();
    assert_eq!(v["rows"], 1797, "{v}");
    let (confusion, diagonal) = confusion(v);
    assert_eq!(confusion.len(), 10);
    assert!(confusion.iter().all(|r| r.len() == 10), "{v}");
    assert_eq!(confusion.iter().flatten().sum::<usize>(), 1797);
    assert!((acc - diagonal as f64 / 1797.0).abs() < 1e-12, "accuracy {acc} vs diagonal {diagonal}/1797");
    let text_acc = text_accuracy(&d.eval_text);
    assert!((100.0 * acc - text_acc).abs() <= 0.005 + 1e-9, "text {text_acc}% vs json {acc}");
    let labels = labels();
    for (i, row) in confusion.iter().enumerate() {
        let n = labels.iter().filter(|&&l| l == i).count();
        assert_eq!(row.iter().sum::<usize>(), n, "row {i} of the confusion matrix counts the rows of class {i}");
    }
}

#[test]
fn predict_writes_the_argmax_of_each_rows_outputs_and_agrees_with_eval() {
    // predict on the bundled set: a header, 1797 rows, the class is the argmax of the outputs.
    let d = digits();
    let text = &d.predictions;
    assert_eq!(text.lines().next().unwrap(), predictions_header());
    let rows = csv_rows(text);
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
    let correct = predicted.iter().zip(&labels()).filter(|(p, l)| p == l).count();
    let (_, diagonal) = confusion(&d.eval_json);
    assert_eq!(correct, diagonal, "predict and eval disagree on how many rows are right");
}

#[test]
fn predict_reads_features_with_or_without_labels_as_it_reads_the_bundled_set() {
    // predict on a CSV of features only (64 columns, no labels, no header), and on one with the labels.
    let d = digits();
    let dir = tempfile::tempdir().unwrap();
    let digits = backprop::data::digits().unwrap();
    let rows = csv_rows(&d.predictions);
    let n = 100;
    let mut features = String::new();
    let mut with_labels = (0..64).map(|j| format!("p{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for (r, label) in labels().iter().enumerate().take(n) {
        let cells: Vec<String> = digits.x.row(r).iter().map(|v| v.to_string()).collect();
        features += &(cells.join(",") + "\n");
        with_labels += &format!("{},{}\n", cells.join(","), label);
    }
    for (name, contents) in [("features.csv", features), ("labelled.csv", with_labels)] {
        let input = dir.path().join(name);
        std::fs::write(&input, contents).unwrap();
        let out = dir.path().join(format!("preds-{name}"));
        ok(&["predict", "--model", &s(&d.model), "--data", &s(&input), "--out", &s(&out), "--backend", "cpu"]);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.lines().next().unwrap(), predictions_header(), "{name}");
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

/// A CSV of features only: `eval` says it needs labels; `predict` takes it, from a file or from stdin, and
/// writes the same predictions either way.
#[test]
fn eval_needs_labels_and_predict_takes_features_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (model, features) = (path("m.safetensors"), path("features.csv"));
    let rows: Vec<String> = (0..7).map(|r| format!("{},{}", r % 3, (r * 5) % 7)).collect();
    let labelled: Vec<String> = rows.iter().enumerate().map(|(r, x)| format!("{x},{}", r % 2)).collect();
    std::fs::write(path("train.csv"), labelled.join("\n")).unwrap();
    std::fs::write(&features, rows.join("\n")).unwrap();
    ok(&["train", "--data", &path("train.csv"), "--epochs", "2", "--test-split", "0", "--out", &model, "-q"]);

    let o = backprop(&["eval", "--model", &model, "--data", &features]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("eval needs labels"), "{}", stderr(&o));

    let (from_file, from_stdin) = (path("file.csv"), path("stdin.csv"));
    ok(&["predict", "--model", &model, "--data", &features, "--out", &from_file]);
    let stdin = std::fs::File::open(&features).unwrap();
    let o =
        cmd().args(["predict", "--model", &model, "--data", "-", "--out", &from_stdin]).stdin(stdin).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (std::fs::read_to_string(&from_file).unwrap(), std::fs::read_to_string(&from_stdin).unwrap());
    assert_eq!(a.lines().count(), 8, "a header and 7 rows:\n{a}");
    assert_eq!(a, b);
}
