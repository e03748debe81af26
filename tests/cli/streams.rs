//! Outputs that are not plain files: a symbolic link is written through (the file it leads to replaced,
//! the link kept), a stream (a FIFO with a reader, `/dev/null`, standard output as `-`) is written to and
//! never replaced by a file, and other devices are refused before training.
#![cfg(unix)]

use std::io::Read;
use std::path::Path;

use super::common::cli::{backprop, load, ok, s, stderr, stdout};

const TRAIN: [&str; 5] = ["train", "--backend", "cpu", "--epochs", "2"];

fn train_with(extra: &[&str]) -> std::process::Output {
    backprop(&[&TRAIN[..], &["--quiet"], extra].concat())
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).unwrap().file_type().is_symlink()
}

fn mkfifo(p: &Path) {
    let made = std::process::Command::new("mkfifo").arg(p).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", p.display());
}

#[test]
fn an_output_behind_a_symbolic_link_replaces_the_file_it_leads_to_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let link = dir.path().join("model.safetensors");
    std::os::unix::fs::symlink("real/model.safetensors", &link).unwrap();
    for round in ["made where the dangling link leads", "replaced there"] {
        let o = train_with(&["--out", &s(&link)]);
        assert!(o.status.success(), "{round}: {}", stderr(&o));
        assert!(is_symlink(&link), "{round}: the link was replaced by a file");
        let saved = load(&dir.path().join("real/model.safetensors"));
        assert_eq!(saved.training.map(|t| t.epoch), Some(2), "{round}");
    }
    // A link to /dev/null stays a link, and /dev/null a device.
    let null = dir.path().join("null.csv");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    ok(&[&TRAIN[..], &["--quiet", "--metrics", &s(&null)]].concat());
    assert!(is_symlink(&null), "the link to /dev/null was replaced by a file");
}

#[test]
fn a_fifo_with_a_reader_receives_the_output_and_stays_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("metrics.csv");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(fifo).unwrap().read_to_string(&mut text).unwrap();
            text
        })
    };
    let o = train_with(&["--metrics", &s(&fifo)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Checked before waiting for the reader, which would wait for ever on a FIFO replaced by a file.
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    let text = reader.join().unwrap();
    assert!(text.starts_with("epoch,train_loss,") && text.lines().count() == 3, "the FIFO carried {text:?}");
}

#[test]
fn a_fifo_without_a_reader_is_an_error_not_a_wait() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("metrics.csv");
    mkfifo(&fifo);
    let o = train_with(&["--metrics", &s(&fifo)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a FIFO that no process opened for reading in 5 s"), "{}", stderr(&o));
}

#[test]
fn a_dash_is_standard_output_and_devices_other_than_null_and_terminals_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    ok(&[&TRAIN[..], &["--quiet", "--out", &s(&model)]].concat());
    let o = ok(&["predict", "--backend", "cpu", "--model", &s(&model), "--out", "-"]);
    assert!(stdout(&o).starts_with("predicted,output_0,"), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 1798, "a header and a row per digit");
    assert!(!dir.path().join("-").exists() && !Path::new("-").exists(), "a file named '-' was written");
    let zero = dir.path().join("zero.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let o = train_with(&["--out", &s(&zero)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("is a device other than /dev/null or a terminal") && !err.contains("trained"), "{err}");
}

#[test]
fn two_links_to_one_file_not_made_yet_are_one_output() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::os::unix::fs::symlink("missing.x", &a).unwrap();
    std::os::unix::fs::symlink("missing.x", &b).unwrap();
    for (out, metrics) in [(&a, &b), (&a, &dir.path().join("missing.x"))] {
        let o = train_with(&["--out", &s(out), "--metrics", &s(metrics)]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("is given as both --out and --metrics"), "{}", stderr(&o));
    }
    assert!(!dir.path().join("missing.x").exists(), "an output was written");
}

#[test]
fn metrics_on_standard_output_keep_their_order_and_a_checkpoint_is_never_a_stream() {
    let o = ok(&[&TRAIN[..], &["--quiet", "--metrics", "-"]].concat());
    let csv = stdout(&o);
    assert!(csv.starts_with("epoch,train_loss,") && csv.lines().count() == 3, "stdout: {csv:?}");
    assert!(stderr(&o).contains("trained 2 epochs"), "the summary goes beside the progress: {}", stderr(&o));
    for (extra, want) in [
        (&["--out", "-"][..], "--out /dev/stdout: a stream"),
        (&["--metrics", "-", "--json"][..], "and --json would both write to standard output"),
    ] {
        let o = train_with(extra);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want) && stdout(&o).is_empty(), "{extra:?}: {}", stderr(&o));
    }
    ok(&[&TRAIN[..], &["--quiet", "--out", "/dev/null"]].concat());
}
