//! Flag values parsed by clap into typed values, so that checking a flag is parsing it: a bad value stops
//! the command before any file is read, with one line that names the flag (clap adds it) and the rule.

use std::str::FromStr;

use backprop::bench::{self, Config};
use backprop::data::Normalization;
use backprop::device::BackendChoice;
use backprop::model::{Activation, Loss, Output};
use backprop::optim::{OptimizerKind, Schedule};

type Parsed<T> = Result<T, String>;

/// Every width of a network, input first (`--layers 64,128,10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widths(pub Vec<usize>);

/// When training writes its outputs (`--save-every`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveEvery {
    /// As often as keeps the writing under a tenth of the time (and after the first epoch).
    Auto,
    /// After every N-th epoch.
    Epochs(usize),
}

/// Where `bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchBackends {
    Cpu,
    Gpu,
    Both,
}

impl BenchBackends {
    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Both => "both",
        }
    }
    pub fn cpu(self) -> bool {
        self != Self::Gpu
    }
    pub fn gpu(self) -> bool {
        self != Self::Cpu
    }
}

/// The standard configurations `bench` times (`--configs seed,small`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configs(pub Vec<Config>);

fn library<T: FromStr<Err = backprop::Error>>(s: &str) -> Parsed<T> {
    s.parse().map_err(|e: backprop::Error| e.to_string())
}

/// An output file: `-` is standard output (`/dev/stdout`, written straight to, like any stream).
pub fn output_path(s: &str) -> Parsed<std::path::PathBuf> {
    match s {
        "" => Err("an empty path names no file".into()),
        "-" => Ok("/dev/stdout".into()),
        _ => Ok(s.into()),
    }
}

pub fn activation(s: &str) -> Parsed<Activation> {
    library(s)
}
pub fn output(s: &str) -> Parsed<Output> {
    library(s)
}
pub fn loss(s: &str) -> Parsed<Loss> {
    library(s)
}
pub fn normalization(s: &str) -> Parsed<Normalization> {
    library(s)
}
pub fn schedule(s: &str) -> Parsed<Schedule> {
    library(s)
}
pub fn backend(s: &str) -> Parsed<BackendChoice> {
    library(s)
}
/// `sgd`, `momentum` or `adam`, with PyTorch's default hyperparameters (the flags change them).
pub fn optimizer(s: &str) -> Parsed<OptimizerKind> {
    OptimizerKind::default_for(s).map_err(|e| e.to_string())
}

fn number<T: FromStr>(s: &str, what: &str) -> Parsed<T> {
    s.trim().parse().map_err(|_| format!("'{s}' is not {what}"))
}

/// A count of at least 1 (epochs, batch sizes, steps).
pub fn count(s: &str) -> Parsed<usize> {
    match number(s, "a whole number")? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// `--verify N`: every N-th step.
pub fn verify_every(s: &str) -> Parsed<usize> {
    count(s).map_err(|_| format!("'{s}': --verify N needs a whole number N >= 1"))
}

/// A finite number > 0.
pub fn positive(s: &str) -> Parsed<f64> {
    let v: f64 = number(s, "a number")?;
    if v > 0.0 && v.is_finite() { Ok(v) } else { Err(format!("must be a finite number > 0, got {v}")) }
}

/// A finite number > 0 that fits an f32 (`--max-grad-norm`).
pub fn positive_f32(s: &str) -> Parsed<f32> {
    let v = positive(s)? as f32;
    match v > 0.0 && v.is_finite() {
        true => Ok(v),
        false => Err(format!("must be a finite number > 0 within f32's range (at most {:e}), got {s}", f32::MAX)),
    }
}

/// A finite number >= 0.
pub fn non_negative(s: &str) -> Parsed<f64> {
    let v: f64 = number(s, "a number")?;
    if v >= 0.0 && v.is_finite() { Ok(v) } else { Err(format!("must be a finite number >= 0, got {v}")) }
}

/// A number in [0, 1) (a fraction, a momentum, Adam's betas).
pub fn below_one(s: &str) -> Parsed<f64> {
    let v: f64 = number(s, "a number")?;
    if (0.0..1.0).contains(&v) { Ok(v) } else { Err(format!("must be in [0, 1), got {v}")) }
}

/// `--layers`: at least two widths, each at least 1.
pub fn widths(s: &str) -> Parsed<Widths> {
    let widths = s
        .split(',')
        .map(|w| number::<usize>(w, "a width").map_err(|e| format!("{e} (expected e.g. 64,128,10)")))
        .collect::<Parsed<Vec<usize>>>()?;
    if let Some(i) = widths.iter().position(|&w| w == 0) {
        return Err(format!("width {} is 0; every width must be at least 1", i + 1));
    }
    if widths.len() < 2 {
        return Err("give at least two widths, the input's and the output's (e.g. 64,10)".into());
    }
    Ok(Widths(widths))
}

/// `--save-every`: `auto` or a number of epochs.
pub fn save_every(s: &str) -> Parsed<SaveEvery> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(SaveEvery::Auto);
    }
    count(s).map(SaveEvery::Epochs).map_err(|e| format!("{e} (or 'auto')"))
}

/// `bench --backend`: `cpu`, `gpu` or `both`.
pub fn bench_backends(s: &str) -> Parsed<BenchBackends> {
    match s.to_ascii_lowercase().as_str() {
        "cpu" => Ok(BenchBackends::Cpu),
        "gpu" => Ok(BenchBackends::Gpu),
        "both" => Ok(BenchBackends::Both),
        _ => Err(format!("unknown backend '{s}' for bench (expected cpu, gpu or both)")),
    }
}

/// `bench --configs`: names of standard configurations.
pub fn configs(s: &str) -> Parsed<Configs> {
    bench::configs(s).map(Configs).map_err(|e| e.to_string())
}

/// A count from 1 up to `max` (bench's steps and batch sizes: a huge value would run for hours).
pub fn count_up_to(max: usize) -> impl Fn(&str) -> Parsed<usize> + Clone + Send + Sync + 'static {
    move |s| match count(s)? {
        n if n <= max => Ok(n),
        n => Err(format!("must be at most {max}, got {n}")),
    }
}

/// A count from 0 up to `max` (bench's warm-up steps).
pub fn up_to(max: usize) -> impl Fn(&str) -> Parsed<usize> + Clone + Send + Sync + 'static {
    move |s| match number(s, "a whole number")? {
        n if n <= max => Ok(n),
        n => Err(format!("must be at most {max}, got {n}")),
    }
}
