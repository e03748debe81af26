//! The `Backend` trait that the CPU (`cpu_fast::CpuBackend`), the GPU (`gpu::GpuMlp`), the reference
//! (`reference::ReferenceBackend`) and data-parallel training (`distributed::DataParallel`) implement, and the
//! rules they follow: the checks of a `run_steps` call, of a gradient-clip value, and when plain SGD runs
//! inside the backward pass.

use ndarray::{Array2, ArrayView2};

use crate::cpu::Trace;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState, OptimizerKind};

/// A place where an MLP trains: the same calls on the CPU and on the GPU.
pub trait Backend {
    /// A one-line description, e.g. `cpu` or `gpu (NVIDIA H100, vulkan)`.
    fn name(&self) -> String;
    fn spec(&self) -> &MlpSpec;
    /// Which training step ran, where the backend has more than one (the GPU's fused and unfused steps,
    /// `gpu::GpuPath`): its name, or each with the batch sizes it ran where they differ; `None` where the
    /// backend has one step, or none ran yet.
    fn step_path(&self) -> Option<String> {
        None
    }
    /// The current parameters (a read-back on the GPU).
    fn params(&mut self) -> Result<Params<f32>>;
    /// Replaces the parameters.
    fn set_params(&mut self, p: &Params<f32>) -> Result<()>;
    /// Chooses the optimizer and resets its state (SGD until this is called).
    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()>;
    fn optimizer(&self) -> OptimConfig;
    /// The optimizer's state (a read-back on the GPU).
    fn optimizer_state(&mut self) -> Result<OptimState>;
    /// Restores the optimizer's state, for resuming.
    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()>;
    /// One training step on X (B, I_0), Y (B, O_L): forward, loss, backward, optimizer update. The batch
    /// loss (before the update) is added to a running sum as `loss · B`; it is returned if `want_loss`.
    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>>;
    /// Makes X (N, I_0), Y (N, O_L) the training set that `run_steps` names rows of (uploaded once on the GPU).
    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()>;
    /// Training steps on the rows `rows` of the training set, `batch` at a time (the last batch may be
    /// smaller), with no read-back; losses go to the running sum. On the GPU: one submit. At most N rows
    /// per call (an epoch's order, or part of it), checked by [`Batches::new`]: a batch of 0 is an error.
    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()>;
    /// Clips the gradient's global norm to `max_norm` before every update (PyTorch's `clip_grad_norm_`), or
    /// not at all with `None` (the default).
    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()>;
    fn grad_clip(&self) -> Option<f32>;
    /// The first step whose loss was NaN or infinite, if any (checked where the loss is computed; on the GPU
    /// it is one small read-back).
    fn diverged_at(&mut self) -> Result<Option<u64>>;
    /// The running sum of `loss · B` since the last call, then resets it (one read-back on the GPU).
    fn take_loss_sum(&mut self) -> Result<f64>;
    /// `take_loss_sum` and `diverged_at` together, as once per epoch; the GPU reads both back in one go.
    fn take_epoch_stats(&mut self) -> Result<(f64, Option<u64>)> {
        let diverged = self.diverged_at()?;
        Ok((self.take_loss_sum()?, diverged))
    }
    /// One training step that also returns every intermediate tensor of it.
    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>>;
    /// The network's output for X (B, I_0) (softmax probabilities for cross-entropy networks).
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>>;
}

/// Checks a `--max-grad-norm` value (`set_grad_clip` on either backend).
pub fn check_clip(max_norm: Option<f32>) -> Result<()> {
    match max_norm {
        Some(n) if !(n > 0.0 && n.is_finite()) => {
            Err(Error::Invalid(format!("--max-grad-norm must be a finite number > 0, got {n}")))
        }
        _ => Ok(()),
    }
}

/// Whether an update can run inside the backward pass on either backend: plain SGD with neither weight
/// decay nor gradient clipping, where `W ← W − lr·A_prevᵀ·δ` is one product adding into W.
pub fn fuses_sgd(cfg: &OptimConfig, max_grad_norm: Option<f32>) -> bool {
    cfg.kind == OptimizerKind::Sgd && cfg.weight_decay == 0.0 && max_grad_norm.is_none()
}

/// The batches of one `run_steps` call, checked the same way on both backends: `rows` of a training set of
/// `n` rows (each below `n`, at most `n` of them), `size` at a time, the last batch possibly smaller.
#[derive(Clone, Copy, Debug)]
pub struct Batches<'a> {
    rows: &'a [usize],
    size: usize,
}

impl<'a> Batches<'a> {
    pub fn new(rows: &'a [usize], size: usize, n: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::Invalid("run_steps: the batch size must be at least 1".into()));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::shape("row index", format!("< {n}"), bad));
        }
        if rows.len() > n {
            return Err(Error::shape("rows in one call", format!("at most {n}"), rows.len()));
        }
        Ok(Self { rows, size })
    }

    /// Each batch's rows, with the batch's offset in the call's rows.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &'a [usize])> + 'a {
        let size = self.size;
        self.rows.chunks(size).enumerate().map(move |(i, rows)| (i * size, rows))
    }

    /// How many steps the call takes.
    pub fn len(&self) -> usize {
        self.rows.len().div_ceil(self.size)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The error of `run_steps` before `set_data`.
pub fn no_data() -> Error {
    Error::Invalid("run_steps needs set_data first".into())
}
