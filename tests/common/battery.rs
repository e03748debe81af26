//! Bad-input batteries: run the binary with inputs it must refuse, and check that each run fails with one
//! clear `error:` line, without a panic, and leaves every file as it was. One run reports every case that
//! misbehaves, not only the first.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::cli::{cmd, s, stderr, strings};

/// What an existing output file holds before the failed runs (which must leave it so).
pub const KEEP: &[u8] = b"an earlier result that a failed run must not touch";

/// Every entry of a directory (recursively), with the contents of each file: a before/after picture.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), None);
                todo.push(p);
            } else {
                out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The lines of stderr that are not notes and, for clap's usage errors (exit status 2), not its trailer.
pub fn error_lines(o: &Output) -> Vec<String> {
    let clap = o.status.code() == Some(2);
    stderr(o)
        .lines()
        .filter(|l| !l.starts_with("note:"))
        .filter(|l| {
            !(clap
                && (l.trim().is_empty()
                    || l.starts_with("Usage: ")
                    || l.starts_with("       backprop ")
                    || l.starts_with("For more information")
                    || l.starts_with("  tip: ")))
        })
        .map(str::to_string)
        .collect()
}

/// What is wrong with a failed run's output: it must fail (not by a panic) with exactly one `error: ` line.
pub fn failure_problems(o: &Output) -> Vec<String> {
    let mut problems = Vec::new();
    if o.status.success() {
        problems.push("exited 0".to_string());
    }
    if o.status.code() == Some(101) || stderr(o).contains("panicked") {
        problems.push("panicked".into());
    }
    if o.status.code().is_none() {
        problems.push(format!("killed by a signal: {:?}", o.status));
    }
    let lines = error_lines(o);
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        problems.push(format!("stderr should be exactly one `error: ` line, got {} line(s)", lines.len()));
    }
    problems
}

/// `train` with `extra`, writing (if it ever got that far) a checkpoint to `out`, metrics and a plot, on the
/// CPU for 2 epochs: each of these defaults is added unless `extra` gives the flag itself.
pub fn train_args(extra: &[&str], out: &Path, metrics: &Path, plot: &Path) -> Vec<String> {
    let mut v = strings(&["train"]);
    v.extend(strings(extra));
    let defaults = [
        ("--backend", "cpu".to_string()),
        ("--epochs", "2".to_string()),
        ("--out", s(out)),
        ("--metrics", s(metrics)),
        ("--plot", s(plot)),
    ];
    for (flag, value) in defaults {
        if !extra.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}="))) {
            v.push(flag.into());
            v.push(value);
        }
    }
    v
}

/// Runs bad commands and collects every way they misbehave, so one run reports all of them.
pub struct Battery {
    dir: PathBuf,
    /// Paths that no case may create: would-be outputs, and paths outside `dir`.
    absent: Vec<PathBuf>,
    cases: BTreeSet<String>,
    failures: Vec<String>,
}

impl Battery {
    /// A battery whose cases must leave `dir` exactly as they found it.
    pub fn new(dir: &Path) -> Self {
        Battery { dir: dir.to_path_buf(), absent: Vec::new(), cases: BTreeSet::new(), failures: Vec::new() }
    }

    /// Paths that must still be absent after every case.
    pub fn absent<P: AsRef<Path>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.absent.extend(paths.into_iter().map(|p| p.as_ref().to_path_buf()));
        self
    }

    /// Runs `args`; expects a failure with one `error:` line that contains every needle (case-insensitive),
    /// no panic, the absent paths still absent, and the directory exactly as before (nothing created,
    /// changed, removed or left behind).
    pub fn case(&mut self, name: &str, args: &[String], needles: &[&str]) {
        self.case_with_env(name, &[], args, needles);
    }

    /// [`Battery::case`] with the environment variables `env` set.
    pub fn case_with_env(&mut self, name: &str, env: &[(&str, &str)], args: &[String], needles: &[&str]) {
        assert!(self.cases.insert(name.to_string()), "two cases named {name}");
        let before = snapshot(&self.dir);
        let o = cmd().envs(env.iter().copied()).args(args).output().expect("the binary runs");
        let after = snapshot(&self.dir);
        let mut problems = failure_problems(&o);
        if let Some(line) = error_lines(&o).iter().find(|l| l.starts_with("error: ")) {
            let lower = line.to_lowercase();
            for n in needles {
                if !lower.contains(&n.to_lowercase()) {
                    problems.push(format!("the error does not mention {n:?}"));
                }
            }
        }
        if before != after {
            let changed: BTreeSet<String> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| k.display().to_string())
                .collect();
            problems.push(format!("files created, changed or removed: {changed:?}"));
        }
        for p in &self.absent {
            if p.exists() {
                problems.push(format!("{} was created", p.display()));
            }
        }
        if !problems.is_empty() {
            self.fail(format!(
                "[{name}] backprop {}\n    exit {:?}; {}\n    stderr: {:?}",
                args.join(" "),
                o.status.code(),
                problems.join("; "),
                stderr(&o)
            ));
        }
    }

    /// Also checks, by name, that an existing file still holds `bytes`.
    pub fn untouched(&mut self, path: &str, bytes: &[u8]) {
        if std::fs::read(path).ok().as_deref() != Some(bytes) {
            self.fail(format!("the existing file {path} was changed or removed"));
        }
    }

    /// Records a misbehaviour found outside [`Battery::case`].
    pub fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    /// Every misbehaviour found so far, one entry a case.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Fails the test with every misbehaving case, named `what`.
    pub fn finish(self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} bad-input case(s) misbehave:\n{}",
            self.failures.len(),
            self.cases.len(),
            self.failures.join("\n")
        );
        eprintln!("{what}: {} bad-input cases, all fail cleanly", self.cases.len());
    }
}
