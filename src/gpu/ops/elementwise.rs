//! Builders of the row-wise and elementwise kernels: the losses and their gradients, softmax, the bias
//! gradient, and the gather of batches from resident data.

use super::{
    Dispatch, F32, Span, WG, aligned_rows_per_binding, bind, bind_aligned, elementwise_groups, offset_alignment,
    pieces, u32_of,
};
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::gpu::structs::{GatherParams, GradParams, LossParams};
use crate::model::Activation;

/// The loss kernels' uniform over (rows, cols), the sum scaled by `scale`.
fn loss_params((rows, cols): (usize, usize), scale: f32, acc_weight: f32) -> Result<LossParams> {
    Ok(LossParams {
        n: u32_of("loss size", rows * cols)?,
        rows: u32_of("loss rows", rows)?,
        cols: u32_of("loss columns", cols)?,
        act: Activation::Identity.shader_id(),
        scale,
        acc_weight,
        accumulate: 0,
        _pad: 0,
    })
}

/// Which rows of a batch a loss kernel sees: all of them, or one piece of a batch too large for one
/// binding. The losses and gradients are always scaled by the whole batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Rows in the whole batch.
    pub batch: usize,
    /// The first piece writes the loss; later ones add to it.
    pub first: bool,
}

impl Piece {
    /// The whole batch of `rows` rows at once.
    pub fn whole(rows: usize) -> Self {
        Self { batch: rows, first: true }
    }
}

/// `out = scale · (pred − target)` over (rows, cols): the MSE gradient with `scale = 2/(B·O)`, the fused
/// softmax cross-entropy δ with `scale = 1/B`.
pub fn loss_grad<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    scale: f32,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    loss_delta(ctx, shape, scale, Activation::Identity, pred, target, out)
}

/// `out = scale (A − Y) ⊙ f'(Z)`, f' taken from A = f(Z): the last layer's δ in one kernel.
fn loss_delta<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    scale: f32,
    act: Activation,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    let n = shape.0 * shape.1;
    let p = LossParams { act: act.shader_id(), ..loss_params(shape, scale, 0.0)? };
    let g = elementwise_groups(ctx, "loss_grad", n)?;
    let pred = bind_aligned(ctx, "prediction", pred.into(), n)?;
    let target = bind_aligned(ctx, "target", target.into(), n)?;
    let out = bind_aligned(ctx, "loss gradient", out.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::LossGrad, &p, &[pred, target, out], g))
}

/// The last layer's δ under MSE, `2 (A − Y) / (B·O) ⊙ f'(Z)` with A = f(Z) the output, in one kernel (the
/// gradient and the activation's derivative fused).
pub fn mse_delta<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    output: Activation,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    loss_delta(ctx, shape, 2.0 / (piece.batch * shape.1).max(1) as f32, output, pred, target, out)
}

/// The fused softmax cross-entropy gradient `(A − Y) / B`, A the softmax output, B the whole batch's rows.
pub fn xent_grad<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    probs: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    loss_grad(ctx, shape, 1.0 / piece.batch.max(1) as f32, probs, target, out)
}

/// The loss kernels' common part: `kernel` over (rows, cols), sum scaled by `scale`, into the
/// `LossTotals` at `totals` (an aligned offset).
#[allow(clippy::too_many_arguments)]
fn loss_kernel<'a>(
    ctx: &GpuContext,
    kernel: Kernel,
    shape: (usize, usize),
    scale: f32,
    piece: Piece,
    pred: Span<'a>,
    target: Span<'a>,
    totals: Span<'a>,
    acc_weight: f32,
) -> Result<Dispatch> {
    let n = shape.0 * shape.1;
    let pred = bind_aligned(ctx, "prediction", pred, n)?;
    let target = bind_aligned(ctx, "target", target, n)?;
    let totals = bind_aligned(ctx, "loss totals", totals, TOTALS)?;
    let p = LossParams { accumulate: u32::from(!piece.first), ..loss_params(shape, scale, acc_weight)? };
    Ok(Dispatch::new(ctx, kernel, &p, &[pred, target, totals], [1, 1, 1]))
}

/// f32 values in a `LossTotals`.
const TOTALS: usize = std::mem::size_of::<crate::gpu::structs::LossTotals>() / 4;

/// `totals.last = mean((pred − target)²)` over (rows, cols); with `acc_weight ≠ 0` also
/// `totals.sum += loss · acc_weight`. The mean is over `piece`'s whole batch; pieces after the first add
/// to `totals.last`. `totals` is a `LossTotals` at an aligned offset.
pub fn mse_loss<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    totals: impl Into<Span<'a>>,
    acc_weight: f32,
) -> Result<Dispatch> {
    let scale = 1.0 / (piece.batch * shape.1).max(1) as f32;
    loss_kernel(ctx, Kernel::MseLoss, shape, scale, piece, pred.into(), target.into(), totals.into(), acc_weight)
}

/// `totals.last = mean_b Σ_j y (logsumexp(z_b) − z_bj)` from logits Z (rows, cols); accumulates like
/// `mse_loss`.
pub fn xent_loss<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    logits: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    totals: impl Into<Span<'a>>,
    acc_weight: f32,
) -> Result<Dispatch> {
    let scale = 1.0 / piece.batch.max(1) as f32;
    loss_kernel(ctx, Kernel::XentLoss, shape, scale, piece, logits.into(), target.into(), totals.into(), acc_weight)
}

/// `out = softmax(z)` per row of (rows, cols).
pub fn softmax_rows<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    z: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    let n = shape.0 * shape.1;
    let p = loss_params(shape, 1.0, 0.0)?;
    let g = elementwise_groups(ctx, "softmax_rows", shape.0)?;
    let z = bind_aligned(ctx, "logits", z.into(), n)?;
    let out = bind_aligned(ctx, "softmax output", out.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::SoftmaxRows, &p, &[z, out], g))
}

/// Columns one workgroup of `bias_grad` sums (`COLS` in `grad.wgsl`).
pub const BIAS_COLUMNS: usize = 16;

/// `out[out_off + c] = Σ_r delta[r][c]`, delta (rows, cols).
pub fn bias_grad<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    delta: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
) -> Result<Dispatch> {
    bias_grad_piece(ctx, shape, true, delta, out)
}

/// As `bias_grad` for one piece of a batch's rows: the first piece writes the sum, later ones add to it.
pub fn bias_grad_piece<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    first: bool,
    delta: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
) -> Result<Dispatch> {
    column_sums(ctx, shape, !first, 1.0, delta, out)
}

/// Plain SGD on a bias, fused with its gradient: `bias ← bias − lr·Σ_b δ_b`, bias at `out`. Its
/// learning rate is `−GradParams::scale` (`Dispatch::update_params`).
pub fn bias_sgd<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    lr: f32,
    delta: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
) -> Result<Dispatch> {
    column_sums(ctx, shape, true, -lr, delta, out)
}

/// `out[c] = (accumulate ? out[c] : 0) + scale · Σ_r delta[r][c]`.
fn column_sums<'a>(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    accumulate: bool,
    scale: f32,
    delta: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
) -> Result<Dispatch> {
    let delta = bind_aligned(ctx, "delta", delta.into(), rows * cols)?;
    let (out_b, off) = bind(ctx, "bias gradient", out.into(), cols)?;
    let p = GradParams {
        rows: u32_of("bias gradient rows", rows)?,
        cols: u32_of("bias gradient columns", cols)?,
        out_off: u32_of("bias gradient offset", off)?,
        accumulate: u32::from(accumulate),
        scale,
        _pad: [0; 3],
    };
    // One workgroup of WG threads per BIAS_COLUMNS columns.
    let g = elementwise_groups(ctx, "bias_grad", cols.div_ceil(BIAS_COLUMNS) * WG as usize)?;
    Ok(Dispatch::new(ctx, Kernel::BiasGrad, &p, &[delta, out_b], g))
}

/// `out (rows, cols) = src[idx[off + r]]`: a batch gathered from a data set of `src_rows` rows resident
/// on the GPU. A data set larger than one storage binding is read in pieces of rows, one dispatch each.
pub fn gather_rows<'a>(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    (src, src_rows): (&'a wgpu::Buffer, usize),
    idx: (&'a wgpu::Buffer, usize),
    out: impl Into<Span<'a>>,
) -> Result<Vec<Dispatch>> {
    let per = aligned_rows_per_binding(ctx, cols);
    if per == 0 {
        return Err(Error::DeviceLimit {
            what: format!("one aligned piece of a data set with rows of {cols} values"),
            limit: "max_storage_buffer_binding_size",
            requested: (offset_alignment(ctx) * cols) as u64 * F32,
            available: ctx.limits().max_storage_buffer_binding_size,
        });
    }
    let (idx_b, off) = bind(ctx, "row order", idx.into(), rows)?;
    let out = bind_aligned(ctx, "gathered batch", out.into(), rows * cols)?;
    let g = elementwise_groups(ctx, "gather_rows", rows * cols)?;
    pieces(src_rows, per)
        .into_iter()
        .map(|r| {
            let src_b = bind_aligned(ctx, "data set", (src, r.start * cols).into(), r.len() * cols)?;
            let p = GatherParams {
                rows: u32_of("batch rows", rows)?,
                cols: u32_of("data columns", cols)?,
                off: u32_of("row offset", off)?,
                lo: u32_of("data rows", r.start)?,
                hi: u32_of("data rows", r.end)?,
                _pad: [0; 3],
            };
            Ok(Dispatch::new(ctx, Kernel::GatherRows, &p, &[src_b, idx_b, out], g))
        })
        .collect()
}
