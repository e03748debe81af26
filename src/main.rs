//! The `backprop` command line: a thin layer over the library.

mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use backprop::device::BackendChoice;
use backprop::{Error, Result};
use clap::{Args, Parser, Subcommand};

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

/// Where to run, shared by every command that computes.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// auto (a hardware GPU if wgpu finds one, else the CPU), cpu, gpu (any adapter, software ones such as
    /// lavapipe included), or a GPU through one API: vulkan, metal, dx12, gl. WGPU_BACKEND also limits the APIs.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: BackendChoice,
    /// Use the adapter whose name contains this text (case-insensitive); default: WGPU_ADAPTER_NAME, else the
    /// best adapter (discrete, integrated, virtual, then CPU). `backprop devices` lists them.
    #[arg(long)]
    pub adapter: Option<String>,
}

fn parse_backend(s: &str) -> std::result::Result<BackendChoice, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Where the data comes from.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// digits (bundled), xor, spirals, sine, a CSV file (numbers, optional header, the last column an integer
    /// class label), or an MNIST IDX images file (with --labels).
    #[arg(long, default_value = "digits", value_name = "SOURCE")]
    pub data: String,
    /// MNIST IDX labels file that goes with an IDX images file given as --data.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// The last K CSV columns are regression targets (instead of one class-label column).
    #[arg(long, value_name = "K")]
    pub targets: Option<usize>,
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Input normalisation, fitted on the training rows and kept in the checkpoint: none, standard, minmax.
    #[arg(long, default_value = "standard")]
    pub normalize: String,
    /// Fraction of rows held out for testing (seeded split); 0 trains on every row. Default 0.2 (0 for xor).
    #[arg(long, value_name = "FRACTION")]
    pub test_split: Option<f64>,
    /// Seed for the weights, the split and the shuffles.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Keep the rows in file order instead of a seeded shuffle every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Every width, input and output included, e.g. 64,128,10; checked against the data.
    /// Default: one hidden layer of 64.
    #[arg(long, value_name = "WIDTHS")]
    pub layers: Option<String>,
    /// Activation of the hidden layers: relu, sigmoid, tanh, identity.
    #[arg(long, default_value = "relu")]
    pub activation: String,
    /// Output layer: softmax (with cross-entropy), sigmoid, identity. Default: softmax for classes, identity
    /// for regression targets.
    #[arg(long)]
    pub output: Option<String>,
    /// mse or cross-entropy (fused with softmax). Default: cross-entropy for classes, mse for targets.
    #[arg(long)]
    pub loss: Option<String>,
    /// Start from the weights in this safetensors file (`layers.{l}.weight` (O, I) and `layers.{l}.bias`, as
    /// PyTorch saves nn.Linear layers) instead of a seeded Xavier/He initialisation.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// sgd, momentum or adam (PyTorch's definitions).
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// Learning rate. Default: 0.001 for adam, 0.1 for sgd, 0.01 for momentum.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 weight decay added to the gradient, as PyTorch's weight_decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// Clip the gradient's global L2 norm to this before every update (PyTorch's clip_grad_norm_).
    #[arg(long, value_name = "NORM")]
    pub max_grad_norm: Option<f32>,
    /// Learning-rate schedule over epochs: constant, step (×--lr-gamma every --lr-step epochs), cosine (to
    /// --lr-min).
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    #[arg(long, default_value_t = 10)]
    pub lr_step: usize,
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    #[arg(long, default_value_t = 0.0)]
    pub lr_min: f64,
    /// Save the model (and optimizer state) as safetensors, after every epoch, atomically.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: Option<PathBuf>,
    /// Continue training from a checkpoint written by --out, with its optimizer state, up to --epochs.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Write epoch, train loss, test loss, test accuracy, seconds and lr to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub metrics: Option<PathBuf>,
    /// Draw the loss and accuracy curves to this PNG file.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Every N steps (default 1), run the same step on the f64 CPU reference from the same parameters and
    /// print the largest error per tensor; stop if one exceeds --verify-atol + --verify-rtol·|ref|.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    pub verify: Option<usize>,
    #[arg(long, default_value_t = 1e-4)]
    pub verify_atol: f64,
    #[arg(long, default_value_t = 1e-2)]
    pub verify_rtol: f64,
    /// Print a JSON summary on stdout at the end (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Comma-separated configurations (default all four; on a software adapter the GPU skips wide unless named).
    #[arg(long)]
    pub configs: Option<String>,
    /// Timed steps per configuration and backend (fewer when a step is slow: at most ~3 s each, at least 3).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// cpu, gpu or both.
    #[arg(long, default_value = "both")]
    pub backend: String,
    /// The GPU adapter, as for train.
    #[arg(long)]
    pub adapter: Option<String>,
    /// The device's fp32 peak in GFLOP/s, to print the fraction reached (GPU; for the CPU use --cpu-peak-gflops).
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// The CPU's fp32 peak in GFLOP/s (cores × clock × FLOP per cycle), to print the fraction the CPU backend reaches.
    #[arg(long)]
    pub cpu_peak_gflops: Option<f64>,
    /// Largest batch tried in the crossover search on the mnist network (powers of two from 1).
    #[arg(long, default_value_t = 1024)]
    pub crossover_max: usize,
    /// Skip the crossover search.
    #[arg(long)]
    pub no_crossover: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP (the default when no command is given).
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Evaluate a saved model on a data set: loss, accuracy and confusion matrix.
    #[command(allow_negative_numbers = true)]
    Eval {
        /// A checkpoint written by `train --out`.
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Write a saved model's predictions for a data set to a CSV file.
    #[command(allow_negative_numbers = true)]
    Predict {
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// As for train; a CSV may hold only the feature columns.
        #[command(flatten)]
        data: DataArgs,
        /// The CSV to write: one row per input, the predicted class and the outputs (or the regression outputs).
        #[arg(long, value_name = "FILE.csv")]
        out: PathBuf,
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        #[command(flatten)]
        device: DeviceArgs,
    },
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

fn main() -> ExitCode {
    ensure_runtime_dir();
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        None => commands::train(&cli.train),
        Some(Command::Train(args)) => commands::train(&args),
        Some(Command::Eval { model, data, batch_size, json, device }) => {
            commands::eval(&model, &data, batch_size, json, &device)
        }
        Some(Command::Predict { model, data, out, batch_size, device }) => {
            commands::predict(&model, &data, &out, batch_size, &device)
        }
        Some(Command::WorkedExample { device, json }) => commands::worked(&device, json),
        Some(Command::Bench(args)) => commands::bench(&args),
        Some(Command::Devices { json }) => commands::devices(json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
