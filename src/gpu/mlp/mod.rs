//! The GPU model: owns the parameter, gradient, optimizer-state and activation buffers and encodes whole
//! training steps.
//!
//! Parameters, gradients and optimizer state live in one flat buffer each (`MlpSpec::param_layout`).
//! Everything that depends on the batch size (activations, deltas, the dispatch lists) is a `BatchPlan`,
//! made the first time a batch size is seen and reused after that: a step only writes the batch, encodes
//! and submits.
//!
//! Work larger than one storage binding is split (see DESIGN.md): a batch into pieces of rows, a weight
//! matrix into pieces of its rows, the optimizer update and a resident data set into pieces.

mod plan;
mod timing;

use plan::{BatchPlan, weight_pieces};
pub use timing::StepTiming;
use timing::Timer;

use std::collections::HashMap;
use std::mem::offset_of;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};

use crate::backend::{self, Backend, Batches};
use crate::cpu::Trace;
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch};
use crate::gpu::structs::{LossTotals, OptimParams, StepState};
use crate::model::{MlpSpec, ParamLayout, Params};
use crate::optim::{self, OptimConfig, OptimState, StepScalars};

/// An MLP whose training runs entirely in WGSL kernels.
pub struct GpuMlp {
    ctx: Arc<GpuContext>,
    spec: MlpSpec,
    layout: ParamLayout,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    /// Optimizer state (momentum / Adam moments), where the rule keeps them.
    state_m: Option<wgpu::Buffer>,
    state_v: Option<wgpu::Buffer>,
    /// `LossTotals`: the loss of the last step and the running sum of loss·B.
    loss: wgpu::Buffer,
    loss_staging: wgpu::Buffer,
    /// `StepState`: t, Adam's bias corrections, the first bad step; advanced on the GPU by `optim_prepare`.
    step_state: wgpu::Buffer,
    optim: OptimConfig,
    /// Steps taken (the host's copy of t).
    step: u64,
    lr: Option<f32>,
    /// `optim_prepare`, `grad_norm` when clipping, and the update.
    update: Vec<Dispatch>,
    max_grad_norm: Option<f32>,
    plans: HashMap<usize, BatchPlan>,
    timer: Option<Timer>,
    data: Option<ResidentData>,
}

/// A training set uploaded once: X (N, I), Y (N, O), and the row order of the current group of steps.
struct ResidentData {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    rows: usize,
    order: wgpu::Buffer,
    /// Gathers keyed by (batch rows, offset into `order`): X rows, then Y rows, into that batch's plan
    /// (one dispatch per piece of the batch and of the data set, where they exceed a storage binding).
    gathers: HashMap<(usize, usize), Vec<Dispatch>>,
}

impl GpuMlp {
    /// Uploads `params`; SGD until `set_optimizer`. Batch-dependent buffers are made on first use.
    pub fn new(ctx: Arc<GpuContext>, spec: MlpSpec, params: &Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        for l in 0..spec.layers() {
            weight_pieces(&ctx, &spec, l)?;
        }
        let layout = spec.param_layout();
        let params_buf = buffer::storage_init(&ctx, "parameters", &params.to_flat())?;
        let grads = buffer::storage(&ctx, "gradients", layout.len)?;
        let loss = buffer::storage_struct(&ctx, "loss totals", &LossTotals::default())?;
        let loss_staging = buffer::staging(&ctx, "loss read-back", std::mem::size_of::<EpochStats>() as u64);
        let step_state = buffer::storage_struct(&ctx, "optimizer step state", &StepState::START)?;
        let optim = OptimConfig::sgd();
        let state = ops::OptimBuffers { m: None, v: None, step: &step_state, loss: &loss };
        let update = ops::optimizer(&ctx, &optim, layout.len, 0.0, None, &grads, &params_buf, state)?;
        Ok(Self {
            ctx,
            spec,
            layout,
            params: params_buf,
            grads,
            state_m: None,
            state_v: None,
            loss,
            loss_staging,
            step_state,
            optim,
            step: 0,
            lr: None,
            update,
            max_grad_norm: None,
            plans: HashMap::new(),
            timer: None,
            data: None,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn ensure_plan(&mut self, batch: usize) -> Result<()> {
        if !self.plans.contains_key(&batch) {
            let what = format!("making the buffers for batch size {batch}");
            let mut plan = self.ctx.catch_oom(&what, || self.build_plan(batch))?;
            if let Some(lr) = self.lr {
                plan.set_sgd_lr(&self.ctx, lr);
            }
            self.plans.insert(batch, plan);
        }
        Ok(())
    }

    fn plan(&self, batch: usize) -> Result<&BatchPlan> {
        self.plans.get(&batch).ok_or_else(|| Error::Gpu(format!("no buffers for batch size {batch}")))
    }

    fn upload(&mut self, x: ArrayView2<f32>, y: Option<ArrayView2<f32>>) -> Result<()> {
        self.spec.check_batch(x.dim(), y.map(|y| y.dim()))?;
        let batch = x.nrows();
        self.ensure_plan(batch)?;
        let plan = self.plan(batch)?;
        self.ctx.queue.write_buffer(&plan.x, 0, bytemuck::cast_slice(&contiguous(x)));
        if let Some(y) = y {
            self.ctx.queue.write_buffer(&plan.y, 0, bytemuck::cast_slice(&contiguous(y)));
        }

        Ok(())
    }

    /// One training step in one submit: forward, loss, backward, optimizer update. `keep_grads` asks for
    /// the gradients to be written (a trace reads them) where plain SGD would otherwise be fused.
    fn encode_step(&mut self, batch: usize, lr: f32, want_loss: bool, keep_grads: bool) -> Result<Option<f32>> {
        optim::check_steps(self.step, 1)?;
        self.set_lr(lr)?;
        self.step += 1;
        let ctx = &*self.ctx;
        let plan = self.plan(batch)?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train step") });
        ops::encode_all(ctx, &mut enc, self.step_dispatches(plan, keep_grads));
        if want_loss {
            enc.copy_buffer_to_buffer(&self.loss, offset_of!(LossTotals, last) as u64, &self.loss_staging, 0, 4);
        }
        let idx = ctx.queue.submit([enc.finish()]);
        if want_loss {
            ctx.wait(idx)?;
            let v = buffer::read_staging(ctx, &self.loss_staging, 1)?;
            Ok(v.first().copied())
        } else {
            ctx.check()?;
            Ok(None)
        }
    }

    fn read_matrix(&self, buf: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let v = buffer::read(&self.ctx, buf, 0, rows * cols)?;
        Array2::from_shape_vec((rows, cols), v).map_err(|e| Error::Gpu(format!("read-back shape: {e}")))
    }

    fn read_flat(&self, buf: &wgpu::Buffer) -> Result<Params<f32>> {
        let v = buffer::read(&self.ctx, buf, 0, self.layout.len)?;
        Params::from_flat(&self.spec, &v)
    }

    /// The gradients of the last step that wrote them: a traced step, or any step of an optimizer other
    /// than plain SGD (plain SGD is applied inside the backward pass, without writing them).
    pub fn gradients(&self) -> Result<Params<f32>> {
        self.read_flat(&self.grads)
    }

    fn rebuild_update(&mut self) -> Result<()> {
        let state = ops::OptimBuffers {
            m: self.state_m.as_ref(),
            v: self.state_v.as_ref(),
            step: &self.step_state,
            loss: &self.loss,
        };
        let (n, clip) = (self.layout.len, self.max_grad_norm);
        self.update = ops::optimizer(&self.ctx, &self.optim, n, 0.0, clip, &self.grads, &self.params, state)?;
        self.lr = None;
        Ok(())
    }

    /// Rewrites the optimizer's uniforms, and those of the fused SGD updates, when the learning rate changes
    /// (once per epoch at most).
    fn set_lr(&mut self, lr: f32) -> Result<()> {
        if self.lr != Some(lr) {
            for d in &mut self.update {
                d.update_params::<OptimParams>(&self.ctx, |p| p.lr = lr);
            }
            for plan in self.plans.values_mut() {
                plan.set_sgd_lr(&self.ctx, lr);
            }
            self.lr = Some(lr);
        }
        Ok(())
    }

    /// Every dispatch of one training step on a plan's batch: forward, loss, backward, optimizer. With plain
    /// SGD (and the gradients not asked for) the backward pass updates the parameters itself, and of the
    /// optimizer only `optim_prepare` runs (the step count and the divergence check).
    fn step_dispatches<'a>(&'a self, plan: &'a BatchPlan, keep_grads: bool) -> impl Iterator<Item = &'a Dispatch> {
        let fused =
            plan.backward_sgd.as_ref().filter(|_| !keep_grads && backend::fuses_sgd(&self.optim, self.max_grad_norm));
        let (backward, update) = match fused {
            Some(list) => (list.iter(), self.update[..1].iter()),
            None => (plan.backward.iter(), self.update.iter()),
        };
        plan.forward.iter().chain(plan.loss.iter()).chain(backward).chain(update)
    }

    /// Kernel launches in one step of `run_steps` on batches of `batch` (once it has run at that size): the
    /// gather of the batch, forward, loss, backward and optimizer.
    pub fn dispatches_per_step(&self, batch: usize) -> Option<usize> {
        let plan = self.plans.get(&batch)?;
        let gathers = self.data.as_ref().and_then(|d| d.gathers.get(&(batch, 0))).map_or(0, Vec::len);
        Some(gathers + self.step_dispatches(plan, false).count())
    }

    /// Uploads a training set once; `run_steps` then trains on rows of it with no per-step upload.
    pub fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        let ctx = &*self.ctx;
        self.data = Some(ResidentData {
            x: buffer::storage_init(ctx, "training inputs", &contiguous(x))?,
            y: buffer::storage_init(ctx, "training targets", &contiguous(y))?,
            rows: x.nrows(),
            order: buffer::storage(ctx, "row order", x.nrows())?,
            gathers: HashMap::new(),
        });
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
        self.set_lr(lr)?;
        let chunks: Vec<(usize, usize)> = batches.iter().map(|(off, rows)| (off, rows.len())).collect();
        for &(off, b) in &chunks {
            self.ensure_plan(b)?;
            let missing = self.data.as_ref().is_some_and(|d| !d.gathers.contains_key(&(b, off)));
            if missing {
                let (plan, data) =
                    (self.plan(b)?, self.data.as_ref().ok_or_else(|| Error::Gpu("data missing".into()))?);
                let (i, o) = (self.spec.input_width(), self.spec.output_width());
                let mut g = Vec::new();
                for rows in ops::pieces(b, plan.piece_rows) {
                    let (r0, order) = (rows.start, (&data.order, off + rows.start));
                    let shape = |w: usize| (rows.len(), w);
                    g.extend(ops::gather_rows(&self.ctx, shape(i), (&data.x, data.rows), order, (&plan.x, r0 * i))?);
                    g.extend(ops::gather_rows(&self.ctx, shape(o), (&data.y, data.rows), order, (&plan.y, r0 * o))?);
                }
                if let Some(d) = self.data.as_mut() {
                    d.gathers.insert((b, off), g);
                }
            }
        }
        let data = self.data.as_ref().ok_or_else(|| Error::Gpu("data missing".into()))?;
        let order: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        self.ctx.queue.write_buffer(&data.order, 0, bytemuck::cast_slice(&order));
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train steps") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("steps"), timestamp_writes: None });
            for &(off, b) in &chunks {
                let plan = self.plan(b)?;
                let gathers = data.gathers.get(&(b, off)).ok_or_else(|| Error::Gpu("gather missing".into()))?;
                for d in gathers.iter().chain(self.step_dispatches(plan, false)) {
                    d.encode(ctx, &mut pass);
                }
            }
        }
        ctx.queue.submit([enc.finish()]);
        self.step += chunks.len() as u64;
        ctx.check()
    }
}

/// What `take_epoch_stats` reads back in one go.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EpochStats {
    loss_sum: f32,
    first_bad_step: u32,
}

impl GpuMlp {
    /// Sets the running loss sum (`LossTotals::sum`) back to 0.
    fn reset_loss_sum(&self) {
        self.ctx.queue.write_buffer(&self.loss, offset_of!(LossTotals, sum) as u64, bytemuck::bytes_of(&0.0f32));
    }
}

/// The values of `a` in row-major order: borrowed where they already are, copied otherwise.
fn contiguous<'a>(a: ArrayView2<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match a.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

impl Backend for GpuMlp {
    fn name(&self) -> String {
        format!("gpu ({}, {})", self.ctx.adapter().name, self.ctx.adapter().backend)
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.read_flat(&self.params)
    }

    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.spec)?;
        self.ctx.queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&p.to_flat()));
        Ok(())
    }

    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()> {
        cfg.validate()?;
        let (n, k) = (self.layout.len, cfg.state_vectors());
        // New buffers start zeroed: no host copy of P zeros.
        self.state_m = if k >= 1 { Some(buffer::storage(&self.ctx, "optimizer m", n)?) } else { None };
        self.state_v = if k >= 2 { Some(buffer::storage(&self.ctx, "optimizer v", n)?) } else { None };
        self.optim = cfg;
        self.step = 0;
        self.ctx.queue.write_buffer(&self.step_state, 0, bytemuck::bytes_of(&StepState::START));
        self.rebuild_update()
    }

    fn optimizer(&self) -> OptimConfig {
        self.optim
    }

    fn optimizer_state(&mut self) -> Result<OptimState> {
        let n = self.layout.len;
        let read = |b: &Option<wgpu::Buffer>| b.as_ref().map_or(Ok(Vec::new()), |b| buffer::read(&self.ctx, b, 0, n));
        Ok(OptimState { m: read(&self.state_m)?, v: read(&self.state_v)?, step: self.step })
    }

    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        s.check(&self.optim, self.layout.len)?;
        optim::check_steps(s.step, 0)?;
        for (buf, values) in [(&self.state_m, &s.m), (&self.state_v, &s.v)] {
            if let Some(buf) = buf {
                self.ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(values));
            }
        }
        self.step = s.step;
        let t = u32::try_from(s.step).map_err(|_| Error::Invalid(format!("step count {} is too large", s.step)))?;
        let sc = StepScalars::new(&self.optim, 0.0, s.step);
        let bc2 = sc.bias_correction2_sqrt * sc.bias_correction2_sqrt;
        let state = StepState {
            t,
            first_bad_step: 0,
            bias_correction1: sc.bias_correction1 as f32,
            bias_correction2: bc2 as f32,
            bias_correction2_sqrt: sc.bias_correction2_sqrt as f32,
            clip: 1.0,
        };
        self.ctx.queue.write_buffer(&self.step_state, 0, bytemuck::bytes_of(&state));
        Ok(())
    }

    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        self.upload(x, Some(y))?;
        self.encode_step(x.nrows(), lr, want_loss, false)
    }

    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        GpuMlp::set_data(self, x, y)
    }

    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        GpuMlp::run_steps(self, rows, batch, lr)
    }

    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        backend::check_clip(max_norm)?;
        self.max_grad_norm = max_norm;
        self.rebuild_update()
    }

    fn grad_clip(&self) -> Option<f32> {
        self.max_grad_norm
    }

    fn diverged_at(&mut self) -> Result<Option<u64>> {
        let bad: u32 = buffer::read_struct(&self.ctx, &self.step_state, offset_of!(StepState, first_bad_step) as u64)?;
        Ok((bad != 0).then_some(bad as u64))
    }

    fn take_epoch_stats(&mut self) -> Result<(f64, Option<u64>)> {
        // The loss sum and the first bad step into one staging buffer: one wait, one mapping.
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("epoch stats") });
        let (sum, bad) = (offset_of!(LossTotals, sum) as u64, offset_of!(StepState, first_bad_step) as u64);
        enc.copy_buffer_to_buffer(&self.loss, sum, &self.loss_staging, offset_of!(EpochStats, loss_sum) as u64, 4);
        enc.copy_buffer_to_buffer(
            &self.step_state,
            bad,
            &self.loss_staging,
            offset_of!(EpochStats, first_bad_step) as u64,
            4,
        );
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(idx)?;
        let bytes = buffer::read_staging_bytes(ctx, &self.loss_staging, std::mem::size_of::<EpochStats>() as u64)?;
        let stats: EpochStats = bytemuck::pod_read_unaligned(&bytes);
        self.reset_loss_sum();
        Ok((stats.loss_sum as f64, (stats.first_bad_step != 0).then_some(stats.first_bad_step as u64)))
    }

    fn take_loss_sum(&mut self) -> Result<f64> {
        let sum: f32 = buffer::read_struct(&self.ctx, &self.loss, offset_of!(LossTotals, sum) as u64)?;
        self.reset_loss_sum();
        Ok(sum as f64)
    }

    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        self.upload(x, Some(y))?;
        let loss = self.encode_step(x.nrows(), lr, true, true)?.unwrap_or(f32::NAN);
        let b = x.nrows();
        let plan = self.plan(b)?;
        let (mut pre, mut post, mut delta) = (Vec::new(), Vec::new(), Vec::new());
        for l in 0..self.spec.layers() {
            let o = self.spec.layer_shape(l).1;
            pre.push(self.read_matrix(&plan.pre[l], b, o)?);
            post.push(self.read_matrix(&plan.post[l], b, o)?);
            delta.push(self.read_matrix(&plan.delta[l], b, o)?);
        }
        let grads = self.gradients()?;
        Ok(Trace { pre, post, loss, delta, grads, input_grad: None })
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.upload(x, None)?;
        let b = x.nrows();
        let ctx = &*self.ctx;
        let plan = self.plan(b)?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("predict") });
        ops::encode_all(ctx, &mut enc, plan.forward.iter());
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(idx)?;
        let last = self.spec.layers() - 1;
        self.read_matrix(&plan.post[last], b, self.spec.output_width())
    }
}
