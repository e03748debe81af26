//! Bad inputs to every subcommand (beyond those in the `cli` suite): outputs, data files, checkpoints and
//! flag values for `train`; `eval` and `predict`; `bench`, `worked-example` and `devices`. Each ends in one
//! clear `error:` line, with no panic and no file created or changed.

use super::Fixture;
use super::common::battery::Battery;
use super::common::cli::strings;

#[test]
fn bad_train_outputs_fail_with_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let mut b = f.battery();
    let (dir, afile, good) = (f.path("a-dir"), f.path("afile"), f.path("good.csv"));
    b.case("--metrics is a directory", &f.train(&["--metrics", &dir]), &["a-dir", "directory"]);
    b.case("--out is a directory", &f.train(&["--out", &dir]), &["a-dir", "directory"]);
    b.case("--plot in a missing directory", &f.train(&["--plot", "/nonexistent-dir/p.png"]), &["/nonexistent-dir"]);
    let under_file = format!("{afile}/x.safetensors");
    b.case("--out under a plain file", &f.train(&["--out", &under_file]), &["afile"]);
    b.case("--metrics is --data", &f.train(&["--data", &good, "--metrics", &good]), &["good.csv", "both"]);
    b.finish("train outputs");
    f.untouched();
}

#[test]
fn bad_train_data_files_fail_with_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let mut b = f.battery();
    let (good, keep, keep_csv) = (f.path("good.csv"), f.path("keep.safetensors"), f.path("keep.csv"));
    let (images, labels) = (f.path("images.idx"), f.path("labels.idx"));
    let empty = f.path("empty.csv");
    b.case("empty CSV, existing --out", &f.train(&["--data", &empty, "--out", &keep]), &["empty.csv", "empty"]);
    let header = f.path("header-only.csv");
    b.case(
        "header-only CSV, existing --metrics",
        &f.train(&["--data", &header, "--metrics", &keep_csv]),
        &["header-only.csv", "no data rows"],
    );
    b.case(
        "IDX labels as --data, images as --labels",
        &f.train(&["--data", &labels, "--labels", &images]),
        &["labels.idx", "IDX"],
    );
    b.case(
        "IDX images as both --data and --labels",
        &f.train(&["--data", &images, "--labels", &images]),
        &["images.idx", "label"],
    );
    let missing_labels = f.path("missing-labels.idx");
    b.case(
        "missing --labels file",
        &f.train(&["--data", &images, "--labels", &missing_labels]),
        &["missing-labels.idx"],
    );
    b.case("--targets 0 on a CSV", &f.train(&["--data", &good, "--targets", "0"]), &["good.csv", "target"]);
    b.case("--targets with the bundled digits", &f.train(&["--targets", "2"]), &["--targets", "digits"]);
    b.finish("train data files");
    f.untouched();
}

#[test]
fn bad_train_checkpoints_fail_with_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let mut b = f.battery();
    let (dir, good) = (f.path("a-dir"), f.path("good.csv"));
    let (model, keep) = (f.path("model.safetensors"), f.path("keep.safetensors"));
    let (zero, seven) = (f.path("zero.safetensors"), f.path("seven.safetensors"));
    b.case("0-byte --resume", &f.train(&["--resume", &zero]), &["zero.safetensors", "safetensors"]);
    b.case(
        "7-byte --resume, existing --out",
        &f.train(&["--resume", &seven, "--out", &keep]),
        &["seven.safetensors", "safetensors"],
    );
    b.case("7-byte --init", &f.train(&["--data", &good, "--init", &seven]), &["seven.safetensors", "safetensors"]);
    b.case("0-byte --init", &f.train(&["--data", &good, "--init", &zero]), &["zero.safetensors", "safetensors"]);
    b.case("--resume a directory", &f.train(&["--resume", &dir]), &["a-dir", "directory"]);
    b.case("--init a directory", &f.train(&["--data", &good, "--init", &dir]), &["a-dir", "directory"]);
    b.case("--init a CSV file", &f.train(&["--data", &good, "--init", &good]), &["good.csv", "safetensors"]);
    b.case(
        "--resume with other --layers",
        &f.train(&["--resume", &model, "--layers", "64,16,10", "--epochs", "3"]),
        &["--layers", "64,16,10"],
    );
    let no_state = f.path("no-state.safetensors");
    b.case(
        "--resume a checkpoint without optimizer state",
        &f.train(&["--resume", &no_state, "--epochs", "3"]),
        &["no-state.safetensors", "optimizer state"],
    );
    b.finish("train checkpoints");
    f.untouched();
}

#[test]
fn bad_train_flag_values_fail_with_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let mut b = f.battery();
    let model = f.path("model.safetensors");
    b.case("--beta1 1", &f.train(&["--beta1", "1"]), &["beta", "1"]);
    b.case("--beta2=-0.5", &f.train(&["--beta2=-0.5"]), &["beta", "-0.5"]);
    b.case("--eps 0", &f.train(&["--eps", "0"]), &["--eps", "0"]);
    b.case("--lr nan", &f.train(&["--lr", "nan"]), &["--lr", "nan"]);
    b.case("--lr inf", &f.train(&["--lr", "inf"]), &["--lr", "inf"]);
    b.case("--test-split nan", &f.train(&["--test-split", "nan"]), &["--test-split", "nan"]);
    b.case("--test-split -0.1", &f.train(&["--test-split", "-0.1"]), &["--test-split", "-0.1"]);
    b.case("--layers with one width", &f.train(&["--layers", "64"]), &["width"]);
    b.case("--layers empty", &f.train(&["--layers", ""]), &["--layers"]);
    b.case("--seed -1", &f.train(&["--seed", "-1"]), &["--seed", "-1"]);
    b.case("--epochs 1e3", &f.train(&["--epochs", "1e3"]), &["--epochs", "1e3"]);
    b.case("--batch-size -5", &f.train(&["--batch-size", "-5"]), &["--batch-size", "-5"]);
    b.case("--model is not a train flag", &f.train(&["--model", &model]), &["--model"]);
    b.case("--epochs 0 with no subcommand", &strings(&["--epochs", "0", "--backend", "cpu"]), &["--epochs"]);
    b.case("unknown subcommand", &strings(&["frobnicate"]), &["frobnicate"]);
    b.finish("train flag values");
    f.untouched();
}

#[test]
fn bad_eval_and_predict_inputs_fail_with_one_clear_line_and_write_nothing() {
    let f = Fixture::new();
    let mut b = f.battery();
    let (dir, afile, good) = (f.path("a-dir"), f.path("afile"), f.path("good.csv"));
    let (zero, seven) = (f.path("zero.safetensors"), f.path("seven.safetensors"));
    let (empty, header) = (f.path("empty.csv"), f.path("header-only.csv"));
    let (images, labels) = (f.path("images.idx"), f.path("labels.idx"));
    let missing_model = f.path("missing.safetensors");
    let digits = ["--data", "digits"];

    // eval
    let e = |extra: &[&str]| f.eval(&[&digits[..], extra].concat());
    b.case("eval: missing --model", &e(&["--model", &missing_model]), &["missing.safetensors", "no such file"]);
    b.case("eval: --model is a directory", &e(&["--model", &dir]), &["a-dir", "directory"]);
    b.case("eval: 0-byte --model", &e(&["--model", &zero]), &["zero.safetensors", "safetensors"]);
    b.case("eval: 7-byte --model", &e(&["--model", &seven]), &["seven.safetensors", "safetensors"]);
    b.case("eval: a CSV as --model", &e(&["--model", &good]), &["good.csv", "safetensors"]);
    b.case("eval: --backend tpu", &e(&["--backend", "tpu"]), &["--backend", "tpu"]);
    b.case("eval: --batch-size=-1", &e(&["--batch-size=-1"]), &["--batch-size", "-1"]);
    b.case("eval: --targets with the bundled digits", &e(&["--targets", "2"]), &["--targets", "digits"]);
    b.case("eval: empty CSV", &f.eval(&["--data", &empty]), &["empty.csv", "empty"]);
    b.case("eval: header-only CSV", &f.eval(&["--data", &header]), &["header-only.csv", "no data rows"]);
    let missing_csv = f.path("missing.csv");
    b.case("eval: missing --data", &f.eval(&["--data", &missing_csv]), &["missing.csv", "no such file"]);
    b.case("eval: data of the wrong width", &f.eval(&["--data", "xor"]), &["xor", "2 feature"]);
    b.case(
        "eval: IDX labels as --data, images as --labels",
        &f.eval(&["--data", &labels, "--labels", &images]),
        &["labels.idx", "IDX"],
    );

    // predict
    let p = |extra: &[&str]| f.predict(&[&digits[..], extra].concat());
    b.case("predict: --out is a directory", &p(&["--out", &dir]), &["a-dir", "directory"]);
    let under_file = format!("{afile}/x.csv");
    b.case("predict: --out under a plain file", &p(&["--out", &under_file]), &["afile"]);
    b.case("predict: --out in a missing directory", &p(&["--out", "/nonexistent-dir/p.csv"]), &["/nonexistent-dir"]);
    b.case("predict: --out empty", &p(&["--out", ""]), &["--out"]);
    b.case("predict: --batch-size 0", &p(&["--batch-size", "0"]), &["--batch-size", "at least 1"]);
    b.case("predict: missing --model", &p(&["--model", &missing_model]), &["missing.safetensors"]);
    b.case("predict: 7-byte --model", &p(&["--model", &seven]), &["seven.safetensors", "safetensors"]);
    let keep_csv = f.path("keep.csv");
    b.case(
        "predict: 0-byte --model, existing --out",
        &p(&["--model", &zero, "--out", &keep_csv]),
        &["zero.safetensors", "safetensors"],
    );
    b.case(
        "predict: empty CSV, existing --out",
        &f.predict(&["--data", &empty, "--out", &keep_csv]),
        &["empty.csv", "empty"],
    );
    b.case("predict: header-only CSV", &f.predict(&["--data", &header]), &["header-only.csv", "no data rows"]);
    b.case("predict: data of the wrong width", &f.predict(&["--data", "spirals"]), &["spirals", "2 feature"]);
    b.case(
        "predict: IDX labels as --data, images as --labels",
        &f.predict(&["--data", &labels, "--labels", &images]),
        &["labels.idx", "IDX"],
    );
    b.finish("eval and predict");
    f.untouched();
}

#[test]
fn bad_bench_worked_example_and_devices_flags_fail_with_one_clear_line() {
    // All of these are refused before any device is opened or any step is timed.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Battery::new(dir.path());
    let bench = |extra: &[&str]| strings(&[&["bench"][..], extra].concat());
    let cpu = ["--backend", "cpu", "--configs", "seed"];
    let bench_cpu = |extra: &[&str]| bench(&[&cpu[..], extra].concat());
    b.case("bench --steps 0", &bench_cpu(&["--steps", "0"]), &["--steps", "at least 1"]);
    b.case("bench --steps 1.5", &bench_cpu(&["--steps", "1.5"]), &["--steps", "1.5"]);
    b.case("bench --backend tpu", &bench(&["--backend", "tpu"]), &["--backend", "tpu"]);
    b.case("bench --peak-gflops=-3", &bench_cpu(&["--peak-gflops=-3"]), &["peak", "-3"]);
    b.case("bench --peak-gflops inf", &bench_cpu(&["--peak-gflops", "inf"]), &["peak", "inf"]);
    b.case("bench --cpu-peak-gflops 0", &bench_cpu(&["--cpu-peak-gflops", "0"]), &["peak", "0"]);
    b.case("bench --cpu-peak-gflops nan", &bench_cpu(&["--cpu-peak-gflops", "nan"]), &["peak", "nan"]);
    b.case("bench --configs seed,huge", &bench(&["--backend", "cpu", "--configs", "seed,huge"]), &["huge"]);
    b.case("bench --configs empty", &bench(&["--backend", "cpu", "--configs", ""]), &["--configs"]);
    b.case("bench --warmup x", &bench_cpu(&["--warmup", "x"]), &["--warmup", "x"]);
    b.case("bench --crossover-max x", &bench_cpu(&["--crossover-max", "x"]), &["--crossover-max", "x"]);
    b.case("bench --warmup huge", &bench_cpu(&["--warmup", "100000000"]), &["--warmup", "at most"]);
    b.case("bench --steps huge", &bench_cpu(&["--steps", "100000000"]), &["--steps", "at most"]);
    b.case("bench --crossover-max huge", &bench_cpu(&["--crossover-max", "1048576"]), &["--crossover-max", "at most"]);
    b.case("bench --backend auto", &bench(&["--backend", "auto"]), &["--backend", "cpu, gpu or both"]);

    b.case("worked-example --bogus", &strings(&["worked-example", "--bogus"]), &["--bogus"]);
    b.case("worked-example --adapter with no value", &strings(&["worked-example", "--adapter"]), &["--adapter"]);
    b.case("worked-example --backend empty", &strings(&["worked-example", "--backend", ""]), &["--backend"]);
    b.case("worked-example extra argument", &strings(&["worked-example", "--json", "extra"]), &["extra"]);

    b.case("devices --bogus", &strings(&["devices", "--bogus"]), &["--bogus"]);
    b.case("devices extra argument", &strings(&["devices", "extra"]), &["extra"]);
    b.case("devices --json=yes", &strings(&["devices", "--json=yes"]), &["--json", "yes"]);
    b.case("devices --backend cpu", &strings(&["devices", "--backend", "cpu"]), &["--backend"]);
    b.finish("bench, worked-example and devices");
}
