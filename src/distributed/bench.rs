//! `backprop bench` under `mpirun`: a standard configuration's step on N ranks, split into compute,
//! device↔host copies and the gradient sum, the sum's bandwidth, and the scaling efficiency against one
//! process taking the whole batch (measured on rank 0 while the others wait).

use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

use super::{DataParallel, GradientBackend, GradientExchange};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{Activation, Loss, MlpSpec, Params};

/// One configuration on N ranks (rank 0's measurements; the ranks step together).
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    pub config: String,
    pub backend: String,
    pub ranks: usize,
    /// The global batch.
    pub batch: usize,
    pub steps: u64,
    /// One process, the whole batch, one step (ms).
    pub one_ms: f64,
    /// N ranks, one step (ms), and its parts: forward/backward/update, copies, waiting for the slowest
    /// rank, the sum across ranks.
    pub ms: f64,
    pub compute_ms: f64,
    pub copy_ms: f64,
    pub wait_ms: f64,
    pub exchange_ms: f64,
    /// Gradient bytes summed per step.
    pub bytes: usize,
    /// Bus bandwidth of the sum: bytes · 2(N−1)/N / its time (as NCCL reports all-reduce), GB/s.
    pub bus_gbs: f64,
    /// one_ms / (N · ms): 1 when N ranks take 1/N of the time.
    pub efficiency: f64,
}

impl Scaling {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config, "backend": self.backend, "ranks": self.ranks, "batch": self.batch,
            "steps": self.steps, "one_process_ms": self.one_ms, "ms_per_step": self.ms,
            "compute_ms": self.compute_ms, "copy_ms": self.copy_ms, "wait_ms": self.wait_ms, "allreduce_ms": self.exchange_ms,
            "gradient_bytes": self.bytes, "allreduce_bus_gbs": self.bus_gbs, "efficiency": self.efficiency,
        })
    }

    /// The table `bench` prints.
    pub fn table(rows: &[Scaling]) -> String {
        let mut t = format!(
            "{:<6} {:<4} {:>5} {:>5} {:>10} {:>10} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6}\n",
            "config",
            "back",
            "ranks",
            "batch",
            "1-proc ms",
            "ms/step",
            "compute",
            "copies",
            "wait",
            "allreduce",
            "MB",
            "bus GB/s",
            "eff"
        );
        for r in rows {
            t += &format!(
                "{:<6} {:<4} {:>5} {:>5} {:>10.3} {:>10.3} {:>9.3} {:>8.3} {:>8.3} {:>9.3} {:>8.2} {:>8.2} {:>5.0}%\n",
                r.config,
                r.backend,
                r.ranks,
                r.batch,
                r.one_ms,
                r.ms,
                r.compute_ms,
                r.copy_ms,
                r.wait_ms,
                r.exchange_ms,
                r.bytes as f64 / 1e6,
                r.bus_gbs,
                100.0 * r.efficiency
            );
        }
        t
    }
}

/// What to time: a network of sigmoid layers with MSE (every width, input first; a configuration of
/// `crate::bench`) and its global batch.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    pub name: &'a str,
    pub sizes: &'a [usize],
    pub batch: usize,
}

type Setup = (MlpSpec, Params<f32>, Array2<f32>, Array2<f32>);

/// The workload's network, its initial parameters, and one batch of random inputs and targets.
fn setup(c: &Workload) -> Result<Setup> {
    let spec = MlpSpec::uniform(c.sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let d = Uniform::new(0.0f32, 1.0).expect("valid range");
    let x = Array2::from_shape_fn((c.batch, spec.input_width()), |_| d.sample(&mut rng));
    let y = Array2::from_shape_fn((c.batch, spec.output_width()), |_| d.sample(&mut rng));
    Ok((spec.clone(), Params::init(&spec, 1), x, y))
}

/// Rank 0's choice of timed steps (`steps`, fewer when one step is long: about `seconds` in all, at
/// least 3), the same on every rank.
fn agreed_steps<X: GradientExchange>(x: &mut X, step_s: f64, steps: usize, seconds: f64) -> Result<u64> {
    let mine = (steps as f64).min(seconds / step_s.max(1e-9)).max(3.0) as u64;
    let mut all = vec![0u64; x.size()];
    x.all_gather_u64(&[mine], &mut all)?;
    Ok(all[0])
}

/// Times workload `c` with backends from `make` (SGD, lr 0.1, data resident, as `train` runs), the
/// gradients summed after the backward pass or, with `overlap`, layer by layer during it (then the wait
/// for the slowest rank is not timed apart, and the copies count as compute).
pub fn scaling<B: GradientBackend, X: GradientExchange>(
    c: &Workload,
    backend: &str,
    make: impl Fn(&MlpSpec, &Params<f32>) -> Result<B>,
    mut exchange: X,
    overlap: bool,
    (warmup, steps): (usize, usize),
) -> Result<Scaling> {
    let (spec, params, x, y) = setup(c)?;
    let rows: Vec<usize> = (0..c.batch).collect();
    let (n, rank) = (exchange.size(), exchange.rank());
    // One process, the whole batch: rank 0 alone, the others waiting in the gather below.
    let mut one_ms = 0.0;
    if rank == 0 {
        let mut one = make(&spec, &params)?;
        one.set_data(x.view(), y.view())?;
        let mut time = || -> Result<f64> {
            let t = Instant::now();
            one.run_steps(&rows, c.batch, 0.1)?;
            one.take_loss_sum()?; // waits for a GPU
            Ok(t.elapsed().as_secs_f64())
        };
        for _ in 0..warmup.max(1) {
            time()?;
        }
        let k = (steps as f64).min(3.0 / time()?.max(1e-9)).max(3.0) as usize;
        one_ms = (0..k).map(|_| time()).sum::<Result<f64>>()? * 1e3 / k as f64;
    }
    let one_ms = exchange.all_gather_f64(&[one_ms])?[0];

    let mut dp = DataParallel::new(make(&spec, &params)?, exchange)?;
    dp.time_waits(!overlap);
    dp.set_overlap(overlap);
    dp.set_data(x.view(), y.view())?;
    for _ in 0..warmup.max(1) {
        dp.run_steps(&rows, c.batch, 0.1)?;
    }
    let t = Instant::now();
    dp.run_steps(&rows, c.batch, 0.1)?;
    let k = agreed_steps(dp.exchange_mut(), t.elapsed().as_secs_f64(), steps, 3.0)?;
    dp.reset_times();
    let t = Instant::now();
    for _ in 0..k {
        dp.run_steps(&rows, c.batch, 0.1)?;
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / k as f64;
    let times = dp.times();
    let per = |s: f64| s * 1e3 / times.steps.max(1) as f64;
    let exchange_ms = per(times.exchange_s);
    let moved = times.bytes_per_step as f64 * 2.0 * (n - 1) as f64 / n as f64;
    Ok(Scaling {
        config: c.name.into(),
        backend: if overlap { format!("{backend}+o") } else { backend.into() },
        ranks: n,
        batch: c.batch,
        steps: k,
        one_ms,
        ms,
        compute_ms: per(times.compute_s),
        copy_ms: per(times.copy_s),
        wait_ms: per(times.wait_s),
        exchange_ms,
        bytes: times.bytes_per_step,
        bus_gbs: if exchange_ms > 0.0 { moved / (exchange_ms * 1e6) } else { 0.0 },
        efficiency: one_ms / (n as f64 * ms),
    })
}
