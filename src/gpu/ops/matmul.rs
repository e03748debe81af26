//! The strided, tiled matrix product of `linear.wgsl` (all three products of a layer): its flags, its
//! epilogue, and the autotune that picks its tiling.

use super::{Dispatch, Span, bind, bind_rounded, run, u32_of};
use crate::error::Result;
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::{Kernel, Tile};
use crate::gpu::structs::MatmulParams;
use crate::model::Activation;

/// Add `bias[bias_off + n]` to every row.
pub const ADD_BIAS: u32 = 1;
/// Also store the value before the activation.
pub const WRITE_PRE: u32 = 2;
/// Multiply by `f'(pre)` instead (the backward epilogue).
pub const MUL_DERIV: u32 = 4;
/// Add the value already in `out` (a partial sum) before the bias.
pub const ACC_OUT: u32 = 8;
/// Add the value already in `pre` (a partial sum) before the bias.
pub const ACC_PRE: u32 = 16;
/// op(A) is loaded four values at a time along K.
pub const A_VEC_K: u32 = 32;
/// op(A) is loaded four values at a time along M.
pub const A_VEC_M: u32 = 64;
/// op(B) is loaded four values at a time along N.
pub const B_VEC_N: u32 = 128;
/// op(B) is loaded four values at a time along K.
pub const B_VEC_K: u32 = 256;

/// A strided view of a matrix inside a flat buffer: element (r, c) is at `offset + r*row_stride + c*col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Strided<'a> {
    /// How many values from `offset` the (rows, cols) view reaches.
    fn extent(&self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            return 0;
        }
        (rows - 1) * self.row_stride + (cols - 1) * self.col_stride + 1
    }

    /// A row-major (rows, cols) matrix at `offset`.
    pub fn rows(buffer: &'a wgpu::Buffer, offset: usize, cols: usize) -> Self {
        Self { buffer, offset, row_stride: cols, col_stride: 1 }
    }
    fn into_span(self) -> Span<'a> {
        Span { buffer: self.buffer, offset: self.offset }
    }

    /// The transpose of a row-major matrix with `cols` columns stored at `offset`.
    pub fn transposed(buffer: &'a wgpu::Buffer, offset: usize, cols: usize) -> Self {
        Self { buffer, offset, row_stride: 1, col_stride: cols }
    }
}

/// What the product does with C = op(A)·op(B) before storing it at `out`: one variant per use, so the
/// kernel's flags cannot be combined wrongly. Where the epilogue reads or writes a pre-activation, it is
/// at the given span with `out`'s row stride.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// `out = C`: the weight gradient (or the first of its pieces).
    Store,
    /// `out = out + s·C`: a partial sum added (s = 1), or plain SGD's `W ← W − lr·dW` (s = −lr).
    AddScaled(f32),
    /// `out = C + bias`: the first part of a forward product split along K.
    Bias { bias: Span<'a> },
    /// `pre = C + bias; out = f(pre)`: a layer's forward product.
    Forward { bias: Span<'a>, pre: Span<'a>, activation: Activation },
    /// `pre = C + pre; out = f(pre)`: the last part of a forward product split along K.
    FinishForward { pre: Span<'a>, activation: Activation },
    /// `out = C ⊙ f'(z)`: the input gradient with the previous layer's derivative fused (δ_prev).
    Derivative { z: Span<'a>, activation: Activation },
}

impl<'a> Epilogue<'a> {
    /// The kernel's epilogue flags.
    fn flags(self) -> u32 {
        match self {
            Self::Store => 0,
            Self::AddScaled(_) => ACC_OUT,
            Self::Bias { .. } => ADD_BIAS,
            Self::Forward { .. } => ADD_BIAS | WRITE_PRE,
            Self::FinishForward { .. } => ACC_PRE | WRITE_PRE,
            Self::Derivative { .. } => MUL_DERIV,
        }
    }

    fn activation(self) -> Activation {
        match self {
            Self::Forward { activation, .. }
            | Self::FinishForward { activation, .. }
            | Self::Derivative { activation, .. } => activation,
            _ => Activation::Identity,
        }
    }

    /// What C is multiplied by first (not with `Derivative`).
    fn scale(self) -> f32 {
        match self {
            Self::AddScaled(s) => s,
            _ => 1.0,
        }
    }

    fn bias(self) -> Option<Span<'a>> {
        match self {
            Self::Bias { bias } | Self::Forward { bias, .. } => Some(bias),
            _ => None,
        }
    }

    /// Where the pre-activation is read or written (Z for `Derivative`).
    fn pre(self) -> Option<Span<'a>> {
        match self {
            Self::Forward { pre, .. } | Self::FinishForward { pre, .. } => Some(pre),
            Self::Derivative { z, .. } => Some(z),
            _ => None,
        }
    }
}

/// The choice without measuring: the big tile once both output dimensions fill it (the huge one only
/// where timing chose it: it needs 64 registers of accumulators a thread and 128² outputs a workgroup).
pub fn heuristic_tile(m: usize, n: usize) -> Tile {
    if m >= 64 && n >= 64 { Tile::Big } else { Tile::Small }
}

/// Products with at least this many multiply-adds are timed once per adapter and shape (`autotune`).
pub const AUTOTUNE_MACS: usize = 1 << 24;

/// Picks the tiling for a product: `BACKPROP_MATMUL_TILE=small|big|huge` forces one; large products are
/// timed with each tiling once per adapter and shape and the fastest kept; small ones use `Tile::heuristic`.
pub fn choose_tile(ctx: &GpuContext, (m, n, k): (usize, usize, usize), transposed: (bool, bool)) -> Result<Tile> {
    match std::env::var("BACKPROP_MATMUL_TILE").as_deref() {
        Ok("small") => return Ok(Tile::Small),
        Ok("big") => return Ok(Tile::Big),
        Ok("huge") => return Ok(Tile::Huge),
        _ => {}
    }
    if m.saturating_mul(n).saturating_mul(k) < AUTOTUNE_MACS {
        return Ok(heuristic_tile(m, n));
    }
    let key = (m, n, k, transposed.0, transposed.1);
    if let Some(t) = ctx.tuned(&key) {
        return Ok(t);
    }
    let t = autotune(ctx, (m, n, k), transposed)?;
    ctx.remember(key, t);
    Ok(t)
}

/// Times every tiling on scratch buffers of the product's shape (best of three after a warm-up run). Where
/// one run is short (a fast GPU, where submitting and waiting would dominate), each timing is of enough runs
/// back to back in one submit to take about `AUTOTUNE_TARGET_MS`, as in a training step.
fn autotune(ctx: &GpuContext, (m, n, k): (usize, usize, usize), (ta, tb): (bool, bool)) -> Result<Tile> {
    let a = buffer::storage(ctx, "autotune A", m * k)?;
    let b = buffer::storage(ctx, "autotune B", k * n)?;
    let c = buffer::storage(ctx, "autotune C", m * n)?;
    let sa = if ta { Strided::transposed(&a, 0, m) } else { Strided::rows(&a, 0, k) };
    let sb = if tb { Strided::transposed(&b, 0, k) } else { Strided::rows(&b, 0, n) };
    let mut best = (f64::INFINITY, heuristic_tile(m, n));
    // A tiling wider than the output would leave most of each workgroup idle: not worth timing.
    for tile in Tile::ALL.into_iter().filter(|t| t.size() <= 32 || (m >= t.size() && n >= t.size())) {
        let d = matmul_tiled(ctx, tile, (m, n, k), sa, sb, Epilogue::Store, Strided::rows(&c, 0, n))?;
        run(ctx, &[&d])?;
        let once = timed(ctx, &[&d])?;
        let reps = repetitions(once);
        let batch = vec![&d; reps];
        for _ in 0..3 {
            let s = timed(ctx, &batch)? / reps as f64;
            if s < best.0 {
                best = (s, tile);
            }
        }
    }
    Ok(best.1)
}

/// Milliseconds each autotune timing aims for.
const AUTOTUNE_TARGET_MS: f64 = 2.0;

/// Runs back to back in one autotune timing, when one run took `once` seconds: 1 for a run of
/// `AUTOTUNE_TARGET_MS` or more, up to 64 for very short ones.
fn repetitions(once: f64) -> usize {
    ((AUTOTUNE_TARGET_MS * 1e-3 / once.max(1e-9)).ceil() as usize).clamp(1, 64)
}

/// Seconds to run `dispatches` in one submit and wait for them.
fn timed(ctx: &GpuContext, dispatches: &[&Dispatch]) -> Result<f64> {
    let t = std::time::Instant::now();
    run(ctx, dispatches)?;
    Ok(t.elapsed().as_secs_f64())
}

/// `C (M, N) = op(A) (M, K) · op(B) (K, N)` through `epilogue` into `out` (row-major, its row stride N or
/// more), with the tiling `choose_tile` picks.
pub fn matmul(
    ctx: &GpuContext,
    shape: (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    epilogue: Epilogue<'_>,
    out: Strided<'_>,
) -> Result<Dispatch> {
    let tile =
        choose_tile(ctx, shape, (a.row_stride == 1 && a.col_stride != 1, b.row_stride == 1 && b.col_stride != 1))?;
    matmul_tiled(ctx, tile, shape, a, b, epilogue, out)
}

/// As `matmul`, with the tiling given.
pub fn matmul_tiled(
    ctx: &GpuContext,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    epilogue: Epilogue<'_>,
    out: Strided<'_>,
) -> Result<Dispatch> {
    assert_eq!(out.col_stride, 1, "a product's output is row-major");
    let mut flags = epilogue.flags();
    let ldc = out.row_stride;
    let c_extent = out.extent(m, n);
    let (bind_a, a_off) = bind_rounded(ctx, "matmul operand A", a.into_span(), a.extent(m, k), 16)?;
    let (bind_b, b_off) = bind_rounded(ctx, "matmul operand B", b.into_span(), b.extent(k, n), 16)?;
    if std::env::var_os("BACKPROP_NO_VEC4").is_none() {
        flags |= vector_loads(a_off, a.row_stride, a.col_stride, A_VEC_K, A_VEC_M);
        flags |= vector_loads(b_off, b.row_stride, b.col_stride, B_VEC_N, B_VEC_K);
    }
    // Unused operands are bound to something harmless: the bias to B (read-only), `pre` to the scratch.
    let (bias_span, bias_len) = epilogue.bias().map_or((Span::from(b.buffer), 1), |s| (s, n));
    let (bind_bias, bias_off) = bind(ctx, "bias", bias_span, bias_len)?;
    let (bind_out, out_off) = bind(ctx, "matmul output", out.into_span(), c_extent)?;
    let (pre_span, pre_len) = epilogue.pre().map_or((Span::from(ctx.scratch()), 1), |s| (s, c_extent));
    let (bind_pre, pre_off) = bind(ctx, "pre-activation", pre_span, pre_len)?;
    let params = MatmulParams {
        m: u32_of("matmul rows", m)?,
        n: u32_of("matmul columns", n)?,
        k: u32_of("matmul depth", k)?,
        flags,
        a_off: u32_of("matmul A offset", a_off)?,
        a_rs: u32_of("matmul A stride", a.row_stride)?,
        a_cs: u32_of("matmul A stride", a.col_stride)?,
        b_off: u32_of("matmul B offset", b_off)?,
        b_rs: u32_of("matmul B stride", b.row_stride)?,
        b_cs: u32_of("matmul B stride", b.col_stride)?,
        bias_off: u32_of("bias offset", bias_off)?,
        out_off: u32_of("output offset", out_off)?,
        pre_off: u32_of("pre-activation offset", pre_off)?,
        act: epilogue.activation().shader_id(),
        ldc: u32_of("output row stride", ldc)?,
        scale: epilogue.scale(),
    };
    let gx = n.div_ceil(tile.size());
    let gy = m.div_ceil(tile.size());
    ctx.check_workgroups("matmul column tiles", u32_of("matmul tiles", gx)?)?;
    ctx.check_workgroups("matmul row tiles", u32_of("matmul tiles", gy)?)?;
    let groups = [gx.max(1) as u32, gy.max(1) as u32, 1];
    let bindings = [bind_a, bind_b, bind_bias, bind_out, bind_pre];
    Ok(Dispatch::new(ctx, Kernel::Matmul(tile), &params, &bindings, groups))
}

/// The vectorised-load flag for an operand with element (r, c) at `off + r·rs + c·cs`: `along_cols` where
/// columns are contiguous (cs = 1) and rows start on whole vectors, `along_rows` in the transposed case,
/// none otherwise.
fn vector_loads(off: usize, rs: usize, cs: usize, along_cols: u32, along_rows: u32) -> u32 {
    if off % 4 != 0 {
        0
    } else if cs == 1 && rs % 4 == 0 {
        along_cols
    } else if rs == 1 && cs % 4 == 0 {
        along_rows
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::repetitions;

    #[test]
    fn short_autotune_runs_are_repeated_long_ones_are_not() {
        assert_eq!(repetitions(5e-3), 1, "a run past the target is timed alone");
        assert_eq!(repetitions(2e-3), 1);
        assert_eq!(repetitions(0.5e-3), 4);
        assert_eq!(repetitions(100e-6), 20, "a 100 µs run (mostly submit and wait) is repeated");
        assert_eq!(repetitions(0.0), 64, "never more than 64");
    }
}
