//! The GPU model: a network's buffers and the dispatches of its training step, encoded whole and
//! submitted with no trip back to the CPU.
//!
//! Parameters, gradients and optimizer state live in one flat buffer each (`model`). Everything that
//! depends on the batch size (activations, deltas, the dispatch lists) is a `BatchPlan` (`plan`), made the
//! first time a batch size is seen and reused after that: a step only writes the batch, encodes and
//! submits. The optimizer's dispatches (`optimizer`) follow the plan's; a training set can stay on the GPU
//! (`data`), each batch gathered there. A narrow network's batch may take the fused step instead, two or
//! three launches whatever the depth (`fused`), where the device's tuner chooses it.
//!
//! Work larger than one storage binding is split (see DESIGN.md): a batch into pieces of rows, a weight
//! matrix into pieces of its rows, the optimizer update and a resident data set into pieces.

mod backend_impl;
mod batch;
mod data;
mod fused;
#[cfg(not(target_arch = "wasm32"))]
mod grads;
mod model;
mod optimizer;
mod plan;
mod timing;

pub use timing::StepTiming;

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};

use crate::backend::{self, Batches};
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch};
use crate::gpu::wait;
use crate::model::{MlpSpec, ParamLayout, Params};
use crate::optim::{self, OptimConfig};
use data::{ResidentData, contiguous};
use fused::FusedState;
use model::ModelBuffers;
use optimizer::Optimizer;
use plan::{BatchPlan, weight_pieces};
use timing::Timer;

/// An MLP whose training runs entirely in WGSL kernels.
pub struct GpuMlp {
    ctx: Arc<GpuContext>,
    spec: MlpSpec,
    layout: ParamLayout,
    model: ModelBuffers,
    optimizer: Optimizer,
    /// Steps taken (the host's copy of `StepState::t`).
    step: u64,
    plans: HashMap<usize, BatchPlan>,
    data: Option<ResidentData>,
    timer: Option<Timer>,
    /// Which step each batch size runs, and the fused step's plans.
    fused: FusedState,
    /// Plans for one rank's shares of batches (data-parallel training, native only).
    #[cfg(not(target_arch = "wasm32"))]
    shares: grads::Shares,
}

impl GpuMlp {
    /// Uploads `params`; SGD until `set_optimizer`. Batch-dependent buffers are made on first use.
    pub fn new(ctx: Arc<GpuContext>, spec: MlpSpec, params: &Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        for l in 0..spec.layers() {
            weight_pieces(&ctx, &spec, l)?;
        }
        let layout = spec.param_layout();
        let model = ModelBuffers::new(&ctx, &spec, params)?;
        let optimizer = Optimizer::new(&ctx, &model, layout.len, OptimConfig::sgd(), None)?;
        Ok(Self {
            ctx,
            spec,
            layout,
            model,
            optimizer,
            step: 0,
            plans: HashMap::new(),
            data: None,
            timer: None,
            fused: FusedState::new(),
            #[cfg(not(target_arch = "wasm32"))]
            shares: grads::Shares::default(),
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Makes the plan of batches of `b` rows if there is none yet.
    fn ensure_plan(&mut self, b: usize) -> Result<()> {
        if self.plans.contains_key(&b) {
            return Ok(());
        }
        let mut plan = self.make_plan(b, b, &format!("making the buffers for batch size {b}"))?;
        if let Some(lr) = self.optimizer.lr() {
            plan.set_sgd_lr(&self.ctx, lr);
        }
        self.plans.insert(b, plan);
        Ok(())
    }

    /// A plan of `b` rows of a batch of `global` (`BatchPlan::new`), made while `what`.
    fn make_plan(&self, b: usize, global: usize, what: &str) -> Result<BatchPlan> {
        let m = &self.model;
        let model = plan::Model {
            ctx: &self.ctx,
            spec: &self.spec,
            layout: &self.layout,
            params: &m.params,
            grads: &m.grads,
            loss: &m.loss,
        };
        self.ctx.catch_oom(what, || BatchPlan::new(&model, b, global))
    }

    /// The plan of batches of `b` rows, which `ensure_plan` made.
    fn plan(&self, b: usize) -> &BatchPlan {
        plan_of(&self.plans, b)
    }

    /// Writes a batch X (B, I_0) (and Y (B, O_L)) into its plan's buffers.
    fn upload(&mut self, x: ArrayView2<f32>, y: Option<ArrayView2<f32>>) -> Result<()> {
        self.spec.check_batch(x.dim(), y.map(|y| y.dim()))?;
        self.ensure_plan(x.nrows())?;
        let bufs = &self.plan(x.nrows()).buffers;
        self.ctx.queue.write_buffer(&bufs.x, 0, bytemuck::cast_slice(&contiguous(x)));
        if let Some(y) = y {
            self.ctx.queue.write_buffer(&bufs.y, 0, bytemuck::cast_slice(&contiguous(y)));
        }
        Ok(())
    }

    /// Rewrites the learning rate of the optimizer's dispatches and of the fused SGD updates when it changes.
    fn set_lr(&mut self, lr: f32) {
        if self.optimizer.set_lr(&self.ctx, lr) {
            for plan in self.plans.values_mut() {
                plan.set_sgd_lr(&self.ctx, lr);
            }
            self.fused.set_lr(&self.ctx, lr);
        }
    }

    /// One training step on the uploaded batch of `b` rows, in one submit: forward, loss, backward,
    /// optimizer update (or the fused step, where it runs for `b`); its loss read back if `want_loss`.
    /// `keep_grads` asks for the gradients to be written (a trace reads them) where plain SGD would
    /// otherwise be fused.
    async fn encode_step(&mut self, b: usize, lr: f32, want_loss: bool, keep_grads: bool) -> Result<Option<f32>> {
        optim::check_steps(self.step, 1)?;
        self.set_lr(lr);
        self.step += 1;
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train step") });
        ops::encode_all(ctx, &mut enc, self.path_dispatches(b, keep_grads));
        if want_loss {
            self.model.copy_loss(&mut enc);
        }
        let idx = ctx.queue.submit([enc.finish()]);
        if !want_loss {
            ctx.check()?;
            return Ok(None);
        }
        ctx.wait(idx)?;
        self.model.read_loss(ctx).await.map(Some)
    }

    async fn read_matrix(&self, buf: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let v = buffer::read_async(&self.ctx, buf, 0, rows * cols).await?;
        Array2::from_shape_vec((rows, cols), v).map_err(|e| Error::Gpu(format!("read-back shape: {e}")))
    }

    async fn read_flat(&self, buf: &wgpu::Buffer) -> Result<Params<f32>> {
        Params::from_flat(&self.spec, &buffer::read_async(&self.ctx, buf, 0, self.layout.len).await?)
    }

    /// The gradients of the last step that wrote them: a traced step, or any step of an optimizer other
    /// than plain SGD (plain SGD is applied inside the backward pass, without writing them).
    pub fn gradients(&self) -> Result<Params<f32>> {
        wait::block_on("GpuMlp::gradients", self.read_flat(&self.model.grads))
    }

    /// Kernel launches in one step of `run_steps` on batches of `batch` (once it has run at that size): the
    /// gather of the batch, forward, loss, backward and optimizer; or the fused step's two or three.
    pub fn dispatches_per_step(&self, batch: usize) -> Option<usize> {
        if let Some(launches) = self.fused_launches(batch) {
            return Some(launches);
        }
        let plan = self.plans.get(&batch)?;
        let gathers = self.data.as_ref().and_then(|d| d.gathers_per_step(batch)).unwrap_or(0);
        Some(gathers + step_dispatches(plan, &self.optimizer, false).count())
    }

    /// Uploads a training set once; `run_steps` then trains on rows of it with no per-step upload.
    pub fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        self.data = None;
        self.fused.forget_resident();
        #[cfg(not(target_arch = "wasm32"))]
        self.shares.data_changed();
        self.data = Some(ResidentData::new(&self.ctx, x, y)?);
        Ok(())
    }

    /// Trains on the resident data: `rows` in batches of `batch` (the last may be smaller), all in one submit
    /// with no read-back. The losses accumulate on the GPU (`take_loss_sum`).
    pub fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        let n = self.data.as_ref().map(|d| d.rows).ok_or_else(backend::no_data)?;
        let batches = Batches::new(rows, batch, n)?;
        optim::check_steps(self.step, batches.len())?;
        if batches.is_empty() {
            return Ok(());
        }
        self.set_lr(lr);
        for (off, chunk) in batches.iter() {
            self.ensure_plan(chunk.len())?;
            self.ensure_fused_resident(chunk.len(), off)?;
        }
        let Self { ctx, plans, data, fused, .. } = self;
        let data = data.as_mut().ok_or_else(backend::no_data)?;
        for (off, chunk) in batches.iter().filter(|(_, chunk)| fused.plan(chunk.len()).is_none()) {
            data.prepare(ctx, plan_of(plans, chunk.len()), chunk.len(), off)?;
        }
        data.write_order(ctx, rows);
        let (ctx, data) = (&*self.ctx, self.data.as_ref().ok_or_else(backend::no_data)?);
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train steps") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("steps"), timestamp_writes: None });
            for (off, chunk) in batches.iter() {
                let b = chunk.len();
                if let Some(fused) = self.fused_resident_dispatches(b, off) {
                    fused?.iter().for_each(|d| d.encode(ctx, &mut pass));
                    continue;
                }
                let unfused = step_dispatches(self.plan(b), &self.optimizer, false);
                for d in data.gathers(b, off).iter().chain(unfused) {
                    d.encode(ctx, &mut pass);
                }
            }
        }
        ctx.queue.submit([enc.finish()]);
        self.step += batches.len() as u64;
        self.ctx.check()
    }
}

/// The plan of batches of `b` rows, which `GpuMlp::ensure_plan` made before.
fn plan_of(plans: &HashMap<usize, BatchPlan>, b: usize) -> &BatchPlan {
    plans.get(&b).unwrap_or_else(|| panic!("no plan for batch size {b}: ensure_plan makes it first"))
}

/// Every dispatch of one training step of `plan`: forward, loss, backward, optimizer. With plain SGD (and
/// the gradients not asked for) the backward pass updates the parameters itself, and of the optimizer
/// only `optim_prepare` runs (the step count and the divergence check).
fn step_dispatches<'a>(
    plan: &'a BatchPlan,
    optimizer: &'a Optimizer,
    keep_grads: bool,
) -> impl Iterator<Item = &'a Dispatch> {
    let fused = plan.fused_sgd.as_ref().filter(|_| !keep_grads && optimizer.fuses_sgd());
    let backward = fused.unwrap_or(&plan.backward);
    plan.forward.iter().chain(&plan.loss).chain(&backward.dispatches).chain(optimizer.dispatches(fused.is_some()))
}
