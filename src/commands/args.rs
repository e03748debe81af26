//! The flags of every command, as clap parses them: each typed by a value parser (see `parse`), so a
//! command starts from checked values.

use std::path::PathBuf;

use backprop::data::Normalization;
use backprop::device::BackendChoice;
use backprop::model::{Activation, Loss, Output};
use backprop::optim::{OptimizerKind, Schedule};
use clap::Args;

use super::parse::{self, BenchBackends, Configs, SaveEvery, Widths};

/// Where to run, shared by every command that trains or evaluates.
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto (a hardware GPU if wgpu finds one, else the CPU), cpu, gpu (any adapter, software ones such as
    /// lavapipe included), or a GPU through one API: vulkan, metal, dx12, gl. WGPU_BACKEND also limits the APIs.
    #[arg(long, default_value = "auto", value_parser = parse::backend)]
    pub backend: BackendChoice,
    /// Use the adapter whose name contains this text (case-insensitive); default: WGPU_ADAPTER_NAME, else the
    /// best adapter (discrete, integrated, virtual, then CPU). `backprop devices` lists them.
    #[arg(long)]
    pub adapter: Option<String>,
}

/// Where the data comes from.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// digits (bundled), xor, spirals, sine, a CSV file (numbers, optional header, the last column an integer
    /// class label, which `predict` does not need), or an MNIST IDX images file (with --labels).
    #[arg(long, default_value = "digits", value_name = "SOURCE")]
    pub data: String,
    /// MNIST IDX labels file that goes with an IDX images file given as --data.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// The last K CSV columns are regression targets (instead of one class-label column).
    #[arg(long, value_name = "K")]
    pub targets: Option<usize>,
}

/// `train` (and `backprop` with no command).
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Input normalisation, fitted on the training rows and kept in the checkpoint: none, standard
    /// (default), minmax.
    #[arg(long, value_parser = parse::normalization)]
    pub normalize: Option<Normalization>,
    /// Fraction of rows held out for testing (seeded split); 0 trains on every row. Default 0.2 (0 for xor).
    #[arg(long, value_name = "FRACTION", value_parser = parse::below_one)]
    pub test_split: Option<f64>,
    /// Seed for the weights, the split and the shuffles (default 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rows per training step; under mpirun or srun the global batch, shared among the ranks.
    #[arg(long, default_value_t = 32, value_parser = parse::count)]
    pub batch_size: usize,
    /// Keep the rows in file order instead of a seeded shuffle every epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// The epoch to train up to (a resumed run counts the checkpoint's).
    #[arg(long, default_value_t = 30, value_parser = parse::count)]
    pub epochs: usize,
    /// Every width, input and output included, e.g. 64,128,10; checked against the data (the output may be
    /// wider than the classes seen). Default: one hidden layer of 64.
    #[arg(long, value_name = "WIDTHS", value_parser = parse::widths)]
    pub layers: Option<Widths>,
    /// Activation of the hidden layers: relu (default), sigmoid, tanh, identity.
    #[arg(long, value_parser = parse::activation)]
    pub activation: Option<Activation>,
    /// Output layer: softmax (with cross-entropy), sigmoid, identity. Default: softmax for classes, identity
    /// for regression targets.
    #[arg(long, value_parser = parse::output)]
    pub output: Option<Output>,
    /// mse or cross-entropy (fused with softmax). Default: cross-entropy for classes, mse for targets.
    #[arg(long, value_parser = parse::loss)]
    pub loss: Option<Loss>,
    /// Start from the weights in this safetensors file (`layers.{l}.weight` (O, I) and `layers.{l}.bias`, as
    /// PyTorch saves nn.Linear layers) instead of a seeded Xavier/He initialisation.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// sgd, momentum or adam (default; PyTorch's definitions).
    #[arg(long, value_parser = parse::optimizer)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate. Default: the optimizer's, 0.001 for adam, 0.1 for sgd, 0.01 for momentum.
    #[arg(long, value_parser = parse::positive)]
    pub lr: Option<f64>,
    /// Momentum of --optimizer momentum (default 0.9).
    #[arg(long, value_parser = parse::below_one)]
    pub momentum: Option<f64>,
    /// L2 weight decay added to the gradient, as PyTorch's weight_decay (default 0).
    #[arg(long, value_parser = parse::non_negative)]
    pub weight_decay: Option<f64>,
    /// Adam's β1 (default 0.9).
    #[arg(long, value_parser = parse::below_one)]
    pub beta1: Option<f64>,
    /// Adam's β2 (default 0.999).
    #[arg(long, value_parser = parse::below_one)]
    pub beta2: Option<f64>,
    /// Adam's ε (default 1e-8).
    #[arg(long, value_parser = parse::positive)]
    pub eps: Option<f64>,
    /// Clip the gradient's global L2 norm to this before every update (PyTorch's clip_grad_norm_).
    #[arg(long, value_name = "NORM", value_parser = parse::positive_f32)]
    pub max_grad_norm: Option<f32>,
    /// Learning-rate schedule over epochs: constant (default), step (×--lr-gamma every --lr-step epochs),
    /// cosine (to --lr-min).
    #[arg(long, value_parser = parse::schedule)]
    pub schedule: Option<Schedule>,
    /// Epochs between the steps of --schedule step (default 10).
    #[arg(long, value_parser = parse::count)]
    pub lr_step: Option<usize>,
    /// Factor of each step of --schedule step (default 0.1).
    #[arg(long, value_parser = parse::positive)]
    pub lr_gamma: Option<f64>,
    /// Final learning rate of --schedule cosine (default 0).
    #[arg(long, value_parser = parse::non_negative)]
    pub lr_min: Option<f64>,
    /// Save the model (and optimizer state) as safetensors, atomically, as often as --save-every says and
    /// after the last epoch.
    #[arg(long, value_name = "FILE.safetensors", value_parser = parse::output_path)]
    pub out: Option<PathBuf>,
    /// Continue training from a checkpoint written by --out, up to --epochs. The checkpoint keeps its
    /// network (--layers, --activation, --output, --loss), normalisation, optimizer with its settings, and
    /// seed: leave those flags out or give the same, since one that differs is an error. What it does not
    /// record (--lr, the schedule, --batch-size, --test-split, --no-shuffle, --max-grad-norm, --data) comes
    /// from this command line. With the same --metrics and --plot, their history continues.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Write epoch, train loss, test loss, test accuracy, seconds and lr to this CSV file (`-`: standard
    /// output).
    #[arg(long, value_name = "FILE.csv", value_parser = parse::output_path)]
    pub metrics: Option<PathBuf>,
    /// Draw the loss and accuracy curves to this PNG file.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// When --out, --metrics and --plot are written: every N epochs, or auto (default): after the first
    /// epoch, then whenever the writing so far and the next write stay under a tenth of the run's time.
    /// Always after the last epoch.
    #[arg(long, value_name = "N|auto", default_value = "auto", value_parser = parse::save_every)]
    pub save_every: SaveEvery,
    /// Every N steps (default 1), run the same step on the f64 CPU reference from the same parameters and
    /// print the largest error per tensor; stop if one exceeds --verify-atol + --verify-rtol·|ref|.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1", value_parser = parse::verify_every)]
    pub verify: Option<usize>,
    /// Absolute tolerance of --verify (default 1e-4).
    #[arg(long, value_parser = parse::non_negative)]
    pub verify_atol: Option<f64>,
    /// Relative tolerance of --verify (default 1e-2).
    #[arg(long, value_parser = parse::non_negative)]
    pub verify_rtol: Option<f64>,
    /// Print a JSON summary on stdout at the end (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `eval`.
#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// A checkpoint written by `train --out`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// The seed of a synthetic data set (spirals, sine). Default: the seed the model was trained with.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Rows evaluated at a time (more is faster, within the device's memory).
    #[arg(long, default_value_t = 256, value_parser = parse::count)]
    pub batch_size: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `predict`.
#[derive(Args, Clone, Debug)]
pub struct PredictArgs {
    /// A checkpoint written by `train --out`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// As for train, except that a CSV may hold only the feature columns (help on --data says so).
    #[command(flatten)]
    pub data: DataArgs,
    /// The seed of a synthetic data set (spirals, sine). Default: the seed the model was trained with.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The CSV to write: one row per input, the predicted class and the outputs (or the regression outputs);
    /// `-` writes it to standard output.
    #[arg(long, value_name = "FILE.csv", value_parser = parse::output_path)]
    pub out: PathBuf,
    /// Rows predicted at a time (more is faster, within the device's memory).
    #[arg(long, default_value_t = 256, value_parser = parse::count)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Comma-separated configurations, each at most once (default all four; on a software adapter the GPU
    /// skips wide unless named).
    #[arg(long, value_parser = parse::configs)]
    pub configs: Option<Configs>,
    /// Timed steps per configuration and backend (fewer when a step is slow: at most ~3 s each, at least 3).
    #[arg(long, default_value_t = 20, value_parser = parse::count_up_to(100_000))]
    pub steps: usize,
    /// Untimed steps first (at most ~3 s of them).
    #[arg(long, default_value_t = 3, value_parser = parse::up_to(10_000))]
    pub warmup: usize,
    /// cpu, gpu or both.
    #[arg(long, default_value = "both", value_parser = parse::bench_backends)]
    pub backend: BenchBackends,
    /// The GPU adapter, as for train (not with --backend cpu).
    #[arg(long)]
    pub adapter: Option<String>,
    /// The GPU's fp32 peak in GFLOP/s, to print the fraction the GPU backend reaches (not with --backend cpu;
    /// for the CPU use --cpu-peak-gflops).
    #[arg(long, value_parser = parse::positive)]
    pub peak_gflops: Option<f64>,
    /// The CPU's fp32 peak in GFLOP/s (cores × clock × FLOP per cycle), to print the fraction the CPU backend
    /// reaches (not with --backend gpu).
    #[arg(long, value_parser = parse::positive)]
    pub cpu_peak_gflops: Option<f64>,
    /// Largest batch tried in the crossover search on the mnist network (powers of two from 1; default 1024),
    /// which runs with --backend both only.
    #[arg(long, value_parser = parse::count_up_to(16_384))]
    pub crossover_max: Option<usize>,
    /// Skip the crossover search.
    #[arg(long)]
    pub no_crossover: bool,
    /// Print one JSON object instead of the table (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}
