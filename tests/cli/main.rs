//! The command line, run as a user runs it: `backprop` with no arguments, `train` checked step for step
//! against the f64 reference on both backends, `eval` and `predict` on a saved model, metrics and plots,
//! resuming, `--verify`, the library's builder beside the flags, `worked-example`, `devices` and `bench`,
//! the README's examples, and bad inputs that must each end in one clear `error:` line and leave every file
//! alone. One binary: the shared fixtures here, a module per topic.

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod commands;
mod eval_predict;
mod full_batch;
mod library;
mod outputs;
mod readme;
mod resume;
mod streams;
mod training;

use std::path::{Path, PathBuf};

use backprop::model::Params;
use ndarray::{Array1, Array2};

use common::battery::{Battery, KEEP, train_args};
use common::cli::{Gen, digits_model, s};

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
        // `train --epochs 1 --backend cpu`, trained once for the whole binary.
        let model = dir.path().join("digits.safetensors");
        std::fs::copy(digits_model(1), &model).unwrap();
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
        train_args(extra, &self.new_out, &self.new_metrics, &self.new_plot)
    }

    /// The would-be outputs of [`BadInputs::train`].
    fn absent(&self) -> [&Path; 3] {
        [&self.new_out, &self.new_metrics, &self.new_plot]
    }

    /// A battery over the temp dir in which train's would-be outputs must never appear.
    fn battery(&self) -> Battery {
        Battery::new(self.dir.path()).absent(self.absent())
    }
}
