//! Bad inputs to `train`, `eval` and `predict`: data files, flags and checkpoints that must each end in one
//! clear `error:` line, with no panic and no file written or changed.

use super::common::battery::{Battery, KEEP};
use super::common::cli::{Gen, ok, s, strings};
use super::common::pytorch::{Raw, write_init, write_raw};
use super::full_batch::SIZES;
use super::{BadInputs, random_params};

#[test]
fn the_battery_reports_a_run_that_succeeds_writes_a_file_says_another_thing_or_changes_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("xor.safetensors");
    let mut b = Battery::new(dir.path()).absent([&out]);
    let train = ["train", "--data", "xor", "--epochs", "1", "--backend", "cpu", "--quiet", "--out", &s(&out)];
    b.case("a run that trains", &strings(&train), &[]);
    b.case("a run that fails otherwise", &strings(&["train", "--epochs", "0"]), &["no such words"]);
    b.untouched(&s(&out), KEEP);
    let failures = b.failures();
    assert_eq!(failures.len(), 3, "{failures:#?}");
    let wants: [&[&str]; 3] = [
        &["[a run that trains]", "exited 0", "files created, changed or removed", "xor.safetensors was created"],
        &["[a run that fails otherwise]", "the error does not mention \"no such words\""],
        &["xor.safetensors was changed or removed"],
    ];
    for (failure, want) in failures.iter().zip(wants) {
        for w in want {
            assert!(failure.contains(w), "{failure:?} does not say {w:?}");
        }
    }
    assert!(!failures[1].contains("exited 0") && !failures[1].contains("files"), "{}", failures[1]);
}

#[test]
fn bad_data_files_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = f.battery();

    let missing = f.path("missing.csv");
    b.case("missing --data", &f.train(&["--data", &missing]), &["missing.csv", "no such file"]);
    std::fs::create_dir(f.dir.path().join("a-directory.csv")).unwrap();
    let d = f.path("a-directory.csv");
    b.case("directory as --data", &f.train(&["--data", &d]), &["a-directory.csv", "directory"]);
    let ragged = f.write("ragged.csv", "a,b,label\n1,2,0\n3,4,1\n5,1\n");
    b.case(
        "ragged CSV, existing --out",
        &f.train(&["--data", &ragged, "--out", &f.keep]),
        &["ragged.csv", "line 4", "expected 3 columns", "found 2"],
    );
    let word = f.write("word.csv", "1,2,0\n3,4,1\n5,six,1\n");
    b.case(
        "non-numeric cell",
        &f.train(&["--data", &word]),
        &["word.csv", "line 3", "column 2", "six", "not a number"],
    );
    let nan = f.write("nan.csv", "1,2,0\n3,NaN,1\n5,6,1\n");
    b.case("NaN cell", &f.train(&["--data", &nan]), &["nan.csv", "line 2", "NaN", "not finite"]);
    let neg = f.write("negative.csv", "1,2,0\n3,4,-1\n");
    b.case("negative label", &f.train(&["--data", &neg]), &["negative.csv", "line 2", "-1", "label"]);
    let frac = f.write("fraction.csv", "1,2,0\n3,4,1.5\n");
    b.case("fractional label", &f.train(&["--data", &frac]), &["fraction.csv", "1.5", "label"]);

    // eval with a 10-class model: a label of 10 is out of range.
    let cells = vec!["3"; 64].join(",");
    let ten = f.write("label10.csv", format!("{cells},9\n{cells},10\n"));
    b.case(
        "label out of range for eval",
        &strings(&["eval", "--model", &f.model, "--data", &ten, "--backend", "cpu"]),
        &["label10.csv", "line 2", "10", "out of range", "10 classes"],
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
    b.case("IDX images without --labels", &f.train(&["--data", &img]), &["images.idx", "--labels"]);
    let short = f.write("short-images.idx", images(6, 5));
    b.case("truncated IDX images", &f.train(&["--data", &short, "--labels", &lab]), &["short-images.idx", "truncated"]);
    let lab5 = f.write("labels5.idx", labels(5));
    b.case(
        "IDX count mismatch",
        &f.train(&["--data", &img, "--labels", &lab5]),
        &["labels5.idx", "5 labels", "6 images"],
    );
    b.untouched(&f.keep, KEEP);
    b.finish("bad data files");
}

#[test]
fn bad_train_flags_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = f.battery();
    let good_bytes = std::fs::read(&f.good_csv).unwrap();
    let model_bytes = std::fs::read(&f.model).unwrap();
    let data = ["--data", f.good_csv.as_str()];
    let mut case = |name: &str, extra: &[&str], needles: &[&str]| {
        b.case(name, &f.train(&[&data[..], extra].concat()), needles);
    };

    case("--layers first width", &["--layers", "4,8,3"], &["good.csv", "5 feature columns", "input width is 4"]);
    case("--layers last width", &["--layers", "5,8,2"], &["good.csv", "3 classes", "output width is 2"]);
    case("--layers 5,x,3", &["--layers", "5,x,3"], &["--layers", "'x'"]);
    case("--layers 5,0,3", &["--layers", "5,0,3"], &["width", "0"]);
    case("unknown --activation", &["--activation", "swish"], &["activation", "swish"]);
    case("unknown --optimizer", &["--optimizer", "lion"], &["optimizer", "lion"]);
    case("unknown --loss", &["--loss", "hinge"], &["loss", "hinge"]);
    case("unknown --output", &["--output", "tanh"], &["output", "tanh"]);
    case("unknown --schedule", &["--schedule", "warmup"], &["schedule", "warmup"]);
    case("unknown --normalize", &["--normalize", "zscore"], &["normaliz", "zscore"]);
    case("unknown --backend", &["--backend", "quantum"], &["backend", "quantum"]);
    case("--output softmax --loss mse", &["--output", "softmax", "--loss", "mse"], &["--output softmax", "--loss"]);
    case("--epochs 0", &["--epochs", "0"], &["--epochs", "at least 1"]);
    case("--batch-size 0", &["--batch-size", "0"], &["--batch-size", "at least 1"]);
    case("--lr -1", &["--lr", "-1"], &["--lr", "-1"]);
    case("--lr=-1", &["--lr=-1"], &["--lr", "-1"]);
    case("--test-split 1.5", &["--test-split", "1.5"], &["--test-split", "1.5"]);
    case("--verify 0", &["--verify", "0"], &["--verify", ">= 1"]);
    case("--lr-step 0", &["--schedule", "step", "--lr-step", "0"], &["--lr-step", "at least 1"]);
    case("--momentum=1.5", &["--optimizer", "momentum", "--momentum=1.5"], &["--momentum", "1.5"]);
    case("--weight-decay=-1", &["--weight-decay=-1"], &["--weight-decay", "-1"]);
    case("--verify-rtol inf", &["--verify", "--verify-rtol", "inf"], &["--verify-rtol", "must be a finite number"]);
    case("--max-grad-norm inf", &["--max-grad-norm", "inf"], &["--max-grad-norm", "must be a finite number"]);
    case("--max-grad-norm 1e39", &["--max-grad-norm", "1e39"], &["--max-grad-norm", "finite", "f32"]);
    case("--lr inf", &["--lr", "inf"], &["--lr", "must be a finite number > 0"]);
    case("--plot out.txt", &["--plot", &f.path("out.txt")], &["--plot", ".png"]);
    let nowhere = f.path("no-such-dir/model.safetensors");
    case("--out in a missing directory", &["--out", &nowhere], &["no-such-dir", "does not exist"]);
    let nowhere_csv = f.path("no-such-dir/metrics.csv");
    case("--metrics in a missing directory", &["--metrics", &nowhere_csv], &["no-such-dir", "does not exist"]);
    case("--out is --data", &["--out", &f.good_csv], &["good.csv", "both an input and an output"]);
    b.untouched(&f.good_csv, &good_bytes);
    b.untouched(&f.model, &model_bytes);
    b.finish("bad train flags");
}

#[test]
fn bad_eval_and_predict_flags_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let preds = f.dir.path().join("preds.csv");
    let mut b = f.battery().absent([&preds]);
    let good_bytes = std::fs::read(&f.good_csv).unwrap();
    let model_bytes = std::fs::read(&f.model).unwrap();
    let nowhere_csv = f.path("no-such-dir/metrics.csv");
    b.case(
        "eval --batch-size 0",
        &strings(&["eval", "--model", &f.model, "--data", "digits", "--batch-size", "0"]),
        &["--batch-size", "at least 1"],
    );
    b.case(
        "predict --out is --data",
        &strings(&["predict", "--model", &f.model, "--data", &f.good_csv, "--out", &f.good_csv, "--backend", "cpu"]),
        &["good.csv", "both an input and the output"],
    );
    b.case(
        "predict --out is --model",
        &strings(&["predict", "--model", &f.model, "--data", "digits", "--out", &f.model, "--backend", "cpu"]),
        &["digits.safetensors", "both an input and the output"],
    );
    b.case(
        "predict --out in a missing directory",
        &strings(&["predict", "--model", &f.model, "--data", "digits", "--out", &nowhere_csv, "--backend", "cpu"]),
        &["no-such-dir", "does not exist"],
    );
    b.case(
        "predict with too few columns",
        &strings(&["predict", "--model", &f.model, "--data", &f.good_csv, "--out", &s(&preds), "--backend", "cpu"]),
        &["good.csv", "64"],
    );
    b.untouched(&f.good_csv, &good_bytes);
    b.untouched(&f.model, &model_bytes);
    b.finish("bad eval and predict flags");
}

#[test]
fn unreadable_checkpoints_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = f.battery();
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
        );
        b.case(&format!("{what} as --resume"), &f.train(&["--resume", file]), &[name, "safetensors"]);
        b.case(
            &format!("{what} as eval --model"),
            &strings(&["eval", "--model", file, "--data", "digits", "--backend", "cpu"]),
            &[name, "safetensors"],
        );
        b.case(
            &format!("{what} as predict --model, existing --out"),
            &strings(&["predict", "--model", file, "--data", "digits", "--out", &keep_csv, "--backend", "cpu"]),
            &[name, "safetensors"],
        );
    }
    b.untouched(&f.keep, KEEP);
    b.untouched(&keep_csv, KEEP);
    b.finish("unreadable checkpoints");
}

#[test]
fn init_files_that_do_not_fit_the_network_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = f.battery();
    // An init file with the right names but the wrong shapes: (I, O) instead of PyTorch's (O, I), and a
    // network the file does not fit.
    let p = random_params(&SIZES, 1);
    let transposed = [
        Raw::f32("layers.0.weight", &[5, 7], &p.weights[0].iter().copied().collect::<Vec<_>>()),
        Raw::f32("layers.0.bias", &[7], &p.biases[0].to_vec()),
        Raw::f32("layers.1.weight", &[7, 3], &p.weights[1].iter().copied().collect::<Vec<_>>()),
        Raw::f32("layers.1.bias", &[3], &p.biases[1].to_vec()),
    ];
    let t = f.dir.path().join("transposed.safetensors");
    write_raw(&t, &transposed, None);
    b.case(
        "--init with (I, O) weights",
        &f.train(&["--data", &f.good_csv, "--layers", "5,7,3", "--init", &s(&t)]),
        &["transposed.safetensors", "layers.0.weight", "[5, 7]", "[7, 5]"],
    );
    let init = f.dir.path().join("init.safetensors");
    write_init(&init, &p);
    b.case(
        "--init for another network",
        &f.train(&["--data", &f.good_csv, "--layers", "5,6,3", "--init", &s(&init), "--out", &f.keep]),
        &["init.safetensors", "layers.0.weight", "[7, 5]", "[6, 5]"],
    );
    b.case(
        "--init with too few layers",
        &f.train(&["--data", &f.good_csv, "--layers", "5,7,7,3", "--init", &s(&init)]),
        &["init.safetensors", "layers.1.weight"],
    );
    // A bare init file is not a checkpoint.
    b.case(
        "--resume from an init file",
        &f.train(&["--data", &f.good_csv, "--resume", &s(&init)]),
        &["init.safetensors", "--init"],
    );
    b.untouched(&f.keep, KEEP);
    b.finish("init files that do not fit");
}

#[test]
fn a_resume_with_no_epochs_left_fails_with_one_clear_line_and_leaves_the_checkpoint() {
    // A checkpoint that has already trained as many epochs as asked for.
    let f = BadInputs::new();
    let mut b = f.battery();
    let resumable = f.dir.path().join("resumable.safetensors");
    ok(&["train", "--epochs", "2", "--backend", "cpu", "--quiet", "--out", &s(&resumable)]);
    let r = s(&resumable);
    let resumable_bytes = std::fs::read(&r).unwrap();
    b.case(
        "--resume with no more epochs to train",
        &strings(&["train", "--resume", &r, "--epochs", "2", "--out", &r, "--backend", "cpu"]),
        &["2 epochs", "--epochs"],
    );
    b.untouched(&r, &resumable_bytes);
    b.finish("resume with no epochs left");
}

/// Every `BACKPROP_*` variable follows one rule (`backprop::environment`): empty is unset, a switch takes 1 or
/// 0, names any case; anything else is one clear error that names the variable and the values it takes.
#[test]
fn bad_environment_values_fail_with_one_clear_line_and_write_nothing() {
    let f = BadInputs::new();
    let mut b = f.battery();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("BACKPROP_NO_VEC4", "true", &["BACKPROP_NO_VEC4 is 'true'; it may be 1 or 0 (or unset)"]),
        ("BACKPROP_NO_VEC4", "yes", &["BACKPROP_NO_VEC4 is 'yes'"]),
        ("BACKPROP_NO_SUBGROUPS", "true", &["BACKPROP_NO_SUBGROUPS is 'true'; it may be 1 or 0"]),
        ("BACKPROP_MATMUL_TILE", "medium", &["BACKPROP_MATMUL_TILE is 'medium'", "small, big, huge"]),
        ("BACKPROP_GPU_PATH", "auto", &["BACKPROP_GPU_PATH is 'auto'; it may be rule, fused, unfused or timed"]),
    ];
    for (var, value, needles) in cases {
        for backend in ["gpu", "auto"] {
            let args = f.train(&["--data", "xor", "--epochs", "1", "--backend", backend]);
            b.case_with_env(&format!("{var}={value} --backend {backend}"), &[(var, value)], &args, needles);
        }
    }
    b.finish("bad environment values");
}
