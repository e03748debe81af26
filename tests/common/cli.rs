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
