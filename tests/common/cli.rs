//! Running the `backprop` binary from the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
