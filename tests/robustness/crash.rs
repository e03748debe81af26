//! Crash safety: `train --out` killed with SIGKILL at random moments never leaves a checkpoint that does not
//! load, nor any stray file beside it but its own temporary files (which the next write removes); resuming
//! a killed run gives bit for bit what an uninterrupted run gives.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use backprop::checkpoint;

use super::common::assert_same_checkpoint;
use super::common::cli::{Gen, cmd, load, ok, s, stderr, stdout, strings};

/// The pid in a temporary file name `.{file}.{pid}.{random}.tmp{ext}` (as `fsutil` names them).
fn temp_pid(name: &str, file: &str, ext: &str) -> Option<u32> {
    let rest = name.strip_prefix(&format!(".{file}."))?.strip_suffix(&format!(".tmp{ext}"))?;
    let (pid, random) = rest.split_once('.')?;
    (random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric())).then_some(())?;
    pid.parse().ok()
}

/// Checks the directory after a killed or finished run: `ck.safetensors` loads (if present) and is at an
/// epoch in 1..=40; every other file is a temporary file of a killed run. Returns the temporary files' pids.
fn check_after_kill(dir: &Path, ck: &Path, killed: &BTreeSet<u32>, when: &str) -> BTreeSet<u32> {
    let mut temps = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == "ck.safetensors" {
            continue;
        }
        match temp_pid(&name, "ck.safetensors", ".safetensors") {
            Some(pid) => {
                assert!(
                    killed.contains(&pid),
                    "{when}: temporary file {name} belongs to pid {pid}, which was not killed (killed: {killed:?})"
                );
                temps.insert(pid);
            }
            None => panic!("{when}: unexpected file {name} beside the checkpoint"),
        }
    }
    if ck.exists() {
        let c = checkpoint::load(ck).unwrap_or_else(|e| panic!("{when}: the checkpoint does not load: {e}"));
        let t = c.training.unwrap_or_else(|| panic!("{when}: the checkpoint has no training state"));
        assert!((1..=40).contains(&t.epoch), "{when}: the checkpoint is at epoch {}", t.epoch);
        assert_eq!(c.model.spec.sizes(), [64, 64, 10], "{when}");
    }
    temps
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_checkpoint_that_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let args = strings(&["train", "--backend", "cpu", "--epochs", "40", "--out", &s(&ck), "--quiet"]);

    // Uninterrupted runs: a good checkpoint to start from, and how long a run takes on this machine (the
    // fastest of three; the first may be cold), so the kills spread over the whole run: start-up, training,
    // the writes, exit.
    let mut full = u64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        ok(&args);
        full = full.min(t0.elapsed().as_micros() as u64);
    }
    let lo = 5_000u64;
    let mut hi = (full * 6 / 5).clamp(20_000, 300_000);
    assert_eq!(load(&ck).training.unwrap().epoch, 40);

    let mut g = Gen::new(0x5EED_C0DE);
    let mut killed = BTreeSet::new();
    let (mut finished, mut attempts) = (0usize, 0usize);
    let mut temps = BTreeSet::new();
    let started = Instant::now();
    while killed.len() < 48 && attempts < 400 && started.elapsed() < Duration::from_secs(20) {
        attempts += 1;
        let delay = Duration::from_micros(g.range(lo, hi));
        let mut child =
            cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the binary starts");
        let pid = child.id();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL; an error only means the run already ended
        let o = child.wait_with_output().unwrap();
        match o.status.signal() {
            Some(9) => {
                killed.insert(pid);
            }
            None if o.status.success() => {
                // Finished before the kill: aim a little earlier from now on.
                finished += 1;
                hi = (hi * 19 / 20).max(lo + 10_000);
            }
            _ => panic!("run {attempts} (pid {pid}) ended with {:?}:\n{}", o.status, stderr(&o)),
        }
        let when = format!("after run {attempts} (pid {pid}, killed after {delay:?})");
        temps = check_after_kill(dir.path(), &ck, &killed, &when);
    }
    assert!(
        killed.len() >= 40,
        "only {} of {attempts} runs were killed before they finished ({finished} finished) in {:?}",
        killed.len(),
        started.elapsed()
    );

    // A final uninterrupted run still works from whatever the kills left, and leaves no file of its own.
    let child = cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let last_pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "the run after the kills failed: {}", stderr(&o));
    let after = check_after_kill(dir.path(), &ck, &killed, "after the final run");
    assert!(!after.contains(&last_pid), "a finished run left its temporary file behind");
    assert_eq!(load(&ck).training.unwrap().epoch, 40);

    // Each killed run can leave at most one temporary file (its pid is in the name); the next write beside
    // it removes those whose process is gone, so the final run leaves none.
    assert!(temps.len() <= killed.len());
    assert!(after.is_empty(), "the final run did not remove the temporary files of killed runs: {after:?}");
    eprintln!(
        "sigkill: {} runs killed ({finished} finished before the kill) with delays in [{}, {}) ms over {:?}; \
         {} temporary file(s) left by runs killed mid-write, all removed by the final run",
        killed.len(),
        lo / 1000,
        hi / 1000,
        started.elapsed(),
        temps.len()
    );
}

#[test]
fn resuming_after_a_sigkill_equals_an_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["train", "--backend", "cpu", "--epochs", "12", "--seed", "7", "--quiet"];
    let a = dir.path().join("a.safetensors");
    ok(&[&common[..], &["--out", &s(&a)]].concat());
    let want = load(&a);
    let want_bytes = std::fs::read(&a).unwrap();
    assert_eq!(want.training.as_ref().unwrap().epoch, 12);

    let mut g = Gen::new(12);
    let mut kill_epochs = Vec::new();
    for trial in 0..3u64 {
        let b = dir.path().join(format!("b{trial}.safetensors"));
        let b_path = s(&b);
        let args = [&common[..], &["--out", &b_path]].concat();
        let mut tries = 0;
        let epoch = loop {
            tries += 1;
            assert!(tries <= 30, "trial {trial}: no run was killed before its last epoch in 30 tries");
            let _ = std::fs::remove_file(&b);
            // Kill as soon as the first checkpoint exists, or a little later in later trials.
            let extra = Duration::from_micros(g.range(0, 1 + 4_000 * trial));
            let mut child = cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            loop {
                if b.exists() {
                    std::thread::sleep(extra);
                    break;
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            let _ = child.kill();
            child.wait().unwrap();
            assert!(b.exists(), "trial {trial}: the run ended without writing {}", b.display());
            let e = load(&b).training.expect("training state").epoch;
            if e < 12 {
                break e;
            }
        };
        assert!(epoch >= 1);
        kill_epochs.push(epoch);
        let o = ok(&[&common[..], &["--resume", &s(&b), "--out", &s(&b)]].concat());
        assert!(stdout(&o).contains("trained 12 epochs"), "{}", stdout(&o));
        let got = load(&b);
        assert_same_checkpoint(&got, &want, &format!("killed after epoch {epoch}, then resumed"));
        assert!(std::fs::read(&b).unwrap() == want_bytes, "killed after epoch {epoch}: the files differ");
    }
    eprintln!("resume: runs killed after epochs {kill_epochs:?} of 12");
}
