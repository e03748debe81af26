//! train's output files: never the same file twice or an input, unwritable paths found before the first
//! epoch, written at the interval asked for and always after the last epoch.

use backprop::report::{EpochMetrics, read_metrics_csv, read_plot_history};

use super::BadInputs;
use super::common::cli::{backprop, load, ok, s, stderr, strings};

#[test]
fn outputs_that_name_the_same_file_or_an_input_are_refused_before_training() {
    let f = BadInputs::new();
    let mut b = f.battery().absent([f.dir.path().join("same.png")]);
    let (out, metrics, plot) = (s(&f.new_out), s(&f.new_metrics), s(&f.new_plot));
    let dir_name = f.dir.path().file_name().unwrap().to_string_lossy().into_owned();
    let same_png = f.path("same.png");
    b.case("--out is --metrics", &f.train(&["--metrics", &out]), &["new.safetensors", "--out", "--metrics"]);
    // The same file spelled two ways, and before it exists.
    let spelled = format!("{}/../{dir_name}/new.png", f.dir.path().display());
    b.case(
        "--metrics is --plot, spelled another way",
        &f.train(&["--plot", &plot, "--metrics", &spelled]),
        &["new.png", "--metrics", "--plot"],
    );
    b.case("--plot is --out", &f.train(&["--out", &same_png, "--plot", &same_png]), &["same.png", "--out", "--plot"]);
    b.case(
        "--metrics is --resume",
        &f.train(&["--resume", &f.model, "--metrics", &f.model, "--epochs", "3"]),
        &["both an input and an output"],
    );
    b.case(
        "--plot is --init",
        &f.train(&["--data", &f.good_csv, "--init", &same_png, "--plot", &same_png]),
        &["both an input and an output"],
    );
    b.case(
        "predict --out is --labels",
        &strings(&["predict", "--model", &f.model, "--data", &f.good_csv, "--labels", &metrics, "--out", &metrics]),
        &["both an input and the output"],
    );
    b.finish("outputs that name the same file");
}

#[test]
fn unwritable_outputs_are_found_before_the_first_epoch() {
    let f = BadInputs::new();
    let mut b = f.battery();
    // Every case fails with one error line: no epoch line, so no epoch ran.
    let trailing = format!("{}/", f.path("model.safetensors"));
    b.case("--out ends in /", &f.train(&["--out", &trailing]), &["model.safetensors/", "directory"]);
    let long = f.path(&format!("{}.csv", "m".repeat(300)));
    b.case("--metrics name too long", &f.train(&["--metrics", &long]), &["too long"]);
    let missing = f.path("no-such-dir/curves.png");
    b.case("--plot in a missing directory", &f.train(&["--plot", &missing]), &["no-such-dir", "does not exist"]);
    // A directory where no file can be created, even by root: sysfs refuses (read-only in containers).
    b.case(
        "--out where files cannot be created",
        &f.train(&["--out", "/sys/backprop-test.safetensors"]),
        &["/sys", "cannot create a file"],
    );
    b.case(
        "predict --out where files cannot be created",
        &strings(&["predict", "--model", &f.model, "--data", "digits", "--out", "/sys/preds.csv", "--backend", "cpu"]),
        &["/sys", "cannot create a file"],
    );
    b.finish("unwritable outputs");
    assert!(!std::path::Path::new("/sys/backprop-test.safetensors").exists());
}

/// The rows of a metrics file with the seconds column (which differs from run to run) set to 0.
fn rows_without_seconds(path: &std::path::Path) -> Vec<EpochMetrics> {
    let rows = read_metrics_csv(path).unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|r| EpochMetrics { seconds: 0.0, ..r }).collect()
}

#[test]
fn every_interval_writes_the_last_epoch_and_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |every: &str| {
        let p = |ext: &str| dir.path().join(format!("every-{every}.{ext}"));
        let (out, metrics, plot) = (p("safetensors"), p("csv"), p("png"));
        let args =
            ["train", "--data", "spirals", "--epochs", "7", "--backend", "cpu", "--quiet", "--save-every", every];
        ok(&[&args[..], &["--out", &s(&out), "--metrics", &s(&metrics), "--plot", &s(&plot)]].concat());
        (out, metrics, plot)
    };
    let (out1, metrics1, _) = run("1");
    for every in ["3", "5", "auto"] {
        let (out, metrics, plot) = run(every);
        assert_eq!(load(&out).training.unwrap().epoch, 7, "--save-every {every}: the last epoch is always saved");
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&out1).unwrap(),
            "--save-every {every}: another checkpoint"
        );
        assert_eq!(rows_without_seconds(&metrics), rows_without_seconds(&metrics1), "--save-every {every}: metrics");
        let drawn = read_plot_history(&plot).unwrap().expect("the plot carries its rows");
        assert_eq!(
            drawn.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>(),
            "--save-every {every}"
        );
    }
    let bad = backprop_fails(&["train", "--save-every", "0"]);
    assert!(bad.contains("--save-every"), "{bad}");
}

/// Runs the binary expecting a failure; returns stderr.
fn backprop_fails(args: &[&str]) -> String {
    let o = backprop(args);
    assert!(!o.status.success(), "backprop {args:?} succeeded");
    stderr(&o)
}
