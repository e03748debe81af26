//! The strided, tiled matrix product of `linear.wgsl` (all three products of a layer): its flags, its
//! epilogue, and the measurement the tuner (`gpu::tune`) asks for when it picks a tiling.

use super::{Dispatch, Span, bind, bind_rounded, run, u32_of};
use crate::error::Result;
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::{Kernel, Tile};
use crate::gpu::structs::MatmulParams;
use crate::gpu::tune::MatmulKey;
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

    /// Whether the view reads a row-major matrix transposed (its rows contiguous, columns strided).
    fn is_transposed(&self) -> bool {
        self.row_stride == 1 && self.col_stride != 1
    }

    /// The transpose of a row-major matrix with `cols` columns stored at `offset`.
    pub fn transposed(buffer: &'a wgpu::Buffer, offset: usize, cols: usize) -> Self {
        Self { buffer, offset, row_stride: 1, col_stride: cols }
    }
}

impl<'a> Span<'a> {
    /// The row-major matrix with `cols` columns that starts here.
    pub fn rows(self, cols: usize) -> Strided<'a> {
        Strided::rows(self.buffer, self.offset, cols)
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

/// The tuner's key for a product of `shape` (M, N, K) over operands `a` and `b`.
pub fn matmul_key((m, n, k): (usize, usize, usize), a: &Strided<'_>, b: &Strided<'_>) -> MatmulKey {
    MatmulKey { m, n, k, a_transposed: a.is_transposed(), b_transposed: b.is_transposed() }
}

/// The tiling the device's tuner picks for a product of `shape` over `a` and `b`, measured first where its
/// strategy says so (`MatmulTimer`).
pub fn tile_for(ctx: &GpuContext, shape: (usize, usize, usize), a: &Strided<'_>, b: &Strided<'_>) -> Result<Tile> {
    let key = matmul_key(shape, a, b);
    let mut timer = MatmulTimer::new(ctx, key);
    ctx.tuner().matmul_tile(key, |tile, runs| timer.time(tile, runs))
}

/// Times products of one key on scratch buffers of its shape and layout (made at the first timing): the
/// measurement `Tuner::matmul_tile` asks for.
pub struct MatmulTimer<'c> {
    ctx: &'c GpuContext,
    key: MatmulKey,
    /// A, B and C.
    buffers: Option<[wgpu::Buffer; 3]>,
}

impl<'c> MatmulTimer<'c> {
    pub fn new(ctx: &'c GpuContext, key: MatmulKey) -> Self {
        Self { ctx, key, buffers: None }
    }

    /// Seconds for `runs` runs of the product with `tile`, back to back in one submit, until they finish.
    pub fn time(&mut self, tile: Tile, runs: usize) -> Result<f64> {
        let (ctx, MatmulKey { m, n, k, a_transposed, b_transposed }) = (self.ctx, self.key);
        if self.buffers.is_none() {
            let buf = |what, len| buffer::storage(ctx, what, len);
            self.buffers = Some([buf("tuning A", m * k)?, buf("tuning B", k * n)?, buf("tuning C", m * n)?]);
        }
        let [a, b, c] = self.buffers.as_ref().expect("made above");
        let sa = if a_transposed { Strided::transposed(a, 0, m) } else { Strided::rows(a, 0, k) };
        let sb = if b_transposed { Strided::transposed(b, 0, k) } else { Strided::rows(b, 0, n) };
        let d = matmul(ctx, tile, (m, n, k), sa, sb, Epilogue::Store, Strided::rows(c, 0, n))?;
        let started = std::time::Instant::now();
        run(ctx, &vec![&d; runs])?;
        Ok(started.elapsed().as_secs_f64())
    }
}

/// `C (M, N) = op(A) (M, K) · op(B) (K, N)` with `tile`, through `epilogue` into `out` (row-major, its row
/// stride N or more).
pub fn matmul(
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
    if ctx.tuner().vector_loads() && tile.vector_loads() {
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
