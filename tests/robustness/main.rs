//! Robustness of the command line and the library under abuse:
//!
//! 1. crash safety (`crash`): `train --out` killed with SIGKILL at random moments never leaves a checkpoint
//!    that does not load, nor any stray file beside it but its own temporary files; resuming a killed run
//!    gives bit for bit what an uninterrupted run gives;
//! 2. determinism (`determinism`): the same command gives the same bytes, on the CPU (whatever the thread
//!    count) and on the GPU (whatever the matmul tiling), and `GpuMlp::run_steps` gives the same bits every
//!    time;
//! 3. bad inputs to every subcommand (`bad_inputs`, beyond those in the `cli` suite): one clear `error:`
//!    line, no panic, no file created or changed;
//! 4. findings (`findings`, `nonsense`): bad inputs once accepted or reported misleadingly, and outputs
//!    that must not be silent nonsense.
//!
//! One binary: the fixture here, a module per topic.

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod crash;
mod determinism;
mod findings;
mod nonsense;

use std::sync::Once;

use backprop::checkpoint;

use common::battery::{Battery, KEEP, train_args};
use common::cli::{digits_model, load, ok, s, strings};

/// A temp dir with a trained digits model, good and bad data files, bad checkpoints, a directory, a plain
/// file, and existing outputs that failed runs must leave alone.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| s(&dir.path().join(n));
        // `train --epochs 1 --backend cpu`, trained once for the whole binary.
        std::fs::copy(digits_model(1), dir.path().join("model.safetensors")).unwrap();
        // A checkpoint with the model but no optimizer state (as a library user may save one).
        let mut bare = load(&dir.path().join("model.safetensors"));
        bare.training = None;
        checkpoint::save(&dir.path().join("no-state.safetensors"), &bare).unwrap();
        let w = |n: &str, c: &[u8]| std::fs::write(dir.path().join(n), c).unwrap();
        w("good.csv", b"a,b,c,d,e,label\n0.1,0.2,0.3,0.4,0.5,0\n1,2,3,4,5,1\n-1,0,1,2,3,2\n5,4,3,2,1,0\n");
        w("empty.csv", b"");
        w("header-only.csv", b"a,b,label\n");
        w("zero.safetensors", b"");
        w("seven.safetensors", b"\x10\x00\x00\x00\x00\x00\x00");
        w("afile", b"a plain file, not a directory");
        let mut images = [0x803u32, 6, 2, 2].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
        images.extend((0..24u8).map(|i| i * 10));
        w("images.idx", &images);
        let mut labels = [0x801u32, 6].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
        labels.extend([0, 1, 2, 0, 1, 2]);
        w("labels.idx", &labels);
        for k in ["keep.safetensors", "keep.csv", "keep-metrics.csv", "keep.png"] {
            w(k, KEEP);
        }
        std::fs::create_dir(dir.path().join("a-dir")).unwrap();
        // Sanity: the IDX pair and the CSV are good inputs, so their failures below come from the bad part.
        // Every fixture holds the same files, so the first one made checks them for all.
        static GOOD_INPUTS: Once = Once::new();
        GOOD_INPUTS.call_once(|| {
            let (images, labels) = (p("images.idx"), p("labels.idx"));
            ok(&["train", "--data", &images, "--labels", &labels, "--epochs", "1", "--backend", "cpu"]);
            ok(&["train", "--data", &p("good.csv"), "--epochs", "1", "--backend", "cpu", "--quiet"]);
        });
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        s(&self.dir.path().join(name))
    }

    /// A battery over the temp dir; nothing may appear in `/nonexistent-dir` either.
    fn battery(&self) -> Battery {
        Battery::new(self.dir.path()).absent(["/nonexistent-dir"])
    }

    /// `train` with `extra`, writing (if it ever got that far) a checkpoint, metrics and a plot.
    fn train(&self, extra: &[&str]) -> Vec<String> {
        let p = |n: &str| self.dir.path().join(n);
        train_args(extra, &p("new.safetensors"), &p("new.csv"), &p("new.png"))
    }

    /// `eval --model <model>` (unless given) with `extra`, on the CPU.
    fn eval(&self, extra: &[&str]) -> Vec<String> {
        let mut v = strings(&["eval"]);
        if !extra.contains(&"--model") {
            v.extend(["--model".to_string(), self.path("model.safetensors")]);
        }
        v.extend(strings(extra));
        if !extra.iter().any(|a| a.starts_with("--backend")) {
            v.extend(strings(&["--backend", "cpu"]));
        }
        v
    }

    /// `predict --model <model> --out new-preds.csv` (unless given) with `extra`, on the CPU.
    fn predict(&self, extra: &[&str]) -> Vec<String> {
        let mut v = strings(&["predict"]);
        if !extra.contains(&"--model") {
            v.extend(["--model".to_string(), self.path("model.safetensors")]);
        }
        if !extra.iter().any(|a| a.starts_with("--out")) {
            v.extend(["--out".to_string(), self.path("new-preds.csv")]);
        }
        v.extend(strings(extra));
        v.extend(strings(&["--backend", "cpu"]));
        v
    }

    fn untouched(&self) {
        for k in ["keep.safetensors", "keep.csv", "keep-metrics.csv", "keep.png"] {
            assert_eq!(std::fs::read(self.dir.path().join(k)).unwrap(), KEEP, "{k} was changed");
        }
        for k in ["new.safetensors", "new.csv", "new.png", "new-preds.csv"] {
            assert!(!self.dir.path().join(k).exists(), "{k} was created");
        }
    }
}
