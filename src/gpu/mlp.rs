//! The GPU model: owns the parameter, gradient, optimizer-state and activation buffers and encodes whole
//! training steps.
//!
//! Parameters, gradients and optimizer state live in one flat buffer each (`MlpSpec::param_layout`).
//! Everything that depends on the batch size (activations, deltas, the dispatch lists) is a `BatchPlan`,
//! made the first time a batch size is seen and reused after that: a step only writes the batch, encodes
//! and submits.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};

use crate::backend::{Backend, check_state};
use crate::cpu::{Trace, check_batch};
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch, Epilogue, OptimParams, Strided};
use crate::model::{Loss, MlpSpec, ParamLayout, Params};
use crate::optim::{OptimConfig, OptimState, StepScalars};

/// Buffers and dispatches for one batch size.
struct BatchPlan {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    /// Per layer: Z_l, A_l, δ_l, each (B, O_l). (dL/dA_l buffers are only touched by kernels.)
    pre: Vec<wgpu::Buffer>,
    post: Vec<wgpu::Buffer>,
    delta: Vec<wgpu::Buffer>,
    _grad: Vec<wgpu::Buffer>,
    forward: Vec<Dispatch>,
    loss: Dispatch,
    backward: Vec<Dispatch>,
}

/// An MLP whose training runs entirely in WGSL kernels.
pub struct GpuMlp {
    ctx: Arc<GpuContext>,
    spec: MlpSpec,
    layout: ParamLayout,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    /// Optimizer state (momentum / Adam moments); a 1-element spare where the rule keeps none.
    state_m: wgpu::Buffer,
    state_v: wgpu::Buffer,
    /// [loss of the last step, running sum of loss·B].
    loss: wgpu::Buffer,
    loss_staging: wgpu::Buffer,
    scratch: wgpu::Buffer,
    optim: OptimConfig,
    step: u64,
    update: Dispatch,
    plans: HashMap<usize, BatchPlan>,
    timer: Option<Timer>,
}

impl GpuMlp {
    /// Uploads `params`; SGD until `set_optimizer`. Batch-dependent buffers are made on first use.
    pub fn new(ctx: Arc<GpuContext>, spec: MlpSpec, params: &Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        let layout = spec.param_layout();
        let params_buf = buffer::storage_init(&ctx, "parameters", &params.to_flat())?;
        let grads = buffer::storage(&ctx, "gradients", layout.len)?;
        let loss = buffer::storage_init(&ctx, "loss", &[0.0, 0.0])?;
        let loss_staging = buffer::staging(&ctx, "loss read-back", 2);
        let scratch = buffer::storage(&ctx, "scratch", 1)?;
        let state_m = buffer::storage(&ctx, "optimizer m", 1)?;
        let state_v = buffer::storage(&ctx, "optimizer v", 1)?;
        let optim = OptimConfig::sgd();
        let update = ops::optimizer(
            &ctx,
            &optim,
            layout.len,
            StepScalars::new(&optim, 0.0, 1),
            &grads,
            &params_buf,
            (&state_m, &state_v),
        )?;
        Ok(Self {
            ctx,
            spec,
            layout,
            params: params_buf,
            grads,
            state_m,
            state_v,
            loss,
            loss_staging,
            scratch,
            optim,
            step: 0,
            update,
            plans: HashMap::new(),
            timer: None,
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn ensure_plan(&mut self, batch: usize) -> Result<()> {
        if !self.plans.contains_key(&batch) {
            let plan = self.build_plan(batch)?;
            self.plans.insert(batch, plan);
        }
        Ok(())
    }

    fn plan(&self, batch: usize) -> Result<&BatchPlan> {
        self.plans.get(&batch).ok_or_else(|| Error::Gpu(format!("no buffers for batch size {batch}")))
    }

    fn build_plan(&self, b: usize) -> Result<BatchPlan> {
        let ctx = &*self.ctx;
        let spec = &self.spec;
        let n_layers = spec.layers();
        let last = n_layers - 1;
        let xent = spec.loss() == Loss::CrossEntropy;
        let x = buffer::storage(ctx, "input batch", b * spec.input_width())?;
        let y = buffer::storage(ctx, "target batch", b * spec.output_width())?;
        let (mut pre, mut post, mut grad, mut delta) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for l in 0..n_layers {
            let o = spec.layer_shape(l).1;
            pre.push(buffer::storage(ctx, &format!("Z{l}"), b * o)?);
            post.push(buffer::storage(ctx, &format!("A{l}"), b * o)?);
            grad.push(buffer::storage(ctx, &format!("dA{l}"), b * o)?);
            delta.push(buffer::storage(ctx, &format!("delta{l}"), b * o)?);
        }

        let mut forward = Vec::new();
        for l in 0..n_layers {
            let (i, o) = spec.layer_shape(l);
            let off = self.layout.layers[l];
            let input = if l == 0 { &x } else { &post[l - 1] };
            // Z = A_prev · W + b; A = f(Z)
            forward.push(ops::matmul(
                ctx,
                (b, o, i),
                Strided::rows(input, 0, i),
                Strided::rows(&self.params, off.w, o),
                Epilogue {
                    bias: Some((&self.params, off.b)),
                    pre: Some((&pre[l], 0)),
                    activation: spec.activations()[l],
                },
                (&post[l], 0),
                &self.scratch,
            )?);
        }
        let out_shape = (b, spec.output_width());
        if xent {
            // A_L = softmax(Z_L), overwriting the identity output of the product.
            forward.push(ops::softmax_rows(ctx, out_shape, &pre[last], &post[last])?);
        }

        let (loss, first) = match spec.loss() {
            Loss::Mse => (
                ops::mse_loss(ctx, out_shape, &post[last], &y, (&self.loss, 0), b as f32)?,
                ops::mse_grad(ctx, out_shape, &post[last], &y, &grad[last])?,
            ),
            // The fused gradient is δ_L itself.
            Loss::CrossEntropy => (
                ops::xent_loss(ctx, out_shape, &pre[last], &y, (&self.loss, 0), b as f32)?,
                ops::xent_grad(ctx, out_shape, &post[last], &y, &delta[last])?,
            ),
        };
        let mut backward = vec![first];
        for l in (0..n_layers).rev() {
            let (i, o) = spec.layer_shape(l);
            let off = self.layout.layers[l];
            let input = if l == 0 { &x } else { &post[l - 1] };
            if !(xent && l == last) {
                // δ = dA ⊙ f'(Z)
                let act = spec.activations()[l];
                backward.push(ops::activation_backward(ctx, act, b * o, &grad[l], &pre[l], &delta[l])?);
            }
            // dW = A_prevᵀ · δ
            backward.push(ops::matmul(
                ctx,
                (i, o, b),
                Strided::transposed(input, 0, i),
                Strided::rows(&delta[l], 0, o),
                Epilogue::none(),
                (&self.grads, off.w),
                &self.scratch,
            )?);
            // db = Σ_b δ_b
            backward.push(ops::bias_grad(ctx, (b, o), &delta[l], (&self.grads, off.b))?);
            // dA_prev = δ · Wᵀ
            if l > 0 {
                backward.push(ops::matmul(
                    ctx,
                    (b, i, o),
                    Strided::rows(&delta[l], 0, o),
                    Strided::transposed(&self.params, off.w, o),
                    Epilogue::none(),
                    (&grad[l - 1], 0),
                    &self.scratch,
                )?);
            }
        }
        Ok(BatchPlan { x, y, pre, post, delta, _grad: grad, forward, loss, backward })
    }

    fn upload(&mut self, x: ArrayView2<f32>, y: Option<ArrayView2<f32>>) -> Result<()> {
        check_batch(&self.spec, x.dim(), y.map(|y| y.dim()))?;
        let batch = x.nrows();
        self.ensure_plan(batch)?;
        let plan = self.plan(batch)?;
        self.ctx.queue.write_buffer(&plan.x, 0, bytemuck::cast_slice(&contiguous(x)));
        if let Some(y) = y {
            self.ctx.queue.write_buffer(&plan.y, 0, bytemuck::cast_slice(&contiguous(y)));
        }
        Ok(())
    }

    /// One training step in one submit: forward, loss, backward, optimizer update.
    fn encode_step(&mut self, batch: usize, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        self.step += 1;
        let s = StepScalars::new(&self.optim, lr as f64, self.step);
        self.update.set_params(&self.ctx, &OptimParams::new(&self.optim, self.layout.len, s)?);
        let ctx = &*self.ctx;
        let plan = self.plan(batch)?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train step") });
        let steps = plan.forward.iter().chain([&plan.loss]).chain(plan.backward.iter()).chain([&self.update]);
        ops::encode_all(ctx, &mut enc, steps);
        if want_loss {
            enc.copy_buffer_to_buffer(&self.loss, 0, &self.loss_staging, 0, 4);
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

    /// The gradients of the last step.
    pub fn gradients(&self) -> Result<Params<f32>> {
        self.read_flat(&self.grads)
    }

    fn rebuild_update(&mut self) -> Result<()> {
        let s = StepScalars::new(&self.optim, 0.0, self.step.max(1));
        self.update = ops::optimizer(
            &self.ctx,
            &self.optim,
            self.layout.len,
            s,
            &self.grads,
            &self.params,
            (&self.state_m, &self.state_v),
        )?;
        Ok(())
    }
}

/// Where the time of one GPU training step goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepTiming {
    /// Writing the batch into GPU buffers, until the copy is done.
    pub upload_ms: f64,
    /// The step's kernels: from timestamp queries where the adapter has them, else the wall time of the submit.
    pub kernel_ms: f64,
    /// True when `kernel_ms` comes from timestamp queries.
    pub kernel_timestamps: bool,
    /// Reading the loss back.
    pub readback_ms: f64,
    /// The whole step, wall clock.
    pub total_ms: f64,
}

/// Query set and buffers for timing a step, made on first use.
struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl GpuMlp {
    /// One training step, timed part by part (for `backprop bench`). Waits for the GPU between parts, so it
    /// is slower than `step`; the parts say where the time goes.
    pub fn timed_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<StepTiming> {
        use std::time::Instant;
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        self.upload(x, Some(y))?;
        let idx = self.ctx.queue.submit([]);
        self.ctx.wait(idx)?;
        let upload_ms = ms(start);

        let t1 = Instant::now();
        self.step += 1;
        let s = StepScalars::new(&self.optim, lr as f64, self.step);
        self.update.set_params(&self.ctx, &OptimParams::new(&self.optim, self.layout.len, s)?);
        if self.timer.is_none() && self.ctx.has_timestamps() {
            let ctx = &self.ctx;
            self.timer = Some(Timer {
                queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("step timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                staging: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps read-back"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            });
        }
        let ctx = &*self.ctx;
        let plan = self.plan(x.nrows())?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed step") });
        let writes = self.timer.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
            query_set: &t.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        });
        let steps = plan.forward.iter().chain([&plan.loss]).chain(plan.backward.iter()).chain([&self.update]);
        ops::encode_timed(ctx, &mut enc, steps, writes);
        if let Some(t) = &self.timer {
            enc.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, 16);
        }
        enc.copy_buffer_to_buffer(&self.loss, 0, &self.loss_staging, 0, 4);
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(idx)?;
        let wall_kernels = ms(t1);

        let t2 = Instant::now();
        buffer::read_staging(ctx, &self.loss_staging, 1)?;
        let readback_ms = ms(t2);

        let kernel = match &self.timer {
            Some(t) => {
                let slice = t.staging.slice(..);
                slice.map_async(wgpu::MapMode::Read, |_| {});
                ctx.wait_all()?;
                let ticks: Vec<u64> = {
                    let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
                    bytemuck::cast_slice::<u8, u64>(&view).to_vec()
                };
                t.staging.unmap();
                let period = ctx.queue.get_timestamp_period() as f64;
                match ticks.as_slice() {
                    [a, b] if b > a => Some((b - a) as f64 * period / 1e6),
                    _ => None,
                }
            }
            None => None,
        };
        Ok(StepTiming {
            upload_ms,
            kernel_ms: kernel.unwrap_or(wall_kernels),
            kernel_timestamps: kernel.is_some(),
            readback_ms,
            total_ms: ms(start),
        })
    }
}

fn contiguous(a: ArrayView2<f32>) -> Vec<f32> {
    a.iter().copied().collect()
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
        let n = self.layout.len;
        let k = cfg.state_vectors();
        let zeros = vec![0.0f32; n];
        self.state_m = buffer::storage_init(&self.ctx, "optimizer m", if k >= 1 { &zeros } else { &[0.0] })?;
        self.state_v = buffer::storage_init(&self.ctx, "optimizer v", if k >= 2 { &zeros } else { &[0.0] })?;
        self.optim = cfg;
        self.step = 0;
        self.rebuild_update()
    }

    fn optimizer(&self) -> OptimConfig {
        self.optim
    }

    fn optimizer_state(&mut self) -> Result<OptimState> {
        let k = self.optim.state_vectors();
        let n = self.layout.len;
        let m = if k >= 1 { buffer::read(&self.ctx, &self.state_m, 0, n)? } else { Vec::new() };
        let v = if k >= 2 { buffer::read(&self.ctx, &self.state_v, 0, n)? } else { Vec::new() };
        Ok(OptimState { m, v, step: self.step })
    }

    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        check_state(&self.optim, self.layout.len, s)?;
        if !s.m.is_empty() {
            self.ctx.queue.write_buffer(&self.state_m, 0, bytemuck::cast_slice(&s.m));
        }
        if !s.v.is_empty() {
            self.ctx.queue.write_buffer(&self.state_v, 0, bytemuck::cast_slice(&s.v));
        }
        self.step = s.step;
        Ok(())
    }

    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        self.upload(x, Some(y))?;
        self.encode_step(x.nrows(), lr, want_loss)
    }

    fn take_loss_sum(&mut self) -> Result<f64> {
        let v = buffer::read(&self.ctx, &self.loss, 1, 1)?;
        self.ctx.queue.write_buffer(&self.loss, 4, bytemuck::cast_slice(&[0.0f32]));
        Ok(v.first().copied().unwrap_or(f32::NAN) as f64)
    }

    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        let loss = self.step(x, y, lr, true)?.unwrap_or(f32::NAN);
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
