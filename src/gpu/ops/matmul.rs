//! The strided, tiled matrix product of `linear.wgsl` (all three products of a layer): its uniform, flags,
//! epilogues, the three tilings and the autotune that picks between them.

use super::{Dispatch, Span, bind, bind_rounded, run, u32_of};
use crate::error::Result;
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
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
/// `matmul_big` loads op(A) four values at a time along K.
pub const A_VEC_K: u32 = 32;
/// `matmul_big` loads op(A) four values at a time along M.
pub const A_VEC_M: u32 = 64;
/// `matmul_big` loads op(B) four values at a time along N.
pub const B_VEC_N: u32 = 128;
/// `matmul_big` loads op(B) four values at a time along K.
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

/// Where a product adds a partial sum stored by an earlier product (a split of K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    No,
    /// `C += out` before the rest of the epilogue.
    Out,
    /// `C += pre` before the rest of the epilogue.
    Pre,
}

/// The epilogue of a product: optional bias, optional pre-activation store, activation; or, backward, a
/// product by the activation's derivative at a stored pre-activation.
pub struct Epilogue<'a> {
    /// (buffer, offset) of a bias of N values.
    pub bias: Option<(&'a wgpu::Buffer, usize)>,
    /// (buffer, offset) where the pre-activation (M, N) is stored.
    pub pre: Option<(&'a wgpu::Buffer, usize)>,
    pub activation: Activation,
    /// Backward: `C ⊙ f'(Z)` with Z (M, N) at (buffer, offset) and f = `activation`; `bias` and `pre` unused.
    pub derivative_at: Option<(&'a wgpu::Buffer, usize)>,
    /// A partial sum to add first (not with `derivative_at`).
    pub accumulate: Accumulate,
    /// The row stride of C (and of Z / pre), when C is a block of columns of a wider matrix; N otherwise.
    pub row_stride: Option<usize>,
    /// C is multiplied by this first (not with `derivative_at`): 1, or −lr where plain SGD adds the weight
    /// gradient into W (with `Accumulate::Out`).
    pub scale: f32,
}

impl<'a> Epilogue<'a> {
    /// A plain product.
    pub fn none() -> Self {
        Self::new(None, None, Activation::Identity, None)
    }

    fn new(
        bias: Option<(&'a wgpu::Buffer, usize)>,
        pre: Option<(&'a wgpu::Buffer, usize)>,
        activation: Activation,
        derivative_at: Option<(&'a wgpu::Buffer, usize)>,
    ) -> Self {
        Self { bias, pre, activation, derivative_at, accumulate: Accumulate::No, row_stride: None, scale: 1.0 }
    }

    /// The same epilogue, adding the partial sum at `acc` first.
    pub fn accumulating(self, acc: Accumulate) -> Self {
        Self { accumulate: acc, ..self }
    }

    /// `out + s·C`: a scaled product added to what `out` holds (SGD's `W ← W − lr·dW` with s = −lr).
    pub fn add_scaled(s: f32) -> Self {
        Self { scale: s, ..Self::none().accumulating(Accumulate::Out) }
    }
    /// The same epilogue, writing C with row stride `ldc`.
    pub fn with_row_stride(self, ldc: usize) -> Self {
        Self { row_stride: Some(ldc), ..self }
    }

    /// `C + bias`, no activation: the first part of a forward product split along K.
    pub fn bias_only(bias: (&'a wgpu::Buffer, usize)) -> Self {
        Self::new(Some(bias), None, Activation::Identity, None)
    }

    /// The last part of a split forward product: `f(C + pre)`, storing `C + pre` back into `pre`.
    pub fn finish_forward(pre: (&'a wgpu::Buffer, usize), activation: Activation) -> Self {
        Self::new(None, Some(pre), activation, None).accumulating(Accumulate::Pre)
    }

    /// Forward: `f(C + bias)`, storing `C + bias` at `pre`.
    pub fn forward(bias: (&'a wgpu::Buffer, usize), pre: (&'a wgpu::Buffer, usize), activation: Activation) -> Self {
        Self::new(Some(bias), Some(pre), activation, None)
    }

    /// Backward: `C ⊙ f'(Z)`, Z at `z`.
    pub fn derivative(activation: Activation, z: (&'a wgpu::Buffer, usize)) -> Self {
        Self::new(None, None, activation, Some(z))
    }
}

/// The three tilings of the matrix product in `linear.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// `matmul`: 32x32 per workgroup, 2x2 per thread.
    Small,
    /// `matmul_big`: 64x64 per workgroup, 4x4 per thread in registers.
    Big,
    /// `matmul_huge`: 128x128 per workgroup, 8x8 per thread in registers.
    Huge,
}

impl Tile {
    fn kernel(self) -> Kernel {
        match self {
            Tile::Small => Kernel::Matmul,
            Tile::Big => Kernel::MatmulBig,
            Tile::Huge => Kernel::MatmulHuge,
        }
    }
    fn size(self) -> usize {
        match self {
            Tile::Small => 32,
            Tile::Big => 64,
            Tile::Huge => 128,
        }
    }
    pub const ALL: [Tile; 3] = [Tile::Small, Tile::Big, Tile::Huge];
    /// The choice without measuring: the big tile once both output dimensions fill it (the huge one only
    /// where timing chose it: it needs 64 registers of accumulators a thread and 128² outputs a workgroup).
    pub fn heuristic(m: usize, n: usize) -> Tile {
        if m >= 64 && n >= 64 { Tile::Big } else { Tile::Small }
    }
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
        return Ok(Tile::heuristic(m, n));
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
    let scratch = buffer::storage(ctx, "autotune scratch", 1)?;
    let sa = if ta { Strided::transposed(&a, 0, m) } else { Strided::rows(&a, 0, k) };
    let sb = if tb { Strided::transposed(&b, 0, k) } else { Strided::rows(&b, 0, n) };
    let mut best = (f64::INFINITY, Tile::heuristic(m, n));
    // A tiling wider than the output would leave most of each workgroup idle: not worth timing.
    for tile in Tile::ALL.into_iter().filter(|t| t.size() <= 32 || (m >= t.size() && n >= t.size())) {
        let d = matmul_tiled(ctx, tile, (m, n, k), sa, sb, Epilogue::none(), (&c, 0), &scratch)?;
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

/// `C (M, N) = f(op(A) (M, K) · op(B) (K, N) + bias)`, C row-major at `out_off` of `out`, with the tiling
/// `choose_tile` picks. `scratch` is bound where the epilogue has no bias or pre-activation buffer; it
/// must not be `out`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ctx: &GpuContext,
    shape: (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    epilogue: Epilogue<'_>,
    out: (&wgpu::Buffer, usize),
    scratch: &wgpu::Buffer,
) -> Result<Dispatch> {
    let tile =
        choose_tile(ctx, shape, (a.row_stride == 1 && a.col_stride != 1, b.row_stride == 1 && b.col_stride != 1))?;
    matmul_tiled(ctx, tile, shape, a, b, epilogue, out, scratch)
}

/// As `matmul`, with the tiling given.
#[allow(clippy::too_many_arguments)]
pub fn matmul_tiled(
    ctx: &GpuContext,
    tile: Tile,
    (m, n, k): (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    epilogue: Epilogue<'_>,
    out: (&wgpu::Buffer, usize),
    scratch: &wgpu::Buffer,
) -> Result<Dispatch> {
    let mut flags = 0;
    if epilogue.bias.is_some() {
        flags |= ADD_BIAS;
    }
    if epilogue.pre.is_some() {
        flags |= WRITE_PRE;
    }
    match epilogue.accumulate {
        Accumulate::No => {}
        Accumulate::Out => flags |= ACC_OUT,
        Accumulate::Pre => flags |= ACC_PRE,
    }
    if epilogue.derivative_at.is_some() {
        flags = MUL_DERIV;
    }
    let ldc = epilogue.row_stride.unwrap_or(n);
    let c_extent = if m == 0 || n == 0 { 0 } else { (m - 1) * ldc + n };
    let (bind_a, a_off) = bind_rounded(ctx, "matmul operand A", a.into_span(), a.extent(m, k), 16)?;
    let (bind_b, b_off) = bind_rounded(ctx, "matmul operand B", b.into_span(), b.extent(k, n), 16)?;
    if tile != Tile::Small && std::env::var_os("BACKPROP_NO_VEC4").is_none() {
        flags |= vector_loads(a_off, a.row_stride, a.col_stride, A_VEC_K, A_VEC_M);
        flags |= vector_loads(b_off, b.row_stride, b.col_stride, B_VEC_N, B_VEC_K);
    }
    let (bias_span, bias_len) = match epilogue.bias {
        Some(bias) => (Span::from(bias), n),
        None => (Span::from(b.buffer), 1),
    };
    let (bind_bias, bias_off) = bind(ctx, "bias", bias_span, bias_len)?;
    let (bind_out, out_off) = bind(ctx, "matmul output", out.into(), c_extent)?;
    let (pre_span, pre_len) = match epilogue.derivative_at.or(epilogue.pre) {
        Some(pre) => (Span::from(pre), c_extent),
        None => (Span::from(scratch), 1),
    };
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
        act: epilogue.activation.shader_id(),
        ldc: u32_of("output row stride", ldc)?,
        scale: epilogue.scale,
    };
    let gx = n.div_ceil(tile.size());
    let gy = m.div_ceil(tile.size());
    ctx.check_workgroups("matmul column tiles", u32_of("matmul tiles", gx)?)?;
    ctx.check_workgroups("matmul row tiles", u32_of("matmul tiles", gy)?)?;
    let groups = [gx.max(1) as u32, gy.max(1) as u32, 1];
    Ok(Dispatch::new(ctx, tile.kernel(), &params, &[bind_a, bind_b, bind_bias, bind_out, bind_pre], groups))
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
