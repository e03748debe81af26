//! Builders of the optimizer step: its uniform, the step state kept on the GPU, the gradient-norm clip,
//! and the update in pieces that fit one storage binding.

use super::{Binding, Dispatch, F32, aligned_rows_per_binding, bind_aligned, elementwise_groups, pieces, u32_of};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::gpu::structs::{LossTotals, OptimParams, StepState};
use crate::optim::{OptimConfig, OptimizerKind};

/// The optimizers' uniform for `cfg` over `n` parameters at learning rate `lr`, clipping the gradient norm
/// to `max_grad_norm` when given.
pub(crate) fn optim_params(cfg: &OptimConfig, n: usize, lr: f32, max_grad_norm: Option<f32>) -> Result<OptimParams> {
    let mut p = OptimParams {
        n: u32_of("parameter count", n)?,
        lr,
        weight_decay: cfg.weight_decay as f32,
        max_grad_norm: max_grad_norm.unwrap_or(0.0),
        pieces: 1,
        ..OptimParams::default()
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

/// The state an optimizer update binds: the momentum buffer or first moment `m` and the second moment `v`
/// (P values each, where the rule keeps them), the `StepState` (start from `StepState::START`), the
/// `LossTotals` the step's loss is in, and the gradient norm's partial sums (`update_pieces` values).
pub struct OptimBuffers<'a> {
    pub m: Option<&'a wgpu::Buffer>,
    pub v: Option<&'a wgpu::Buffer>,
    pub step: &'a wgpu::Buffer,
    pub loss: &'a wgpu::Buffer,
    pub partials: &'a wgpu::Buffer,
}

/// The pieces an update of `n` parameters is split into, one storage binding each (one for most models).
pub fn update_pieces(ctx: &GpuContext, n: usize) -> Result<usize> {
    match aligned_rows_per_binding(ctx, 1) {
        0 => Err(Error::DeviceLimit {
            what: "one aligned piece of the parameters".into(),
            limit: "max_storage_buffer_binding_size",
            requested: ctx.limits().min_storage_buffer_offset_alignment as u64,
            available: ctx.limits().max_storage_buffer_binding_size,
        }),
        per => Ok(pieces(n, per).len()),
    }
}

/// The dispatches of one optimizer step over `n` parameters, in order: `optim_prepare` (advances t and the
/// bias corrections on the GPU, notes a non-finite loss), `grad_norm` per piece and `grad_norm_finish`
/// when clipping, and the update itself, which reads `grads` and updates `params`, `m`, `v`. Parameters
/// larger than one storage binding go in pieces that fit, one dispatch each.
#[allow(clippy::too_many_arguments)]
pub fn optimizer<'a>(
    ctx: &GpuContext,
    cfg: &OptimConfig,
    n: usize,
    lr: f32,
    max_grad_norm: Option<f32>,
    grads: &'a wgpu::Buffer,
    params: &'a wgpu::Buffer,
    state: OptimBuffers<'a>,
) -> Result<Vec<Dispatch>> {
    let rule = match cfg.kind {
        OptimizerKind::Sgd => Kernel::Sgd,
        OptimizerKind::Momentum { .. } => Kernel::Momentum,
        OptimizerKind::Adam { .. } => Kernel::Adam,
    };
    update_pieces(ctx, n)?;
    let ranges = pieces(n, aligned_rows_per_binding(ctx, 1));
    let step = bind_aligned(ctx, "optimizer step state", state.step.into(), values_of::<StepState>())?;
    let loss = bind_aligned(ctx, "loss totals", state.loss.into(), values_of::<LossTotals>())?;
    let partials = bind_aligned(ctx, "gradient norm partial sums", state.partials.into(), ranges.len())?;
    let mut base = optim_params(cfg, n, lr, max_grad_norm)?;
    base.pieces = u32_of("parameter pieces", ranges.len())?;
    // `kernel` over piece `i` of the parameters, binding what it uses of the buffers above.
    let dispatch = |kernel: Kernel, i: usize, groups: Option<[u32; 3]>| -> Result<Dispatch> {
        let r = &ranges[i];
        let vector = |what: &str, b: Option<&'a wgpu::Buffer>| -> Result<Binding<'a>> {
            let b = b.ok_or_else(|| Error::Invalid(format!("{} keeps {what}, and none was given", cfg.kind.name())))?;
            bind_aligned(ctx, what, (b, r.start).into(), r.len())
        };
        let bindings = kernel.bindings()[1..]
            .iter()
            .map(|&(binding, _)| match binding {
                1 => bind_aligned(ctx, "gradients", (grads, r.start).into(), r.len()),
                2 => bind_aligned(ctx, "parameters", (params, r.start).into(), r.len()),
                3 => vector("the state vector m", state.m),
                4 => vector("the state vector v", state.v),
                5 => Ok(step),
                6 => Ok(loss),
                7 => Ok(partials),
                other => unreachable!("optim.wgsl has no binding {other} ({kernel:?})"),
            })
            .collect::<Result<Vec<_>>>()?;
        let p = OptimParams { n: u32_of("parameter count", r.len())?, piece: i as u32, ..base };
        let groups = groups.map_or_else(|| elementwise_groups(ctx, kernel.entry_point(), r.len()), Ok)?;
        Ok(Dispatch::new(ctx, kernel, &p, &bindings, groups))
    };
    let one = Some([1, 1, 1]);
    let mut out = vec![dispatch(Kernel::OptimPrepare, 0, one)?];
    if max_grad_norm.is_some() {
        for i in 0..ranges.len() {
            out.push(dispatch(Kernel::GradNorm, i, one)?);
        }
        out.push(dispatch(Kernel::GradNormFinish, 0, one)?);
    }
    for i in 0..ranges.len() {
        out.push(dispatch(rule, i, None)?);
    }
    Ok(out)
}

/// The f32 values a struct of type `T` spans.
fn values_of<T>() -> usize {
    std::mem::size_of::<T>() / F32 as usize
}
