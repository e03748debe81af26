//! Running the `backprop` binary from the integration tests, and reading what it wrote.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use backprop::checkpoint::{self, Checkpoint};

/// The binary, with a private XDG_RUNTIME_DIR so the Vulkan loader has nothing to complain about.
pub fn cmd() -> Command {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut c = Command::new(env!("CARGO_BIN_EXE_backprop"));
    c.env("XDG_RUNTIME_DIR", dir);
    c
}

/// Runs the binary with `args` and collects its output.
pub fn backprop<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    cmd().args(args).output().expect("the binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `c` with `args` and asserts that it succeeded without a panic.
pub fn ok_with<S: AsRef<std::ffi::OsStr>>(mut c: Command, args: &[S]) -> Output {
    let o = c.args(args).output().expect("the binary runs");
    let shown: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert!(
        o.status.success(),
        "backprop {} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        shown.join(" "),
        o.status,
        stdout(&o),
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    o
}

/// Runs the binary with `args` and asserts that it succeeded without a panic.
pub fn ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    ok_with(cmd(), args)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}

/// Arguments as owned strings.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The checkpoint at `path` (one a run wrote), or a panic that names the file.
pub fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// A model trained on the bundled digits for `epochs` epochs on the CPU (`train --epochs N --backend cpu
/// --quiet --out`), trained once per test binary and shared: tests read it, and copy it where a run could
/// change it. The run is deterministic, so a copy holds the bytes a fresh run would write.
pub fn digits_model(epochs: u32) -> PathBuf {
    static MODELS: Mutex<BTreeMap<u32, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut models = MODELS.lock().unwrap_or_else(|e| e.into_inner());
    let path = models.entry(epochs).or_insert_with(|| {
        // Processes that run at once may train the same file here: each write is atomic and the same bytes.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("models");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("digits-{epochs}-epochs.safetensors"));
        let o = ok(&["train", "--epochs", &epochs.to_string(), "--backend", "cpu", "--quiet", "--out", &s(&path)]);
        assert!(stdout(&o).contains(&format!("model saved to {}", path.display())), "{}", stdout(&o));
        path
    });
    path.clone()
}

/// A small seeded generator (xorshift64*) for test fixtures and delays.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
    /// Uniform in [-scale, scale].
    pub fn uniform(&mut self, scale: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) * scale
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}
