//! `DataParallel`: a `Backend` made of one backend per rank and a gradient exchange. Each call takes the
//! global batch; each rank computes the gradient of its share of the rows, the gradients are summed in rank
//! order, and every rank applies the same update, so the training loop does not know it is distributed.

use std::ops::Range;
use std::time::Instant;

use ndarray::{Array2, ArrayView2, s};

use super::exchange::{GradientExchange, share};
use super::gradients::{GradientBackend, layer_buckets};
use crate::backend::{self, Backend, Batches};
use crate::cpu::Trace;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};

/// Where the time of the data-parallel steps went on this rank, summed since the last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTimes {
    pub steps: u64,
    /// Forward, backward and the update, until the device is idle.
    pub compute_s: f64,
    /// Gradients device → host and back (a copy on the CPU backend).
    pub copy_s: f64,
    /// The fixed-order sum across ranks.
    pub exchange_s: f64,
    /// Waiting for the slowest rank before the sum (timed apart only with `time_waits`).
    pub wait_s: f64,
    /// Bytes of gradient summed per step (this rank's buffer).
    pub bytes_per_step: usize,
}

/// Data-parallel training over any `GradientBackend` and any `GradientExchange`.
pub struct DataParallel<B: GradientBackend, X: GradientExchange> {
    inner: B,
    exchange: X,
    grads: Vec<f32>,
    /// The sum's scratch space, kept between steps.
    scratch: Vec<f32>,
    /// Losses taken from the inner backend by `step(.., want_loss)`, not yet reported.
    local_loss: f64,
    times: StepTimes,
    /// Meet the other ranks before each sum, so `exchange_s` holds the transfer alone (for `bench`).
    time_waits: bool,
    /// Sum each layer's gradients as the backward pass produces them (`set_overlap`).
    overlap: bool,
    /// Rows of the training set of `set_data`.
    data_rows: Option<usize>,
    fault: Option<Fault>,
}

/// A fault to inject on one rank at its first epoch's end, to test how a job fails
/// (`BACKPROP_TEST_FAULT`, see `job`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This rank alone returns an error.
    Error,
    /// This rank's first parameter moves, so the ranks drift apart.
    Drift,
}

/// FNV-1a over the parameters' bits and the step count: equal on every rank while they agree.
fn checksum(params: &[f32], step: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in params.iter().map(|p| p.to_bits() as u64).chain([step]) {
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<B: GradientBackend, X: GradientExchange> DataParallel<B, X> {
    /// Wraps this rank's backend; checks that every rank starts from the same parameters.
    pub fn new(inner: B, exchange: X) -> Result<Self> {
        let n = inner.spec().param_layout().len;
        let mut dp = Self {
            inner,
            exchange,
            grads: vec![0.0; n],
            scratch: Vec::new(),
            local_loss: 0.0,
            times: StepTimes::default(),
            time_waits: false,
            overlap: false,
            data_rows: None,
            fault: None,
        };
        dp.times.bytes_per_step = n * size_of::<f32>();
        dp.check_in_sync()?;
        Ok(dp)
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }
    pub fn exchange(&self) -> &X {
        &self.exchange
    }
    pub fn exchange_mut(&mut self) -> &mut X {
        &mut self.exchange
    }
    pub fn rank(&self) -> usize {
        self.exchange.rank()
    }
    pub fn size(&self) -> usize {
        self.exchange.size()
    }
    #[doc(hidden)]
    pub fn inject(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    fn injected(&mut self) -> Result<()> {
        match self.fault.take() {
            Some(Fault::Error) => Err(Error::Invalid("a fault injected by BACKPROP_TEST_FAULT".into())),
            Some(Fault::Drift) => {
                let mut p = self.inner.params()?.to_flat();
                p[0] += 1e-3;
                let p = Params::from_flat(self.inner.spec(), &p)?;
                self.inner.set_params(&p)
            }
            None => Ok(()),
        }
    }

    /// The time split of the steps since the last `reset_times`.
    pub fn times(&self) -> StepTimes {
        self.times
    }
    /// With `true`, `run_steps` sums each layer's gradients (last layer first) while the backward pass of
    /// the earlier layers goes on, as PyTorch's DDP does with its buckets; off by default (see DESIGN.md for
    /// where it measured faster). Without a device that runs apart from the host (the CPU backend) the
    /// buckets come after the whole backward pass. The result is the same bits either way.
    pub fn set_overlap(&mut self, on: bool) {
        self.overlap = on;
    }

    /// With `true`, every step meets the other ranks before the sum (one small extra exchange), so the
    /// wait for the slowest rank and the transfer are timed apart.
    pub fn time_waits(&mut self, on: bool) {
        self.time_waits = on;
    }
    pub fn reset_times(&mut self) {
        self.times = StepTimes { bytes_per_step: self.times.bytes_per_step, ..StepTimes::default() };
    }

    /// Compares a checksum of the parameters (and the step count) across ranks; an error naming the ranks
    /// that differ from rank 0 when they have drifted apart (the same error on every rank).
    pub fn check_in_sync(&mut self) -> Result<()> {
        let step = self.inner.optimizer_state()?.step;
        let mine = checksum(&self.inner.params()?.to_flat(), step);
        let mut all = vec![0u64; self.size()];
        self.exchange.all_gather_u64(&[mine], &mut all)?;
        let off: Vec<String> = (1..all.len()).filter(|&r| all[r] != all[0]).map(|r| r.to_string()).collect();
        if off.is_empty() {
            return Ok(());
        }
        Err(Error::Distributed(format!(
            "the ranks' parameters have drifted apart: rank(s) {} differ from rank 0 (checksums {all:016x?}); \
             check that every rank runs the same build on the same kind of device",
            off.join(", ")
        )))
    }

    /// One step of a global batch, of which this rank computes `mine` rows (with `compute`).
    fn global_step(&mut self, mine: usize, lr: f32, compute: impl FnOnce(&mut B) -> Result<()>) -> Result<()> {
        let t0 = Instant::now();
        if mine > 0 {
            compute(&mut self.inner)?;
            self.inner.wait_idle()?;
        }
        let t1 = Instant::now();
        if mine > 0 {
            self.inner.read_gradients(&mut self.grads)?;
        } else {
            self.grads.fill(0.0);
        }
        let read = Instant::now();
        if self.time_waits {
            let mut all = vec![0u64; self.size()];
            self.exchange.all_gather_u64(&[0], &mut all)?;
        }
        let t2 = Instant::now();
        self.exchange.sum_with(&mut self.grads, &mut self.scratch)?;
        let t3 = Instant::now();
        self.inner.write_gradients(&self.grads)?;
        let t4 = Instant::now();
        self.inner.apply_gradients(lr)?;
        self.inner.wait_idle()?;
        let t = &mut self.times;
        t.steps += 1;
        t.compute_s += (t1 - t0).as_secs_f64() + t4.elapsed().as_secs_f64();
        t.copy_s += (read - t1).as_secs_f64() + (t4 - t3).as_secs_f64();
        t.wait_s += (t2 - read).as_secs_f64();
        t.exchange_s += (t3 - t2).as_secs_f64();
        Ok(())
    }

    /// `global_step` on rows of the resident data with the gradient summed layer by layer as the backward
    /// pass produces it (`overlap`). The sums' order per element is the same, so are the bits.
    fn overlapped_step(&mut self, mine: &[usize], global: usize, lr: f32) -> Result<()> {
        let t0 = Instant::now();
        let mut summing = 0.0;
        let (inner, exchange, grads, scratch) =
            (&mut self.inner, &mut self.exchange, &mut self.grads, &mut self.scratch);
        let mut sum = |range: Range<usize>, g: &mut [f32]| -> Result<()> {
            let t = Instant::now();
            exchange.sum_with(g, scratch)?;
            grads[range].copy_from_slice(g);
            summing += t.elapsed().as_secs_f64();
            Ok(())
        };
        if mine.is_empty() {
            for range in layer_buckets(inner.spec()) {
                sum(range.clone(), &mut vec![0.0; range.len()])?;
            }
            inner.write_gradients(grads)?;
        } else {
            inner.compute_gradients_in_buckets(mine, global, &mut sum)?;
        }
        inner.apply_gradients(lr)?;
        inner.wait_idle()?;
        let t = &mut self.times;
        t.steps += 1;
        t.exchange_s += summing;
        t.compute_s += t0.elapsed().as_secs_f64() - summing;
        Ok(())
    }

    /// This rank's running loss sum, summed over the ranks in rank order.
    fn global_loss_sum(&mut self) -> Result<f64> {
        let mine = self.inner.take_loss_sum()? + std::mem::take(&mut self.local_loss);
        Ok(self.exchange.all_gather_f64(&[mine])?.iter().sum())
    }
}

impl<B: GradientBackend, X: GradientExchange> Backend for DataParallel<B, X> {
    fn name(&self) -> String {
        format!(
            "{}, data-parallel: rank {} of {} ({})",
            self.inner.name(),
            self.rank(),
            self.size(),
            self.exchange.describe()
        )
    }
    fn spec(&self) -> &MlpSpec {
        self.inner.spec()
    }
    fn step_path(&self) -> Option<String> {
        self.inner.step_path()
    }
    fn params(&mut self) -> Result<Params<f32>> {
        self.inner.params()
    }
    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        self.inner.set_params(p)
    }
    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()> {
        self.inner.set_optimizer(cfg)
    }
    fn optimizer(&self) -> OptimConfig {
        self.inner.optimizer()
    }
    fn optimizer_state(&mut self) -> Result<OptimState> {
        self.inner.optimizer_state()
    }
    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        self.inner.set_optimizer_state(s)
    }
    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        self.spec().check_batch(x.dim(), Some(y.dim()))?;
        let b = x.nrows();
        let rows = share(b, self.size(), self.rank());
        let (xs, ys) = (x.slice(s![rows.clone(), ..]), y.slice(s![rows.clone(), ..]));
        if want_loss {
            // Set aside the losses so far, so that what the step adds is this batch's alone.
            self.local_loss += self.inner.take_loss_sum()?;
        }
        self.global_step(rows.len(), lr, |inner| inner.compute_gradients(xs, ys, b))?;
        if !want_loss {
            return Ok(None);
        }
        let mine = self.inner.take_loss_sum()?;
        self.local_loss += mine;
        let sum: f64 = self.exchange.all_gather_f64(&[mine])?.iter().sum();
        Ok(Some((sum / b as f64) as f32))
    }
    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.data_rows = None;
        self.inner.set_data(x, y)?;
        self.data_rows = Some(x.nrows());
        Ok(())
    }
    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        let batches = Batches::new(rows, batch, self.data_rows.ok_or_else(backend::no_data)?)?;
        for (_, chunk) in batches.iter() {
            let mine = &chunk[share(chunk.len(), self.size(), self.rank())];
            if self.overlap {
                self.overlapped_step(mine, chunk.len(), lr)?;
            } else {
                self.global_step(mine.len(), lr, |inner| inner.compute_gradients_rows(mine, chunk.len()))?;
            }
        }
        Ok(())
    }
    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        self.inner.set_grad_clip(max_norm)
    }
    fn grad_clip(&self) -> Option<f32> {
        self.inner.grad_clip()
    }
    /// The first step at which any rank's loss was not finite (the same answer on every rank).
    fn diverged_at(&mut self) -> Result<Option<u64>> {
        let mine = self.inner.diverged_at()?.unwrap_or(0);
        let mut all = vec![0u64; self.size()];
        self.exchange.all_gather_u64(&[mine], &mut all)?;
        Ok(all.into_iter().filter(|&s| s != 0).min())
    }
    fn take_loss_sum(&mut self) -> Result<f64> {
        self.global_loss_sum()
    }
    /// Once per epoch: the loss sum and the divergence step agreed by all ranks, then the drift check.
    fn take_epoch_stats(&mut self) -> Result<(f64, Option<u64>)> {
        self.injected()?;
        let (sum, diverged) = self.inner.take_epoch_stats()?;
        let mine = [sum + std::mem::take(&mut self.local_loss), diverged.unwrap_or(0) as f64];
        let all = self.exchange.all_gather_f64(&mine)?;
        let total = all.chunks_exact(2).map(|p| p[0]).sum();
        let first_bad = all.chunks_exact(2).map(|p| p[1] as u64).filter(|&s| s != 0).min();
        if first_bad.is_none() {
            self.check_in_sync()?;
        }
        Ok((total, first_bad))
    }
    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        if self.size() == 1 {
            return self.inner.traced_step(x, y, lr);
        }
        // Every rank gets here at the same step: one error for all (printed once).
        Err(Error::Distributed(format!(
            "--verify compares one process's step with the reference; it does not run across {} ranks",
            self.size()
        )))
    }
    /// Each rank predicts its share of the rows; the outputs are gathered in rank order.
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.spec().check_batch(x.dim(), None)?;
        let (b, o, n) = (x.nrows(), self.spec().output_width(), self.size());
        let rows = share(b, n, self.rank());
        let mine = if rows.is_empty() {
            Vec::new()
        } else {
            self.inner.predict(x.slice(s![rows, ..]))?.iter().copied().collect()
        };
        let counts: Vec<usize> = (0..n).map(|r| share(b, n, r).len() * o).collect();
        let mut out = vec![0.0f32; b * o];
        self.exchange.all_gather_v(&mine, &counts, &mut out)?;
        Array2::from_shape_vec((b, o), out).map_err(|e| Error::Invalid(format!("gathered outputs: {e}")))
    }
}
