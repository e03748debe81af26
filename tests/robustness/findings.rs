//! Findings: bad inputs once accepted, or reported misleadingly. Each test says what went wrong: negative
//! values read as flags, negative `--verify` tolerances, schedules that make the learning rate negative or
//! infinite, an IDX labels file called an images file, and error messages that named the wrong problem.

use super::Fixture;
use super::common::battery::{Battery, failure_problems};
use super::common::cli::{backprop, stderr, strings};

#[test]
fn negative_numbers_after_a_space_are_read_as_values_of_their_flag() {
    // `train` allows negative numbers as flag values; `bench`, `eval` and `predict` do not, so the value is
    // taken for an unknown flag ("unexpected argument '-3' found") and the flag is never named; bench's own
    // check for a non-positive peak is reachable only as `--peak-gflops=-3`.
    let f = Fixture::new();
    let mut b = f.battery();
    let cpu = ["bench", "--backend", "cpu", "--configs", "seed"];
    b.case("bench --peak-gflops -3", &strings(&[&cpu[..], &["--peak-gflops", "-3"]].concat()), &["--peak-gflops"]);
    b.case(
        "bench --cpu-peak-gflops -1",
        &strings(&[&cpu[..], &["--cpu-peak-gflops", "-1"]].concat()),
        &["--cpu-peak-gflops"],
    );
    b.case("bench --steps -1", &strings(&[&cpu[..], &["--steps", "-1"]].concat()), &["--steps"]);
    b.case("eval --batch-size -1", &f.eval(&["--data", "digits", "--batch-size", "-1"]), &["--batch-size"]);
    b.case("predict --batch-size -1", &f.predict(&["--data", "digits", "--batch-size", "-1"]), &["--batch-size"]);
    b.finish("negative values");
}

#[test]
fn negative_verify_tolerances_are_refused() {
    // With a negative --verify-atol (or rtol), `|got - ref| / (atol + rtol·|ref|)` is negative (or -inf), so
    // every check passes: `--verify` then accepts anything, even infinite differences.
    let dir = tempfile::tempdir().unwrap();
    let o = backprop(&[
        "train",
        "--data",
        "xor",
        "--backend",
        "cpu",
        "--epochs",
        "3",
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--verify",
        "--verify-atol=-1",
        "--verify-rtol=-1",
    ]);
    let err = stderr(&o);
    let mut b = Battery::new(dir.path());
    let mut passed = false;
    for line in err.lines() {
        if line.starts_with("verify step") {
            passed = line.contains(": ok");
        }
        if passed && line.contains("max abs inf") {
            b.fail(format!("--verify-atol=-1 --verify-rtol=-1: a step whose differences are infinite passed:\n{err}"));
            break;
        }
    }
    for flag in ["--verify-atol", "--verify-rtol"] {
        let args = strings(&["train", "--data", "xor", "--backend", "cpu", "--epochs", "1", "--verify"]);
        let args = [args, vec![format!("{flag}=-1")]].concat();
        b.case(&format!("{flag}=-1"), &args, &[flag]);
    }
    b.finish("verify tolerances");
}

#[test]
fn schedules_that_make_the_learning_rate_negative_or_infinite_are_refused() {
    // `--lr` is checked, but the schedule's factors are not: a negative --lr-gamma or --lr-min makes later
    // epochs climb the loss (lr -0.001, -1.25, ...) and the run exits 0; a huge --lr-gamma makes it
    // infinite, and the run stops only once the loss is NaN, after the first epoch's files are written, with
    // an error that blames the loss, not the flag.
    let f = Fixture::new();
    let mut b = f.battery();
    let args = |extra: &[&str]| f.train(&[&["--epochs", "3", "--lr-step", "1"][..], extra].concat());
    b.case("--lr-gamma -1", &args(&["--schedule", "step", "--lr-gamma", "-1"]), &["--lr-gamma", "-1"]);
    b.case("--lr-gamma 1e300", &args(&["--schedule", "step", "--lr-gamma", "1e300"]), &["--lr-gamma"]);
    b.case("--lr-min -5", &args(&["--schedule", "cosine", "--lr-min", "-5"]), &["--lr-min", "-5"]);
    b.finish("schedules");
}

#[test]
fn an_idx_labels_file_given_alone_is_called_a_labels_file() {
    // `is_idx` looks only at the type byte (0x08), which labels files share with images files, so a labels
    // file given as --data is reported as "looks like an IDX images file".
    let f = Fixture::new();
    let o = backprop(&f.train(&["--data", &f.path("labels.idx")]));
    let problems = failure_problems(&o);
    assert!(problems.is_empty(), "{problems:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("labels.idx"), "{err}");
    assert!(!err.contains("images file"), "a labels file is called an images file: {err}");
}

#[test]
fn error_messages_describe_the_actual_problem() {
    let f = Fixture::new();
    let mut wrong = Vec::new();
    let mut check = |name: &str, args: Vec<String>, needles: &[&str]| {
        let o = backprop(&args);
        let mut problems = failure_problems(&o);
        let err = stderr(&o);
        for n in needles {
            if !err.to_lowercase().contains(&n.to_lowercase()) {
                problems.push(format!("does not say {n:?}"));
            }
        }
        if !problems.is_empty() {
            wrong.push(format!(
                "[{name}] backprop {}\n    {}\n    stderr: {err:?}",
                args.join(" "),
                problems.join("; ")
            ));
        }
    };
    // --labels with the bundled data: "digits: No such file or directory", which names neither --labels
    // nor the reason (the bundled sets take no labels file).
    check("--labels with the bundled digits", f.train(&["--labels", &f.path("labels.idx")]), &["--labels"]);
    // An empty --data: "error: : no such file ...", which names nothing.
    check("--data empty", f.train(&["--data", ""]), &["--data"]);
    // An output path under a plain file: "directory .../afile does not exist", though it does exist.
    let under_file = format!("{}/x.csv", f.path("afile"));
    check(
        "predict --out under a plain file",
        f.predict(&["--data", "digits", "--out", &under_file]),
        &["afile", "not a directory"],
    );
    // eval has no --layers, yet the width mismatch points at "the first number of --layers".
    let o = backprop(&f.eval(&["--data", "xor"]));
    if stderr(&o).contains("--layers") {
        wrong.push(format!("[eval with data of the wrong width] mentions --layers, a train flag: {:?}", stderr(&o)));
    }
    assert!(wrong.is_empty(), "{} misleading error message(s):\n{}", wrong.len(), wrong.join("\n"));
}
