//! The `backprop` command line: a thin layer over the library.

mod commands;
mod progress;

use std::process::ExitCode;

use backprop::Result;
use backprop::distributed::job;
use clap::{Parser, Subcommand};
use commands::args::{BenchArgs, DeviceArgs, EvalArgs, PredictArgs, TrainArgs};

#[derive(Parser)]
#[command(
    name = "backprop",
    version,
    about = "Train multilayer perceptrons with explicit backpropagation in WGSL on any GPU, checked against a CPU reference",
    long_about = "Train multilayer perceptrons with explicit backpropagation in hand-written WGSL compute shaders on any GPU \
wgpu reaches (Vulkan, Metal, DX12, GL), checked against a CPU reference.\n\n\
With no command, `backprop` trains a classifier on the bundled digits data set (the same as `backprop train`).",
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP (the default when no command is given).
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Evaluate a saved model on a data set: loss, accuracy and confusion matrix.
    #[command(allow_negative_numbers = true)]
    Eval(EvalArgs),
    /// Write a saved model's predictions for a data set to a CSV file.
    #[command(allow_negative_numbers = true)]
    Predict(PredictArgs),
    /// Run the seed document's 2-2-1 sigmoid network for one SGD step on the CPU (f64) and the GPU (f32), and
    /// print every quantity beside the value the seed prints. `--backend auto` uses any adapter here,
    /// software ones included, since the cross-check is the point.
    WorkedExample {
        #[command(flatten)]
        device: DeviceArgs,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Time training steps of the standard configurations (seed, small, mnist, wide: sigmoid, MSE, SGD) on
    /// the CPU and GPU backends, and find the batch size at which the GPU beats the CPU.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// List every adapter wgpu finds, with the limits that matter for training.
    Devices {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The Vulkan loader and Mesa's window-system code print "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment" on headless machines while wgpu looks for adapters: harmless, but it reads like a failure of
/// this program. Where the variable is missing or names no directory, point it at a private directory
/// first, as a login session would.
#[cfg(unix)]
fn ensure_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return;
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return };
    let dir = std::env::temp_dir().join(format!("backprop-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

#[cfg(not(unix))]
fn ensure_runtime_dir() {}

/// Output piped into a program that stops reading (`backprop devices | head -3`) ends the process quietly,
/// as other command-line tools do, instead of a panic in `println!`.
#[cfg(target_os = "linux")]
fn quiet_broken_pipe() {
    // SAFETY: called first thing in main, before any other thread exists; restores the default action.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

#[cfg(not(target_os = "linux"))]
fn quiet_broken_pipe() {}

fn main() -> ExitCode {
    quiet_broken_pipe();
    ensure_runtime_dir();
    // Under mpirun every rank parses the same flags: rank 0 alone prints a mistake in them.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !job::speaks() => return ExitCode::from(e.exit_code() as u8),
        Err(e) => e.exit(),
    };
    let command = match &cli.command {
        None | Some(Command::Train(_)) => "train",
        Some(Command::Eval(_)) => "eval",
        Some(Command::Predict(_)) => "predict",
        Some(Command::WorkedExample { .. }) => "worked-example",
        Some(Command::Bench(_)) => "bench",
        Some(Command::Devices { .. }) => "devices",
    };
    // Under mpirun/srun: MPI started (or refused), ranks other than 0 silenced.
    if let Err(e) = job::start(command) {
        return ExitCode::from(job::finish(Err(e)) as u8);
    }
    let result: Result<()> = match cli.command {
        None => commands::train(&cli.train),
        Some(Command::Train(args)) => commands::train(&args),
        Some(Command::Eval(args)) => commands::eval(&args),
        Some(Command::Predict(args)) => commands::predict(&args),
        Some(Command::WorkedExample { device, json }) => commands::worked(&device, json),
        Some(Command::Bench(args)) => commands::bench(&args),
        Some(Command::Devices { json }) => commands::devices(json),
    };
    // Prints the error (on one rank) and ends MPI, or aborts the job where one rank failed alone.
    ExitCode::from(job::finish(result) as u8)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag of every command says what it does in `--help` (clap's own --help and --version aside).
    #[test]
    fn every_flag_has_a_description() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        let commands = std::iter::once(&cli).chain(cli.get_subcommands());
        for c in commands {
            for arg in c.get_arguments().filter(|a| !a.is_positional()) {
                let long = arg.get_long().unwrap_or_default();
                if arg.get_help().is_none() && long != "help" && long != "version" {
                    missing.push(format!("{} --{long}", c.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without a description: {missing:?}");
    }
}
