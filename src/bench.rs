//! `backprop bench`: training-step time of the standard configurations of DESIGN.md on the CPU and GPU
//! backends, measured the same way for both (median of timed steps after warm-up), plus the batch size at
//! which the GPU starts to beat the CPU.
//!
//! Two figures per configuration: `ms_per_step`, one step at a time (batch uploaded, the step, its loss read
//! back, waiting for each), with the GPU's time split into those parts; and `train_ms_per_step`, steps as
//! `train` runs them (data resident, up to 32 steps a submit, one read-back per group of steps).
//!
//! The configurations, their workload and `median` build everywhere (the web page's bench tab times them
//! itself, awaiting the GPU); the CPU backend's half is native only.

use std::sync::Arc;
use std::time::Duration;

use ndarray::Array2;
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;
use web_time::Instant;

use crate::backend::Backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::cpu_fast::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuMlp, GpuPath, PathStrategy};
use crate::model::{Activation, Loss, MlpSpec, Params};

/// One standard configuration: all sigmoid, MSE, SGD with lr 0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub name: &'static str,
    pub sizes: &'static [usize],
    pub batch: usize,
}

/// The standard configurations of DESIGN.md.
pub const STANDARD: [Config; 4] = [
    Config { name: "seed", sizes: &[2, 2, 1], batch: 1 },
    Config { name: "small", sizes: &[64, 64, 64, 1], batch: 64 },
    Config { name: "mnist", sizes: &[784, 256, 256, 10], batch: 256 },
    Config { name: "wide", sizes: &[1024, 4096, 4096, 1024], batch: 1024 },
];

/// Looks up configurations by name (comma-separated), each at most once.
pub fn configs(names: &str) -> Result<Vec<Config>> {
    let mut found: Vec<Config> = Vec::new();
    for n in names.split(',').map(str::trim) {
        let c = STANDARD.iter().copied().find(|c| c.name == n).ok_or_else(|| {
            Error::Invalid(format!("--configs: unknown configuration '{n}' (expected seed, small, mnist, wide)"))
        })?;
        if found.contains(&c) {
            return Err(Error::Invalid(format!("--configs: '{n}' is named twice (each configuration is timed once)")));
        }
        found.push(c);
    }
    Ok(found)
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Untimed steps first (fewer when they take longer than `max_time`).
    pub warmup: usize,
    /// Timed steps (at most; fewer when a step is slow).
    pub steps: usize,
    /// Stop adding timed steps past this much time (at least 3 are taken).
    pub max_time: Duration,
}

/// A note instead of a run, for a configuration too large for a software adapter unless named.
pub fn software_skip(ctx: &GpuContext, c: &Config, named: bool) -> Result<Option<String>> {
    let spec = MlpSpec::uniform(c.sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
    let gflop = spec.step_flops(c.batch) / 1e9;
    let software = ctx.adapter().device_type == "cpu";
    Ok((software && !named && gflop > 5.0).then(|| {
        format!(
            "gpu skipped {}: {} is a software renderer ({gflop:.0} GFLOP per step); name it in --configs to run it",
            c.name,
            ctx.adapter().name,
        )
    }))
}

/// Why the GPU backend cannot time `c`'s network at `batches` rows on `ctx`: the device's tuner forces the
/// fused step (`BACKPROP_GPU_PATH=fused`) and the fused step cannot take the network at one of them (the
/// reason names the batch where it matters). The caller makes it a note, as it does `software_skip`'s: the
/// other runs are timed and printed.
pub fn forced_fused_skip(ctx: &GpuContext, c: &Config, batches: &[usize]) -> Result<Option<String>> {
    if ctx.tuner().path_strategy() != PathStrategy::Fixed(GpuPath::Fused) {
        return Ok(None);
    }
    let spec = MlpSpec::uniform(c.sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
    Ok(batches.iter().find_map(|&b| {
        let why = ctx.path_key(&spec, b).block_rows.err()?;
        let sizes: Vec<String> = c.sizes.iter().map(usize::to_string).collect();
        Some(format!(
            "BACKPROP_GPU_PATH=fused forces the fused GPU step, which cannot take the {} network: {why}",
            sizes.join("-")
        ))
    }))
}

/// A note instead of `c`'s GPU run at its batch: `software_skip`'s, else `forced_fused_skip`'s.
pub fn gpu_skip(ctx: &GpuContext, c: &Config, named: bool) -> Result<Option<String>> {
    if let Some(note) = software_skip(ctx, c, named)? {
        return Ok(Some(note));
    }
    Ok(forced_fused_skip(ctx, c, &[c.batch])?.map(|why| format!("gpu skipped {}: {why}", c.name)))
}

/// The GPU step split into its parts (medians, ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Split {
    pub upload_ms: f64,
    pub kernel_ms: f64,
    pub readback_ms: f64,
    /// "timestamp" when kernel time comes from timestamp queries, "wall" otherwise.
    pub kernel_timer: &'static str,
}

/// One configuration on one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub config: String,
    pub backend: String,
    pub adapter: String,
    pub batch: usize,
    pub steps: usize,
    pub ms_per_step: f64,
    pub gflops: f64,
    pub peak_fraction: Option<f64>,
    pub split: Option<Split>,
    /// ms per step as `train` runs them (`train_rate`); not measured in the crossover search.
    pub train_ms_per_step: Option<f64>,
    /// Steps per group (per read-back) in that measurement.
    pub train_group: Option<usize>,
    /// GPU: kernel launches in one such step (the batch's gather included); what a launch-bound step costs.
    pub dispatches_per_step: Option<usize>,
    /// GPU: the step that ran, "fused" or "unfused" (`GpuPath`; `BACKPROP_GPU_PATH` chooses how).
    pub gpu_path: Option<&'static str>,
}

impl BenchResult {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config,
            "backend": self.backend,
            "adapter": self.adapter,
            "batch": self.batch,
            "steps": self.steps,
            "ms_per_step": self.ms_per_step,
            "gflops": self.gflops,
            "peak_fraction": self.peak_fraction,
            "upload_ms": self.split.map(|s| s.upload_ms),
            "kernel_ms": self.split.map(|s| s.kernel_ms),
            "readback_ms": self.split.map(|s| s.readback_ms),
            "kernel_timer": self.split.map(|s| s.kernel_timer),
            "train_ms_per_step": self.train_ms_per_step,
            "train_group": self.train_group,
            "dispatches_per_step": self.dispatches_per_step,
            "gpu_path": self.gpu_path,
        })
    }
}

/// The median of `v` (NaN when empty); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn batch_data(spec: &MlpSpec, batch: usize) -> (Array2<f32>, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let d = Uniform::new(0.0f32, 1.0).expect("valid range");
    let x = Array2::from_shape_fn((batch, spec.input_width()), |_| d.sample(&mut rng));
    let y = Array2::from_shape_fn((batch, spec.output_width()), |_| d.sample(&mut rng));
    (x, y)
}

/// Times `step` per the budget and returns (median ms, every sample).
fn time_steps(budget: &Budget, mut step: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
    let start = Instant::now();
    for _ in 0..budget.warmup {
        if start.elapsed() >= budget.max_time {
            break;
        }
        step()?;
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < budget.steps.max(1) && (samples.len() < 3 || start.elapsed() < budget.max_time) {
        samples.push(step()?);
    }
    Ok(samples)
}

/// Resident data for a group is at most this many bytes.
const TRAIN_DATA_BYTES: usize = 256 << 20;

/// Steps as `train` runs them: the batch repeated into a resident training set of `k` batches, then groups
/// of `k` steps through `run_steps`, each ended by the read-back of the loss sum (which waits for the GPU).
/// `k` makes a group last about 0.3 s at `step_ms` (at most 32, as `train` submits, and what fits
/// `TRAIN_DATA_BYTES`). Returns (median ms per step over the timed groups, k).
pub fn train_rate(
    backend: &mut dyn Backend,
    x: &Array2<f32>,
    y: &Array2<f32>,
    step_ms: f64,
    budget: &Budget,
) -> Result<(f64, usize)> {
    let batch = x.nrows().max(1);
    let bytes_per_batch = batch * (x.ncols() + y.ncols()) * 4;
    let by_time = if step_ms > 0.0 { (300.0 / step_ms) as usize } else { 32 };
    let k = by_time.min(32).min(TRAIN_DATA_BYTES / bytes_per_batch.max(1)).max(1);
    let tile = |a: &Array2<f32>| {
        let views: Vec<_> = (0..k).map(|_| a.view()).collect();
        // k copies of one matrix have equal widths, so this cannot fail.
        ndarray::concatenate(ndarray::Axis(0), &views).expect("copies of one matrix concatenate")
    };
    backend.set_data(tile(x).view(), tile(y).view())?;
    let rows: Vec<usize> = (0..k * batch).collect();
    let mut group = || -> Result<f64> {
        let t = Instant::now();
        backend.run_steps(&rows, batch, 0.1)?;
        backend.take_loss_sum()?;
        Ok(t.elapsed().as_secs_f64() * 1e3 / k as f64)
    };
    group()?;
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 3 || (samples.len() * k < budget.steps && start.elapsed() < budget.max_time) {
        samples.push(group()?);
    }
    Ok((median(&mut samples), k))
}

/// A configuration's network, its initial parameters, and one batch of inputs and targets.
pub type Workload = (MlpSpec, Params<f32>, Array2<f32>, Array2<f32>);

/// What a configuration times at `batch` rows: its network (seeded weights) and one batch of seeded inputs
/// and targets in [0, 1).
pub fn workload(c: &Config, batch: usize) -> Result<Workload> {
    let spec = MlpSpec::uniform(c.sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
    let params = Params::init(&spec, 1);
    let (x, y) = batch_data(&spec, batch);
    Ok((spec, params, x, y))
}

/// One configuration on the CPU backend, at `batch` rows.
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu(c: &Config, batch: usize, budget: &Budget, peak: Option<f64>) -> Result<BenchResult> {
    cpu_with(c, batch, budget, peak, true)
}

#[cfg(not(target_arch = "wasm32"))]
fn cpu_with(c: &Config, batch: usize, budget: &Budget, peak: Option<f64>, train: bool) -> Result<BenchResult> {
    let (spec, params, x, y) = workload(c, batch)?;
    let mut backend = CpuBackend::new(spec.clone(), params)?;
    let mut samples = time_steps(budget, || {
        let t = Instant::now();
        backend.step(x.view(), y.view(), 0.1, false)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    })?;
    let steps = samples.len();
    let ms = median(&mut samples);
    let gflops = spec.step_flops(batch) / (ms * 1e6);
    let (train_ms_per_step, train_group) = if train {
        train_rate(&mut backend, &x, &y, ms, budget).map(|(t, k)| (Some(t), Some(k)))?
    } else {
        (None, None)
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Ok(BenchResult {
        config: c.name.into(),
        backend: "cpu".into(),
        adapter: format!("{threads} threads"),
        batch,
        steps,
        ms_per_step: ms,
        gflops,
        peak_fraction: peak.map(|p| gflops / p),
        split: None,
        train_ms_per_step,
        train_group,
        dispatches_per_step: None,
        gpu_path: None,
    })
}

/// One configuration on the GPU backend, at `batch` rows; every step is timed part by part.
pub fn gpu(ctx: &Arc<GpuContext>, c: &Config, batch: usize, budget: &Budget, peak: Option<f64>) -> Result<BenchResult> {
    gpu_with(ctx, c, batch, budget, peak, true)
}

fn gpu_with(
    ctx: &Arc<GpuContext>,
    c: &Config,
    batch: usize,
    budget: &Budget,
    peak: Option<f64>,
    train: bool,
) -> Result<BenchResult> {
    let (spec, params, x, y) = workload(c, batch)?;
    let mut model = GpuMlp::new(ctx.clone(), spec.clone(), &params)?;
    let mut parts = Vec::new();
    let mut samples = time_steps(budget, || {
        let t = model.timed_step(x.view(), y.view(), 0.1)?;
        parts.push(t);
        Ok(t.total_ms)
    })?;
    let timed = &parts[parts.len() - samples.len()..];
    let pick = |f: &dyn Fn(&crate::gpu::StepTiming) -> f64| median(&mut timed.iter().map(f).collect::<Vec<_>>());
    let split = Split {
        upload_ms: pick(&|t| t.upload_ms),
        kernel_ms: pick(&|t| t.kernel_ms),
        readback_ms: pick(&|t| t.readback_ms),
        kernel_timer: if timed.iter().all(|t| t.kernel_timestamps) { "timestamp" } else { "wall" },
    };
    let steps = samples.len();
    let ms = median(&mut samples);
    let gflops = spec.step_flops(batch) / (ms * 1e6);
    let (train_ms_per_step, train_group) =
        if train { train_rate(&mut model, &x, &y, ms, budget).map(|(t, k)| (Some(t), Some(k)))? } else { (None, None) };
    let a = ctx.adapter();
    Ok(BenchResult {
        config: c.name.into(),
        backend: "gpu".into(),
        adapter: format!("{} ({}, {})", a.name, a.backend, a.device_type),
        batch,
        steps,
        ms_per_step: ms,
        gflops,
        peak_fraction: peak.map(|p| gflops / p),
        split: Some(split),
        train_ms_per_step,
        train_group,
        dispatches_per_step: if train { model.dispatches_per_step(batch) } else { None },
        gpu_path: model.path_for(batch).map(|p| p.name()),
    })
}

/// The crossover search: ms per step of both backends for each batch size, and the first batch at which
/// the GPU is faster.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossover {
    pub config: String,
    /// (batch, cpu ms, gpu ms)
    pub points: Vec<(usize, f64, f64)>,
    pub first_gpu_win: Option<usize>,
}

#[cfg(not(target_arch = "wasm32"))]
pub fn crossover(ctx: &Arc<GpuContext>, c: &Config, batches: &[usize], budget: &Budget) -> Result<Crossover> {
    crossover_with(ctx, c, batches, budget, &mut |_| {})
}

/// [`crossover`], calling `before` with each batch size before it is timed (to show progress).
#[cfg(not(target_arch = "wasm32"))]
pub fn crossover_with(
    ctx: &Arc<GpuContext>,
    c: &Config,
    batches: &[usize],
    budget: &Budget,
    before: &mut dyn FnMut(usize),
) -> Result<Crossover> {
    let mut points = Vec::new();
    for &b in batches {
        before(b);
        let cpu = cpu_with(c, b, budget, None, false)?.ms_per_step;
        let gpu = gpu_with(ctx, c, b, budget, None, false)?.ms_per_step;
        points.push((b, cpu, gpu));
    }
    let first_gpu_win = points.iter().find(|(_, c, g)| g < c).map(|p| p.0);
    Ok(Crossover { config: c.name.into(), points, first_gpu_win })
}
