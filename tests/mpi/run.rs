//! Running the binary under Open MPI's `mpirun`, and waiting for a job with a deadline that only stops a
//! hung one (nothing is asserted about time).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a job may run before it counts as hung.
pub const HANG: Duration = Duration::from_secs(120);

/// `mpirun --oversubscribe -np n backprop args`, root allowed, `env` set on every rank (`-x`), its output
/// piped.
pub fn mpirun<S: AsRef<str>>(n: usize, args: &[S], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &n.to_string()]);
    for (k, v) in env {
        c.args(["-x", &format!("{k}={v}")]);
    }
    c.arg(env!("CARGO_BIN_EXE_backprop")).args(args.iter().map(|a| a.as_ref()));
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c.env("XDG_RUNTIME_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")));
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Waits for `child`, killing it (and failing) if it outlives `HANG`.
pub fn finish(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            panic!("the job hung: still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

/// Runs a job to its end (see `finish`).
pub fn run<S: AsRef<str>>(n: usize, args: &[S], env: &[(&str, &str)]) -> Output {
    let child = mpirun(n, args, env).spawn().expect("mpirun runs (apt-get install openmpi-bin, or scripts/test)");
    finish(child)
}
