//! --resume: 2 + 2 resumed epochs are 4 straight ones bit for bit, the checkpoint's network,
//! normalisation, optimizer and seed are kept, a flag that differs is refused, and the metrics and plot
//! continue their history.

use backprop::report::{read_metrics_csv, read_plot_history};

use super::BadInputs;
use super::common::assert_same_checkpoint;
use super::common::cli::{load, ok, s, stdout, strings};

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
    // Network, normalisation, optimizer steps, parameters and optimizer.m and .v, bit for bit.
    assert_same_checkpoint(&ca, &cb, "2 + 2 resumed epochs vs 4 straight");
}

#[test]
fn resume_flags_that_differ_from_the_checkpoint_are_refused_and_equal_ones_accepted() {
    let f = BadInputs::new(); // its model: digits, 64-64-10 relu/softmax, adam, standard, seed 42, 1 epoch
    let mut b = f.battery();
    let resume = |extra: &[&str]| f.train(&[&["--resume", f.model.as_str(), "--epochs", "3"][..], extra].concat());
    for (name, extra, needles) in [
        ("--optimizer sgd", &["--optimizer", "sgd"][..], &["--optimizer sgd", "adam"][..]),
        ("--activation tanh", &["--activation", "tanh"], &["--activation tanh", "relu"]),
        ("--output sigmoid", &["--output", "sigmoid", "--loss", "mse"], &["--output sigmoid", "softmax"]),
        ("--loss mse", &["--loss", "mse", "--output", "softmax"], &["--loss"]),
        ("--normalize minmax", &["--normalize", "minmax"], &["--normalize minmax", "standard"]),
        ("--seed 3", &["--seed", "3"], &["--seed 3", "42"]),
        ("--beta1 0.8", &["--beta1", "0.8"], &["--beta1 0.8", "0.9"]),
        ("--eps 1e-6", &["--eps", "1e-6"], &["--eps"]),
        ("--weight-decay 0.1", &["--weight-decay", "0.1"], &["--weight-decay 0.1", "0"]),
        ("--momentum with an adam checkpoint", &["--momentum", "0.5"], &["--momentum", "adam"]),
        ("--init beside --resume", &["--init", &f.model], &["--init", "--resume"]),
    ] {
        b.case(&format!("--resume with {name}"), &resume(extra), needles);
    }
    b.finish("resume flags");
    // The same values as the checkpoint's are no conflict.
    let same =
        ["--optimizer", "adam", "--activation", "relu", "--normalize", "standard", "--seed", "42", "--beta1", "0.9"];
    let out = f.path("same.safetensors");
    ok(&[
        &["train", "--resume", &f.model, "--epochs", "2", "--backend", "cpu", "--quiet", "--out", &out][..],
        &same[..],
    ]
    .concat());
    assert_eq!(load(std::path::Path::new(&out)).training.unwrap().epoch, 2);
}

#[test]
fn resuming_a_momentum_run_without_its_flags_keeps_its_learning_rate() {
    // The lr default comes from the checkpoint's optimizer (momentum: 0.01), not from Adam's 0.001.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    let common = ["train", "--data", "spirals", "--backend", "cpu", "--quiet"];
    ok(&[&common[..], &["--optimizer", "momentum", "--momentum", "0.8", "--epochs", "2", "--out", &s(&a)]].concat());
    let o = ok(&[&common[..], &["--resume", &s(&a), "--epochs", "4", "--out", &s(&a)]].concat());
    assert!(stdout(&o).contains("trained 4 epochs (2 in this run)"), "{}", stdout(&o));
    ok(&[&common[..], &["--optimizer", "momentum", "--momentum", "0.8", "--epochs", "4", "--out", &s(&b)]].concat());
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "2 + 2 resumed epochs differ from 4 straight");
}

#[test]
fn resuming_with_the_same_metrics_and_plot_continues_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| s(&dir.path().join(n));
    let train = |epochs: &str, resume: bool, stem: &str, metrics: bool| {
        let ck = p(&format!("{stem}.safetensors"));
        let mut args = strings(&["train", "--data", "spirals", "--backend", "cpu", "--quiet", "--epochs", epochs]);
        args.extend(strings(&["--out", &ck, "--plot", &p(&format!("{stem}.png"))]));
        if metrics {
            args.extend(strings(&["--metrics", &p(&format!("{stem}.csv"))]));
        }
        if resume {
            args.extend(strings(&["--resume", &ck]));
        }
        ok(&args);
    };
    train("2", false, "r", true);
    let first = read_metrics_csv(dir.path().join("r.csv").as_path()).unwrap();
    train("4", true, "r", true);
    // The plot alone carries the history too.
    train("2", false, "plot-only", false);
    train("4", true, "plot-only", false);
    train("4", false, "straight", true);

    let resumed = read_metrics_csv(dir.path().join("r.csv").as_path()).unwrap();
    let straight = read_metrics_csv(dir.path().join("straight.csv").as_path()).unwrap();
    assert_eq!(resumed[..2], first[..], "the first run's rows are kept as they were");
    let key = |r: &backprop::report::EpochMetrics| (r.epoch, r.train_loss, r.test_loss, r.test_accuracy, r.lr);
    let want: Vec<_> = straight.iter().map(key).collect();
    assert_eq!(resumed.iter().map(key).collect::<Vec<_>>(), want);
    assert!(resumed.windows(2).all(|w| w[1].seconds >= w[0].seconds), "seconds continue: {resumed:?}");
    for plot in ["r.png", "plot-only.png"] {
        let rows = read_plot_history(dir.path().join(plot).as_path()).unwrap().expect("rows in the plot");
        assert_eq!(rows.iter().map(key).collect::<Vec<_>>(), want, "{plot}");
    }
}
