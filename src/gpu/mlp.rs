//! The GPU model: owns the parameter, gradient and activation buffers and encodes whole training steps.
//!
//! Parameters and gradients live in one flat buffer each (`MlpSpec::param_layout`). Everything that
//! depends on the batch size (activations, deltas, the dispatch lists) is a `BatchPlan`, made the first
//! time a batch size is seen and reused after that: a step only writes the batch, encodes and submits.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};

use crate::backend::Backend;
use crate::cpu::{Trace, check_batch};
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch, Epilogue, SgdParams, Strided};
use crate::model::{Loss, MlpSpec, ParamLayout, Params};

/// Buffers and dispatches for one batch size.
struct BatchPlan {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
    /// Per layer: Z_l, A_l, dL/dA_l, δ_l, each (B, O_l). dL/dA_l is only read by the kernels.
    pre: Vec<wgpu::Buffer>,
    post: Vec<wgpu::Buffer>,
    _grad: Vec<wgpu::Buffer>,
    delta: Vec<wgpu::Buffer>,
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
    loss: wgpu::Buffer,
    loss_staging: wgpu::Buffer,
    scratch: wgpu::Buffer,
    update: Dispatch,
    lr: Option<f32>,
    plans: HashMap<usize, BatchPlan>,
}

impl GpuMlp {
    /// Uploads `params` and builds the update; batch-dependent buffers are made on first use.
    pub fn new(ctx: Arc<GpuContext>, spec: MlpSpec, params: &Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        let layout = spec.param_layout();
        let params_buf = buffer::storage_init(&ctx, "parameters", &params.to_flat())?;
        let grads = buffer::storage(&ctx, "gradients", layout.len)?;
        let loss = buffer::storage(&ctx, "loss", 1)?;
        let loss_staging = buffer::staging(&ctx, "loss read-back", 1);
        let scratch = buffer::storage(&ctx, "scratch", 1)?;
        let update = ops::sgd(&ctx, layout.len, 0.0, &grads, &params_buf)?;
        Ok(Self {
            ctx,
            spec,
            layout,
            params: params_buf,
            grads,
            loss,
            loss_staging,
            scratch,
            update,
            lr: None,
            plans: HashMap::new(),
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn plan(&mut self, batch: usize) -> Result<&BatchPlan> {
        if !self.plans.contains_key(&batch) {
            let plan = self.build_plan(batch)?;
            self.plans.insert(batch, plan);
        }
        self.plans
            .get(&batch)
            .ok_or_else(|| Error::Gpu("batch plan missing".into()))
    }

    fn build_plan(&self, batch: usize) -> Result<BatchPlan> {
        let ctx = &*self.ctx;
        let spec = &self.spec;
        let n_layers = spec.layers();
        let b = batch;
        let x = buffer::storage(ctx, "input batch", b * spec.input_width())?;
        let y = buffer::storage(ctx, "target batch", b * spec.output_width())?;
        let mut pre = Vec::new();
        let mut post = Vec::new();
        let mut grad = Vec::new();
        let mut delta = Vec::new();
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

        let last = n_layers - 1;
        let n_out = b * spec.output_width();
        let loss = match spec.loss() {
            Loss::Mse => ops::mse_loss(ctx, n_out, &post[last], &y, (&self.loss, 0))?,
        };
        let mut backward = vec![match spec.loss() {
            Loss::Mse => ops::mse_grad(ctx, n_out, &post[last], &y, &grad[last])?,
        }];
        for l in (0..n_layers).rev() {
            let (i, o) = spec.layer_shape(l);
            let off = self.layout.layers[l];
            let input = if l == 0 { &x } else { &post[l - 1] };
            // δ = dA ⊙ f'(Z)
            backward.push(ops::activation_backward(
                ctx,
                spec.activations()[l],
                b * o,
                &grad[l],
                &pre[l],
                &delta[l],
            )?);
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
            backward.push(ops::bias_grad(
                ctx,
                (b, o),
                &delta[l],
                (&self.grads, off.b),
            )?);
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
        Ok(BatchPlan {
            x,
            y,
            pre,
            post,
            _grad: grad,
            delta,
            forward,
            loss,
            backward,
        })
    }

    fn upload(&mut self, x: ArrayView2<f32>, y: Option<ArrayView2<f32>>) -> Result<()> {
        check_batch(&self.spec, x.dim(), y.map(|y| y.dim()))?;
        let batch = x.nrows();
        let ctx = self.ctx.clone();
        let plan = self.plan(batch)?;
        ctx.queue
            .write_buffer(&plan.x, 0, bytemuck::cast_slice(&contiguous(x)));
        if let Some(y) = y {
            ctx.queue
                .write_buffer(&plan.y, 0, bytemuck::cast_slice(&contiguous(y)));
        }
        Ok(())
    }

    fn set_lr(&mut self, lr: f32) {
        if self.lr != Some(lr) {
            let n = self.layout.len as u32;
            self.update.set_params(
                &self.ctx,
                &SgdParams {
                    n,
                    lr,
                    _pad: [0; 2],
                },
            );
            self.lr = Some(lr);
        }
    }

    /// One training step in one submit: forward, (loss), backward, SGD update.
    fn encode_step(&mut self, batch: usize, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        self.set_lr(lr);
        let ctx = self.ctx.clone();
        let plan = self
            .plans
            .get(&batch)
            .ok_or_else(|| Error::Gpu("batch plan missing".into()))?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("train step"),
            });
        let loss = want_loss.then_some(&plan.loss);
        ops::encode_all(
            &ctx,
            &mut enc,
            plan.forward
                .iter()
                .chain(loss)
                .chain(plan.backward.iter())
                .chain(std::iter::once(&self.update)),
        );
        if want_loss {
            enc.copy_buffer_to_buffer(&self.loss, 0, &self.loss_staging, 0, 4);
        }
        let idx = ctx.queue.submit([enc.finish()]);
        if want_loss {
            ctx.wait(idx)?;
            let v = buffer::read_staging(&ctx, &self.loss_staging, 1)?;
            Ok(v.first().copied())
        } else {
            ctx.check()?;
            Ok(None)
        }
    }

    fn read_matrix(&self, buf: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Array2<f32>> {
        let v = buffer::read(&self.ctx, buf, 0, rows * cols)?;
        Array2::from_shape_vec((rows, cols), v)
            .map_err(|e| Error::Gpu(format!("read-back shape: {e}")))
    }

    fn read_flat(&self, buf: &wgpu::Buffer) -> Result<Params<f32>> {
        let v = buffer::read(&self.ctx, buf, 0, self.layout.len)?;
        Params::from_flat(&self.spec, &v)
    }

    /// The gradients of the last step.
    pub fn gradients(&self) -> Result<Params<f32>> {
        self.read_flat(&self.grads)
    }
}

fn contiguous(a: ArrayView2<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

impl Backend for GpuMlp {
    fn name(&self) -> String {
        format!(
            "gpu ({}, {})",
            self.ctx.adapter().name,
            self.ctx.adapter().backend
        )
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn params(&mut self) -> Result<Params<f32>> {
        self.read_flat(&self.params)
    }

    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.spec)?;
        self.ctx
            .queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&p.to_flat()));
        Ok(())
    }

    fn step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
        want_loss: bool,
    ) -> Result<Option<f32>> {
        self.upload(x, Some(y))?;
        self.encode_step(x.nrows(), lr, want_loss)
    }

    fn traced_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
    ) -> Result<Trace<f32>> {
        let loss = self.step(x, y, lr, true)?.unwrap_or(f32::NAN);
        let b = x.nrows();
        let plan = self
            .plans
            .get(&b)
            .ok_or_else(|| Error::Gpu("batch plan missing".into()))?;
        let mut pre = Vec::new();
        let mut post = Vec::new();
        let mut delta = Vec::new();
        for l in 0..self.spec.layers() {
            let o = self.spec.layer_shape(l).1;
            pre.push(self.read_matrix(&plan.pre[l], b, o)?);
            post.push(self.read_matrix(&plan.post[l], b, o)?);
            delta.push(self.read_matrix(&plan.delta[l], b, o)?);
        }
        let grads = self.gradients()?;
        Ok(Trace {
            pre,
            post,
            loss,
            delta,
            grads,
            input_grad: None,
        })
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.upload(x, None)?;
        let b = x.nrows();
        let ctx = self.ctx.clone();
        let plan = self
            .plans
            .get(&b)
            .ok_or_else(|| Error::Gpu("batch plan missing".into()))?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("predict"),
            });
        ops::encode_all(&ctx, &mut enc, plan.forward.iter());
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(idx)?;
        let last = self.spec.layers() - 1;
        self.read_matrix(&plan.post[last], b, self.spec.output_width())
    }
}
