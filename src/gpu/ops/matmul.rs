//! The strided, tiled matrix product of `linear.wgsl` (all three products of a layer): its flags, its
//! epilogue, and the measurement the tuner (`gpu::tune`) asks for when it picks a tiling.

use super::{Dispatch, Span, bind, bind_rounded, offset_alignment, run, u32_of};
use crate::error::Result;
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::{Kernel, Load, Tile};
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

    /// How a product can read the view (four values at a time where it is aligned), with its offset taken
    /// within a binding as `bind` makes it (from an aligned byte at or below it).
    fn load(&self, ctx: &GpuContext) -> Load {
        Load::of(self.offset % offset_alignment(ctx), self.row_stride, self.col_stride)
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
pub fn matmul_key(ctx: &GpuContext, (m, n, k): (usize, usize, usize), a: &Strided<'_>, b: &Strided<'_>) -> MatmulKey {
    let vectors = |s: &Strided<'_>| ctx.tuner().vector_loads() && s.load(ctx) != Load::Values;
    MatmulKey {
        m,
        n,
        k,
        a_transposed: a.is_transposed(),
        b_transposed: b.is_transposed(),
        a_vectors: vectors(a),
        b_vectors: vectors(b),
    }
}

/// The tiling the device's tuner picks for a product of `shape` over `a` and `b`, measured first where its
/// strategy says so (`MatmulTimer`).
pub fn tile_for(ctx: &GpuContext, shape: (usize, usize, usize), a: &Strided<'_>, b: &Strided<'_>) -> Result<Tile> {
    let key = matmul_key(ctx, shape, a, b);
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
        let (ctx, key) = (self.ctx, self.key);
        let (m, n, k) = (key.m, key.n, key.k);
        // (rows, columns) of each operand as stored, its leading dimension a multiple of 4 where the key's
        // product reads vectors, and its offset 1 where it does not (so it cannot).
        let stored = |rows: usize, cols: usize, vectors: bool| {
            if vectors { (0, cols.next_multiple_of(4), rows) } else { (1, cols, rows) }
        };
        let (a_off, lda, a_rows) =
            if key.a_transposed { stored(k, m, key.a_vectors) } else { stored(m, k, key.a_vectors) };
        let (b_off, ldb, b_rows) =
            if key.b_transposed { stored(n, k, key.b_vectors) } else { stored(k, n, key.b_vectors) };
        if self.buffers.is_none() {
            let buf = |what, len| buffer::storage(ctx, what, len);
            self.buffers = Some([
                buf("tuning A", a_off + a_rows * lda)?,
                buf("tuning B", b_off + b_rows * ldb)?,
                buf("tuning C", m * n)?,
            ]);
        }
        let [a, b, c] = self.buffers.as_ref().expect("made above");
        let sa = if key.a_transposed { Strided::transposed(a, a_off, lda) } else { Strided::rows(a, a_off, lda) };
        let sb = if key.b_transposed { Strided::transposed(b, b_off, ldb) } else { Strided::rows(b, b_off, ldb) };
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
    let (mut a_load, mut b_load) = (Load::Values, Load::Values);
    if ctx.tuner().vector_loads() && tile.vector_loads() {
        (a_load, b_load) = (Load::of(a_off, a.row_stride, a.col_stride), Load::of(b_off, b.row_stride, b.col_stride));
        flags |= vector_flag(a_load, A_VEC_K, A_VEC_M) | vector_flag(b_load, B_VEC_N, B_VEC_K);
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
    let (rows, cols) = tile.block();
    let gx = n.div_ceil(cols);
    let gy = m.div_ceil(rows);
    ctx.check_workgroups("matmul column tiles", u32_of("matmul tiles", gx)?)?;
    ctx.check_workgroups("matmul row tiles", u32_of("matmul tiles", gy)?)?;
    let groups = [gx.max(1) as u32, gy.max(1) as u32, 1];
    let bindings = [bind_a, bind_b, bind_bias, bind_out, bind_pre];
    Ok(Dispatch::new(ctx, Kernel::matmul(tile, a_load, b_load), &params, &bindings, groups))
}

/// The vectorised-load flag of the staged tilings for an operand read as `load`: `along_cols` for rows of
/// four, `along_rows` for columns of four.
fn vector_flag(load: Load, along_cols: u32, along_rows: u32) -> u32 {
    match load {
        Load::Rows => along_cols,
        Load::Columns => along_rows,
        Load::Values => 0,
    }
}
