//! How a job under `mpirun` fails: a failure on one rank, before or during training, ends every rank with
//! one error naming it; a rank killed with SIGKILL ends the job and leaves the last checkpoint whole; a
//! diverging loss or drifting ranks stop the job.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::cli::{s, stderr};
use crate::run::{HANG, finish, mpirun, run};

fn train(out: &Path, epochs: &str) -> Vec<String> {
    ["train", "--backend", "cpu", "--layers", "64,32,10", "--batch-size", "16", "--epochs", epochs, "--out", &s(out)]
        .map(String::from)
        .to_vec()
}

/// The lines starting `error:` in the job's stderr.
fn errors(o: &Output) -> Vec<String> {
    stderr(o).lines().filter(|l| l.starts_with("error:")).map(String::from).collect()
}

#[test]
fn a_failure_before_training_on_one_rank_is_reported_once_by_rank_0() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(3, &train(&dir.path().join("m.st"), "2"), &[("BACKPROP_TEST_FAULT", "start@2")]);
    assert!(!o.status.success());
    assert_eq!(errors(&o), ["error: rank 2 of 3: a fault injected by BACKPROP_TEST_FAULT"], "{}", stderr(&o));
}

/// A bad value of a variable the ranks read (the same on every rank) is one error, said by rank 0.
#[test]
fn a_bad_variable_is_reported_once_for_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, accepted) in
        [("BACKPROP_OVERLAP", "yes", "1 or 0"), ("BACKPROP_TEST_FAULT", "crash@1", "start@RANK, error@RANK")]
    {
        let o = run(2, &train(&dir.path().join("m.st"), "1"), &[(var, value)]);
        assert!(!o.status.success());
        let want = format!("error: every rank (2): {var} is '{value}'; it may be {accepted}");
        assert!(matches!(&errors(&o)[..], [e] if e.starts_with(&want)), "{want}: {}", stderr(&o));
    }
}

#[test]
fn a_failure_during_training_on_one_rank_ends_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(3, &train(&dir.path().join("m.st"), "50"), &[("BACKPROP_TEST_FAULT", "error@1")]);
    assert!(!o.status.success());
    let e = errors(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(e[0].starts_with("error: rank 1 of 3 (") && e[0].contains("BACKPROP_TEST_FAULT"), "{}", e[0]);
}

#[test]
fn the_same_bad_flag_on_every_rank_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = train(&dir.path().join("m.st"), "2");
    args.extend(["--data".into(), s(&dir.path().join("missing.csv"))]);
    let o = run(2, &args, &[]);
    assert!(!o.status.success());
    let e = errors(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(e[0].starts_with("error: every rank (2): ") && e[0].contains("missing.csv"), "{}", e[0]);
    let mut args = train(&dir.path().join("m.st"), "2");
    args.push("--verify".into());
    let o = run(3, &args, &[]);
    assert!(!o.status.success());
    assert!(matches!(&errors(&o)[..], [e] if e.contains("--verify") && e.contains("3 ranks")), "{}", stderr(&o));
}

#[test]
fn diverging_and_drifting_ranks_stop_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = train(&dir.path().join("d.st"), "3");
    args.extend(["--optimizer", "sgd", "--lr", "1e30"].map(String::from));
    let o = run(2, &args, &[]);
    assert!(!o.status.success());
    assert!(matches!(&errors(&o)[..], [e] if e.contains("diverged")), "{}", stderr(&o));
    let o = run(2, &train(&dir.path().join("m.st"), "3"), &[("BACKPROP_TEST_FAULT", "drift@1")]);
    assert!(!o.status.success());
    assert!(matches!(&errors(&o)[..], [e] if e.contains("drifted apart") && e.contains("rank(s) 1")), "{}", stderr(&o));
}

/// The pids of the processes whose parent is `parent` and whose command is `backprop`.
fn ranks_of(parent: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && head.ends_with("(backprop") {
            pids.push(entry.file_name().to_string_lossy().parse().unwrap());
        }
    }
    pids
}

#[test]
fn a_rank_killed_mid_training_ends_the_job_and_the_checkpoint_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.st");
    let args: Vec<String> = train(&out, "100000");
    let child = mpirun(3, &args, &[]).spawn().unwrap();
    let start = Instant::now();
    while !out.exists() {
        assert!(start.elapsed() < HANG, "no checkpoint written after {HANG:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks = ranks_of(child.id());
    assert_eq!(ranks.len(), 3, "found the ranks {ranks:?}");
    // SAFETY: sending a signal to a process this test started (a rank under its mpirun).
    unsafe { libc::kill(ranks[1], libc::SIGKILL) };
    let o = finish(child);
    assert!(!o.status.success(), "{}", stderr(&o));
    let ck = backprop::checkpoint::load(&out).expect("the last checkpoint is whole");
    assert!(ck.training.expect("training state").epoch >= 1);
}
