//! Builders of the optimizer step: its uniform, the step scalars kept on the GPU, the gradient-norm clip,
//! and the update in pieces that fit one storage binding.

use bytemuck::{Pod, Zeroable};

use super::{Binding, Dispatch, aligned_rows_per_binding, bind, bind_aligned, elementwise_groups, pieces, u32_of};
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::optim::{OptimConfig, OptimizerKind};

/// Uniform of the optimizers (`OptimParams` in `optim.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct OptimParams {
    /// Parameters in this piece.
    pub n: u32,
    /// This piece's index (its slot in the gradient norm's partial sums).
    pub piece: u32,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// Clip the gradient's norm to this (0: no clipping).
    pub max_grad_norm: f32,
    /// How many pieces the parameters are updated in.
    pub pieces: u32,
}

impl OptimParams {
    /// The uniform of `cfg` over `n` parameters at learning rate `lr`, clipping the gradient norm to
    /// `max_grad_norm` when given.
    pub fn new(cfg: &OptimConfig, n: usize, lr: f32, max_grad_norm: Option<f32>) -> Result<Self> {
        let mut p = Self {
            n: u32_of("parameter count", n)?,
            lr,
            weight_decay: cfg.weight_decay as f32,
            max_grad_norm: max_grad_norm.unwrap_or(0.0),
            pieces: 1,
            ..Self::default()
        };
        match cfg.kind {
            OptimizerKind::Sgd => {}
            OptimizerKind::Momentum { momentum } => p.momentum = momentum as f32,
            OptimizerKind::Adam { beta1, beta2, eps } => {
                p.beta1 = beta1 as f32;
                p.beta2 = beta2 as f32;
                p.eps = eps as f32;
                p.one_minus_beta1 = (1.0 - beta1) as f32;
                p.one_minus_beta2 = (1.0 - beta2) as f32;
            }
        }
        Ok(p)
    }
}

/// The state an optimizer update binds: momentum / first moment `m`, second moment `v` (P each, or spare
/// buffers where the rule keeps less), `scalars` = [t, bc1, bc2_sqrt, bc2, first bad step, clip] (6 values,
/// see `optim.wgsl`; start from `SCALARS_INIT`), and the `loss` buffer the step's loss is in.
pub struct OptimBuffers<'a> {
    pub m: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub scalars: &'a wgpu::Buffer,
    pub loss: &'a wgpu::Buffer,
}

/// The initial value of the optimizer's `scalars` buffer.
pub const SCALARS_INIT: [f32; 6] = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0];

/// The dispatches of one optimizer step over `n` parameters, in order: `optim_prepare` (advances t and the
/// bias corrections on the GPU, notes a non-finite loss), `grad_norm` per piece and `grad_norm_finish`
/// when clipping, and the update itself, which reads `grads` and updates `params`, `m`, `v`. Parameters
/// larger than one storage binding go in pieces that fit, one dispatch each.
#[allow(clippy::too_many_arguments)]
pub fn optimizer(
    ctx: &GpuContext,
    cfg: &OptimConfig,
    n: usize,
    lr: f32,
    max_grad_norm: Option<f32>,
    grads: &wgpu::Buffer,
    params: &wgpu::Buffer,
    state: OptimBuffers<'_>,
) -> Result<Vec<Dispatch>> {
    let kernel = match cfg.kind {
        OptimizerKind::Sgd => Kernel::Sgd,
        OptimizerKind::Momentum { .. } => Kernel::Momentum,
        OptimizerKind::Adam { .. } => Kernel::Adam,
    };
    let per = aligned_rows_per_binding(ctx, 1);
    if per == 0 {
        return Err(Error::DeviceLimit {
            what: "one aligned piece of the parameters".into(),
            limit: "max_storage_buffer_binding_size",
            requested: ctx.limits().min_storage_buffer_offset_alignment as u64,
            available: ctx.limits().max_storage_buffer_binding_size,
        });
    }
    let ranges = pieces(n, per);
    let partials = buffer::storage(ctx, "gradient norm partial sums", ranges.len())?;
    let (scalars, _) = bind(ctx, "optimizer scalars", state.scalars.into(), SCALARS_INIT.len())?;
    let (loss, _) = bind(ctx, "loss", state.loss.into(), 1)?;
    let (partials, _) = bind(ctx, "gradient norm partial sums", (&partials).into(), ranges.len())?;
    let keeps = cfg.state_vectors();
    let mut base = OptimParams::new(cfg, n, lr, max_grad_norm)?;
    base.pieces = u32_of("parameter pieces", ranges.len())?;
    let piece = |i: usize, r: &std::ops::Range<usize>| -> Result<(OptimParams, [Binding<'_>; 7])> {
        let len = r.len();
        let bufs = [
            bind_aligned(ctx, "gradients", (grads, r.start).into(), len)?,
            bind_aligned(ctx, "parameters", (params, r.start).into(), len)?,
            state_binding(ctx, state.m, r, keeps >= 1)?,
            state_binding(ctx, state.v, r, keeps >= 2)?,
            scalars,
            loss,
            partials,
        ];
        let p = OptimParams { n: u32_of("parameter count", len)?, piece: i as u32, ..base };
        Ok((p, bufs))
    };
    let (p0, b0) = piece(0, &ranges[0])?;
    let mut out = vec![Dispatch::new(ctx, Kernel::OptimPrepare, &p0, &b0, [1, 1, 1])];
    if max_grad_norm.is_some() {
        for (i, r) in ranges.iter().enumerate() {
            let (p, b) = piece(i, r)?;
            out.push(Dispatch::new(ctx, Kernel::GradNorm, &p, &b, [1, 1, 1]));
        }
        out.push(Dispatch::new(ctx, Kernel::GradNormFinish, &p0, &b0, [1, 1, 1]));
    }
    for (i, r) in ranges.iter().enumerate() {
        let (p, b) = piece(i, r)?;
        let g = elementwise_groups(ctx, kernel.entry_point(), r.len())?;
        out.push(Dispatch::new(ctx, kernel, &p, &b, g));
    }
    Ok(out)
}

/// Optimizer state over the parameter range `r`, or the whole 1-value spare where the rule keeps none.
fn state_binding<'a>(
    ctx: &GpuContext,
    b: &'a wgpu::Buffer,
    r: &std::ops::Range<usize>,
    used: bool,
) -> Result<Binding<'a>> {
    if used {
        bind_aligned(ctx, "optimizer state", (b, r.start).into(), r.len())
    } else {
        bind_aligned(ctx, "spare", b.into(), 1)
    }
}
