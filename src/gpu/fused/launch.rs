//! The fused step's launches: their uniforms (`FusedParams` with the layer table, `FusedUpdateParams`),
//! where each group's partials go in the work buffer, and the builders of each `Dispatch`.

use std::mem::size_of;

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{Binding, Dispatch, Span, bind_aligned, elementwise_groups, optim_params, u32_of};
use crate::gpu::shaders::Kernel;
use crate::gpu::structs::{FUSED_LAYERS, FusedLayer, FusedParams, FusedUpdateParams, LossTotals, StepState};
use crate::gpu::tune::{Blocking, values_per_row};
use crate::model::{Loss, MlpSpec};
use crate::optim::{OptimConfig, OptimizerKind};

/// Offsets in the work buffer of one batch size: G partial gradients of P values, G loss sums, then the
/// per-workgroup sums of squares of `fused_reduce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkLayout {
    pub params: usize,
    pub groups: usize,
    pub loss_off: usize,
    pub norm_off: usize,
    pub norm_parts: usize,
    pub len: usize,
}

impl WorkLayout {
    pub fn new(ctx: &GpuContext, params: usize, blocking: &Blocking) -> Result<Self> {
        let [x, y, _] = update_groups(ctx, params)?;
        let norm_parts = (x * y) as usize;
        let groups = blocking.groups;
        let (loss_off, norm_off) = (groups * params, groups * params + groups);
        Ok(Self { params, groups, loss_off, norm_off, norm_parts, len: blocking.work_len(params, norm_parts) })
    }
}

fn update_groups(ctx: &GpuContext, params: usize) -> Result<[u32; 3]> {
    elementwise_groups(ctx, "fused_update", params)
}

/// The layer table for batches of `rows` in blocks of `block_rows`: each layer's shape, activation and W's
/// offset; where its input and output sit in workgroup memory; where its Z starts in the trace.
fn layer_table(spec: &MlpSpec, block_rows: usize, rows: usize) -> Result<[FusedLayer; FUSED_LAYERS]> {
    let layout = spec.param_layout();
    let mut table = [FusedLayer::default(); FUSED_LAYERS];
    let (mut act_at, mut trace_at) = (0usize, 0usize);
    for (l, entry) in table.iter_mut().enumerate().take(spec.layers()) {
        let (i, o) = spec.layer_shape(l);
        let input = act_at;
        act_at += block_rows * i;
        *entry = FusedLayer {
            inputs: u32_of("layer width", i)?,
            outputs: u32_of("layer width", o)?,
            activation: spec.activations()[l].shader_id(),
            w_off: u32_of("parameter offset", layout.layers[l].w)?,
            act_in: u32_of("workgroup memory offset", input)?,
            act_out: u32_of("workgroup memory offset", act_at)?,
            trace_off: u32_of("trace offset", trace_at)?,
            _pad: 0,
        };
        trace_at += 3 * rows * o;
    }
    Ok(table)
}

/// f32 values of the trace of a batch of `rows`: Z, A and δ of every layer.
pub fn trace_len(spec: &MlpSpec, rows: usize) -> usize {
    3 * rows * (values_per_row(spec) - spec.input_width())
}

/// Where the first launch reads a batch's rows: X (N, I_0) and Y (N, O_L), the row order, the batch's first
/// entry in it, and N.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub order: &'a wgpu::Buffer,
    pub first: usize,
    pub n: usize,
}

/// The model's buffers that the fused step reads and updates: θ, the gradients (written by the update),
/// the rule's state m and v where it keeps them, the `StepState` and the `LossTotals`.
#[derive(Clone, Copy, Debug)]
pub struct FusedBuffers<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub m: Option<&'a wgpu::Buffer>,
    pub v: Option<&'a wgpu::Buffer>,
    pub step: &'a wgpu::Buffer,
    pub loss: &'a wgpu::Buffer,
}

/// The first `len` values of `buffer` as one binding.
fn whole<'a>(ctx: &GpuContext, what: &str, buffer: &'a wgpu::Buffer, len: usize) -> Result<Binding<'a>> {
    bind_aligned(ctx, what, Span::from(buffer), len)
}

fn values_of<T>() -> usize {
    size_of::<T>() / 4
}

/// `fused_forward_backward` over the batch `blocking` cuts, reading rows through `rows`, its partials into
/// `work`; writing Z, A and δ to `trace` where one is given.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    ctx: &GpuContext,
    spec: &MlpSpec,
    (blocking, layout): (&Blocking, &WorkLayout),
    cfg: &OptimConfig,
    rows: Rows<'_>,
    bufs: FusedBuffers<'_>,
    work: &wgpu::Buffer,
    trace: Option<&wgpu::Buffer>,
) -> Result<Dispatch> {
    let (b, out_w) = (blocking.rows, spec.output_width());
    let (beta1, beta2) = match cfg.kind {
        OptimizerKind::Adam { beta1, beta2, .. } => (beta1, beta2),
        _ => (0.0, 0.0),
    };
    let p = FusedParams {
        rows: u32_of("batch rows", b)?,
        layers: u32_of("layers", spec.layers())?,
        block_rows: u32_of("rows a block", blocking.block_rows)?,
        blocks: u32_of("row blocks", blocking.blocks)?,
        blocks_per_group: u32_of("blocks per group", blocking.blocks_per_group)?,
        params: u32_of("parameter count", layout.params)?,
        order_off: u32_of("row order offset", rows.first)?,
        loss: u32::from(spec.loss() == Loss::CrossEntropy),
        loss_off: u32_of("fused work buffer", layout.loss_off)?,
        trace: u32::from(trace.is_some()),
        grad_scale: match spec.loss() {
            Loss::Mse => (2.0 / (b * out_w) as f64) as f32,
            Loss::CrossEntropy => (1.0 / b as f64) as f32,
        },
        _pad: 0,
        beta1: beta1 as f32,
        beta2: beta2 as f32,
        one_minus_beta1: (1.0 - beta1) as f32,
        one_minus_beta2: (1.0 - beta2) as f32,
        table: layer_table(spec, blocking.block_rows, b)?,
    };
    let bindings = [
        whole(ctx, "parameters", bufs.params, layout.params)?,
        whole(ctx, "inputs", rows.x, rows.n * spec.input_width())?,
        whole(ctx, "targets", rows.y, rows.n * out_w)?,
        whole(ctx, "row order", rows.order, rows.first + b)?,
        whole(ctx, "fused partial gradients", work, layout.len)?,
        whole(ctx, "optimizer step state", bufs.step, values_of::<StepState>())?,
        match trace {
            Some(t) => whole(ctx, "fused trace", t, trace_len(spec, b))?,
            None => whole(ctx, "fused trace (unused)", ctx.scratch(), 1)?,
        },
    ];
    let groups = u32_of("fused workgroups", blocking.groups)?;
    ctx.check_workgroups("fused_forward_backward", groups)?;
    Ok(Dispatch::new(ctx, Kernel::FusedForwardBackward, &p, &bindings, [groups, 1, 1]))
}

/// The update launches after `forward_backward`: `fused_update`, or `fused_reduce` and `fused_apply` when
/// clipping to `max_grad_norm`; at learning rate `lr`.
#[allow(clippy::too_many_arguments)]
pub fn update(
    ctx: &GpuContext,
    spec: &MlpSpec,
    (blocking, layout): (&Blocking, &WorkLayout),
    cfg: &OptimConfig,
    (lr, max_grad_norm): (f32, Option<f32>),
    bufs: FusedBuffers<'_>,
    work: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let (b, n) = (blocking.rows, layout.params);
    let p = FusedUpdateParams {
        optim: optim_params(cfg, n, lr, max_grad_norm)?,
        rule: match cfg.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum { .. } => 1,
            OptimizerKind::Adam { .. } => 2,
        },
        groups: u32_of("fused workgroups", layout.groups)?,
        loss_off: u32_of("fused work buffer", layout.loss_off)?,
        norm_off: u32_of("fused work buffer", layout.norm_off)?,
        norm_parts: u32_of("fused work buffer", layout.norm_parts)?,
        loss_scale: match spec.loss() {
            Loss::Mse => (1.0 / (b * spec.output_width()) as f64) as f32,
            Loss::CrossEntropy => (1.0 / b as f64) as f32,
        },
        acc_weight: b as f32,
        _pad: 0,
    };
    // The state vectors the rule keeps; where it keeps none the kernel's switch never reaches them (two
    // placeholders: one buffer at two writable bindings is an error on WebGPU).
    let m = bufs.m.map_or((ctx.scratch(), 1), |b| (b, n));
    let v = bufs.v.map_or((ctx.second_scratch(), 1), |b| (b, n));
    let dispatch = |kernel: Kernel| -> Result<Dispatch> {
        let bindings = kernel.bindings()[1..]
            .iter()
            .map(|&(binding, _)| match binding {
                1 => whole(ctx, "fused partial gradients", work, layout.len),
                2 => whole(ctx, "gradients", bufs.grads, n),
                3 => whole(ctx, "parameters", bufs.params, n),
                4 => whole(ctx, "optimizer state m", m.0, m.1),
                5 => whole(ctx, "optimizer state v", v.0, v.1),
                6 => whole(ctx, "optimizer step state", bufs.step, values_of::<StepState>()),
                7 => whole(ctx, "loss totals", bufs.loss, values_of::<LossTotals>()),
                other => unreachable!("fused_update.wgsl has no binding {other} ({kernel:?})"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Dispatch::new(ctx, kernel, &p, &bindings, update_groups(ctx, n)?))
    };
    match max_grad_norm {
        None => Ok(vec![dispatch(Kernel::FusedUpdate)?]),
        Some(_) => Ok(vec![dispatch(Kernel::FusedReduce)?, dispatch(Kernel::FusedApply)?]),
    }
}
