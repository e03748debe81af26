//! One `Dispatch` per kernel launch: its bind group, uniform and workgroup counts, made once and encoded
//! many times. The builders here are the only place that knows each kernel's uniform layout.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::model::Activation;
use crate::optim::{OptimConfig, OptimizerKind};

/// Threads per workgroup of the elementwise kernels (`WG` in `common.wgsl`).
pub const WG: u32 = 256;

/// A kernel launch with everything bound: encode it into any compute pass, any number of times.
pub struct Dispatch {
    kernel: Kernel,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    /// The uniform's current bytes, so one field can be changed (`update_params`).
    params: Vec<u8>,
    groups: [u32; 3],
}

/// The f32 values of a buffer from element `offset` on; a plain `&Buffer` is the whole buffer.
#[derive(Clone, Copy, Debug)]
pub struct Span<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
}

impl<'a> From<&'a wgpu::Buffer> for Span<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }
}

impl<'a> From<(&'a wgpu::Buffer, usize)> for Span<'a> {
    fn from((buffer, offset): (&'a wgpu::Buffer, usize)) -> Self {
        Self { buffer, offset }
    }
}

/// One storage binding: `size` bytes of `buffer` from byte `start`.
#[derive(Clone, Copy, Debug)]
struct Binding<'a> {
    buffer: &'a wgpu::Buffer,
    start: u64,
    size: u64,
}

const F32: u64 = 4;

/// The device's storage-offset alignment, in f32 values.
pub fn offset_alignment(ctx: &GpuContext) -> usize {
    (ctx.limits().min_storage_buffer_offset_alignment as usize / F32 as usize).max(1)
}

/// The most f32 values one storage binding holds on this device.
pub fn binding_capacity(ctx: &GpuContext) -> usize {
    (ctx.limits().max_storage_buffer_binding_size / F32) as usize
}

/// The most rows of `cols` values that one binding holds wherever it starts in a buffer (it may have to
/// begin up to one alignment early); 0 when not even one row fits.
pub fn rows_per_binding(ctx: &GpuContext, cols: usize) -> usize {
    binding_capacity(ctx).saturating_sub(offset_alignment(ctx) - 1) / cols.max(1)
}

/// The most rows of `cols` values that one binding holds, rounded down to a multiple of the offset
/// alignment, so that pieces of that many rows start on aligned offsets; 0 when none fit.
pub fn aligned_rows_per_binding(ctx: &GpuContext, cols: usize) -> usize {
    let align = offset_alignment(ctx);
    binding_capacity(ctx) / cols.max(1) / align * align
}

/// `[start, end)` ranges of at most `per` covering `0..total` (one empty range for `total` = 0).
pub fn pieces(total: usize, per: usize) -> Vec<std::ops::Range<usize>> {
    if total == 0 || per == 0 {
        return std::iter::once(0..total).collect();
    }
    (0..total).step_by(per).map(|s| s..(s + per).min(total)).collect()
}

/// Binds `len` values from `span`'s offset. The binding starts at the aligned byte at or below it, so
/// the values are at element `rem` of the binding (returned); its size is checked against the device's
/// storage-binding limit, naming `what`.
fn bind<'a>(ctx: &GpuContext, what: &str, span: Span<'a>, len: usize) -> Result<(Binding<'a>, usize)> {
    bind_rounded(ctx, what, span, len, F32)
}

/// As `bind`, the binding's size rounded up to a multiple of `unit` bytes (16 for `array<vec4<f32>>`), as far
/// as the buffer reaches (`buffer::storage` makes whole vectors).
fn bind_rounded<'a>(
    ctx: &GpuContext,
    what: &str,
    span: Span<'a>,
    len: usize,
    unit: u64,
) -> Result<(Binding<'a>, usize)> {
    let align = ctx.limits().min_storage_buffer_offset_alignment.max(4) as u64;
    let total = span.buffer.size();
    let first = (span.offset as u64 * F32).min(total.saturating_sub(F32));
    let end = ((span.offset + len.max(1)) as u64 * F32).min(total).max(first + F32);
    if (span.offset + len) as u64 * F32 > total {
        return Err(Error::Gpu(format!(
            "{what}: values {}..{} lie outside a buffer of {} values",
            span.offset,
            span.offset + len,
            total / F32
        )));
    }
    let start = first / align * align;
    let end = (start + (end - start).next_multiple_of(unit)).min(total);
    ctx.check_binding(what, end - start)?;
    Ok((Binding { buffer: span.buffer, start, size: end - start }, ((first - start) / F32) as usize))
}

/// As `bind`, for kernels that take no offset: the span must start on an aligned offset.
fn bind_aligned<'a>(ctx: &GpuContext, what: &str, span: Span<'a>, len: usize) -> Result<Binding<'a>> {
    match bind(ctx, what, span, len)? {
        (b, 0) => Ok(b),
        (_, rem) => Err(Error::Gpu(format!("{what}: offset {} is not aligned ({rem} past a boundary)", span.offset))),
    }
}

impl Dispatch {
    fn new<U: Pod>(ctx: &GpuContext, kernel: Kernel, params: &U, bindings: &[Binding<'_>], groups: [u32; 3]) -> Self {
        let uniform = buffer::uniform(ctx, kernel.entry_point(), params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(bindings.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: b.buffer,
                offset: b.start,
                size: wgpu::BufferSize::new(b.size),
            }),
        }));
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry_point()),
            layout: &ctx.pipelines().get(kernel).layout,
            entries: &entries,
        });
        Self { kernel, bind_group, uniform, params: bytemuck::bytes_of(params).to_vec(), groups }
    }

    /// Rewrites the uniform (for example a new learning rate); takes effect at the next submit.
    pub fn set_params<U: Pod>(&mut self, ctx: &GpuContext, params: &U) {
        self.params = bytemuck::bytes_of(params).to_vec();
        ctx.queue.write_buffer(&self.uniform, 0, &self.params);
    }

    /// Changes the uniform through `f`, keeping its other fields (for example only the learning rate of
    /// one piece of an update). `U` must be the kernel's uniform type.
    pub fn update_params<U: Pod>(&mut self, ctx: &GpuContext, f: impl FnOnce(&mut U)) {
        if self.params.len() == std::mem::size_of::<U>() {
            let mut u: U = bytemuck::pod_read_unaligned(&self.params);
            f(&mut u);
            self.set_params(ctx, &u);
        }
    }

    /// The uniform as `U` (for inspection: which flags a product got), when `U` has its size.
    pub fn params<U: Pod>(&self) -> Option<U> {
        (self.params.len() == std::mem::size_of::<U>()).then(|| bytemuck::pod_read_unaligned(&self.params))
    }

    /// Records the launch into a compute pass.
    pub fn encode(&self, ctx: &GpuContext, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&ctx.pipelines().get(self.kernel).pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// Encodes `dispatches` in order into one compute pass of `encoder`.
pub fn encode_all<'a>(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
) {
    encode_timed(ctx, encoder, dispatches, None)
}

/// As `encode_all`, writing timestamps at the start and end of the pass when `timestamps` is given.
pub fn encode_timed<'a>(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    dispatches: impl IntoIterator<Item = &'a Dispatch>,
    timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
) {
    let mut pass =
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: timestamps });
    for d in dispatches {
        d.encode(ctx, &mut pass);
    }
}

/// Runs `dispatches` in one submit and waits for them (for tests and one-off work).
pub fn run(ctx: &GpuContext, dispatches: &[&Dispatch]) -> Result<()> {
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
    encode_all(ctx, &mut enc, dispatches.iter().copied());
    let idx = ctx.queue.submit([enc.finish()]);
    ctx.wait(idx)
}

/// Workgroup counts for `n` threads of the elementwise kernels, folded into y past the per-dimension limit.
fn elementwise_groups(ctx: &GpuContext, what: &str, n: usize) -> Result<[u32; 3]> {
    let groups = n.div_ceil(WG as usize).max(1);
    let max = ctx.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    let (x, y) = if groups <= max { (groups, 1) } else { (max, groups.div_ceil(max)) };
    ctx.check_workgroups(what, y.min(u32::MAX as usize) as u32)?;
    Ok([x as u32, y as u32, 1])
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::DeviceLimit {
        what: what.to_string(),
        limit: "32-bit indexing in the shaders",
        requested: v as u64,
        available: u32::MAX as u64,
    })
}

/// Uniform of `matmul` (`MatmulParams` in `linear.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub bias_off: u32,
    pub out_off: u32,
    pub pre_off: u32,
    pub act: u32,
    pub ldc: u32,
    pub _pad: u32,
}

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
        Self { bias, pre, activation, derivative_at, accumulate: Accumulate::No, row_stride: None }
    }

    /// The same epilogue, adding the partial sum at `acc` first.
    pub fn accumulating(self, acc: Accumulate) -> Self {
        Self { accumulate: acc, ..self }
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

/// The two tilings of the matrix product in `linear.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// `matmul`: 32x32 per workgroup, 2x2 per thread.
    Small,
    /// `matmul_big`: 64x64 per workgroup, 4x4 per thread in registers.
    Big,
}

impl Tile {
    fn kernel(self) -> Kernel {
        match self {
            Tile::Small => Kernel::Matmul,
            Tile::Big => Kernel::MatmulBig,
        }
    }
    fn size(self) -> usize {
        match self {
            Tile::Small => 32,
            Tile::Big => 64,
        }
    }
    /// The choice without measuring: the big tile once both output dimensions fill it.
    pub fn heuristic(m: usize, n: usize) -> Tile {
        if m >= 64 && n >= 64 { Tile::Big } else { Tile::Small }
    }
}

/// Products with at least this many multiply-adds are timed once per adapter and shape (`autotune`).
pub const AUTOTUNE_MACS: usize = 1 << 24;

/// Picks the tiling for a product: `BACKPROP_MATMUL_TILE=small|big` forces one; large products are timed
/// both ways once per adapter and shape and the faster kept; small ones use `Tile::heuristic`.
pub fn choose_tile(ctx: &GpuContext, (m, n, k): (usize, usize, usize), transposed: (bool, bool)) -> Result<Tile> {
    match std::env::var("BACKPROP_MATMUL_TILE").as_deref() {
        Ok("small") => return Ok(Tile::Small),
        Ok("big") => return Ok(Tile::Big),
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

/// Times both tilings on scratch buffers of the product's shape (best of three after a warm-up run).
fn autotune(ctx: &GpuContext, (m, n, k): (usize, usize, usize), (ta, tb): (bool, bool)) -> Result<Tile> {
    let a = buffer::storage(ctx, "autotune A", m * k)?;
    let b = buffer::storage(ctx, "autotune B", k * n)?;
    let c = buffer::storage(ctx, "autotune C", m * n)?;
    let scratch = buffer::storage(ctx, "autotune scratch", 1)?;
    let sa = if ta { Strided::transposed(&a, 0, m) } else { Strided::rows(&a, 0, k) };
    let sb = if tb { Strided::transposed(&b, 0, k) } else { Strided::rows(&b, 0, n) };
    let mut best = (f64::INFINITY, Tile::heuristic(m, n));
    for tile in [Tile::Small, Tile::Big] {
        let d = matmul_tiled(ctx, tile, (m, n, k), sa, sb, Epilogue::none(), (&c, 0), &scratch)?;
        run(ctx, &[&d])?;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            run(ctx, &[&d])?;
            let s = t.elapsed().as_secs_f64();
            if s < best.0 {
                best = (s, tile);
            }
        }
    }
    Ok(best.1)
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
    if tile == Tile::Big && std::env::var_os("BACKPROP_NO_VEC4").is_none() {
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
        _pad: 0,
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

/// Uniform of the activation kernels (`EltParams` in `activation.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct EltParams {
    n: u32,
    act: u32,
    _pad: [u32; 2],
}

/// `dst = f(src)` over `n` elements.
pub fn activation_forward<'a>(
    ctx: &GpuContext,
    act: Activation,
    n: usize,
    src: impl Into<Span<'a>>,
    dst: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    let p = EltParams { n: u32_of("activation size", n)?, act: act.shader_id(), _pad: [0; 2] };
    let g = elementwise_groups(ctx, "activation_forward", n)?;
    let src = bind_aligned(ctx, "activation input", src.into(), n)?;
    let dst = bind_aligned(ctx, "activation output", dst.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::ActivationForward, &p, &[src, src, dst], g))
}

/// `delta = grad ⊙ f'(pre)` over `n` elements.
pub fn activation_backward<'a>(
    ctx: &GpuContext,
    act: Activation,
    n: usize,
    grad: impl Into<Span<'a>>,
    pre: impl Into<Span<'a>>,
    delta: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    let p = EltParams { n: u32_of("activation size", n)?, act: act.shader_id(), _pad: [0; 2] };
    let g = elementwise_groups(ctx, "activation_backward", n)?;
    let grad = bind_aligned(ctx, "loss gradient", grad.into(), n)?;
    let pre = bind_aligned(ctx, "pre-activation", pre.into(), n)?;
    let delta = bind_aligned(ctx, "delta", delta.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::ActivationBackward, &p, &[grad, pre, delta], g))
}

/// Uniform of the loss kernels (`LossParams` in `loss.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct LossParams {
    n: u32,
    rows: u32,
    cols: u32,
    out_off: u32,
    scale: f32,
    acc_weight: f32,
    accumulate: u32,
    _pad: u32,
}

impl LossParams {
    fn new((rows, cols): (usize, usize), scale: f32, out_off: usize, acc_weight: f32) -> Result<Self> {
        Ok(Self {
            n: u32_of("loss size", rows * cols)?,
            rows: u32_of("loss rows", rows)?,
            cols: u32_of("loss columns", cols)?,
            out_off: u32_of("loss offset", out_off)?,
            scale,
            acc_weight,
            accumulate: 0,
            _pad: 0,
        })
    }
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
    let n = shape.0 * shape.1;
    let p = LossParams::new(shape, scale, 0, 0.0)?;
    let g = elementwise_groups(ctx, "loss_grad", n)?;
    let pred = bind_aligned(ctx, "prediction", pred.into(), n)?;
    let target = bind_aligned(ctx, "target", target.into(), n)?;
    let out = bind_aligned(ctx, "loss gradient", out.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::LossGrad, &p, &[pred, target, out], g))
}

/// The MSE gradient `2 (A − Y) / (B·O)`, B the rows of the whole batch `piece` belongs to.
pub fn mse_grad<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    loss_grad(ctx, shape, 2.0 / (piece.batch * shape.1).max(1) as f32, pred, target, out)
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

/// The loss kernels' common part: `kernel` over (rows, cols), sum scaled by `scale`.
#[allow(clippy::too_many_arguments)]
fn loss_kernel<'a>(
    ctx: &GpuContext,
    kernel: Kernel,
    shape: (usize, usize),
    scale: f32,
    piece: Piece,
    pred: Span<'a>,
    target: Span<'a>,
    out: (&'a wgpu::Buffer, usize),
    acc_weight: f32,
) -> Result<Dispatch> {
    let n = shape.0 * shape.1;
    let pred = bind_aligned(ctx, "prediction", pred, n)?;
    let target = bind_aligned(ctx, "target", target, n)?;
    let (out_b, out_off) = bind(ctx, "loss", out.into(), 2)?;
    let mut p = LossParams::new(shape, scale, out_off, acc_weight)?;
    p.accumulate = u32::from(!piece.first);
    Ok(Dispatch::new(ctx, kernel, &p, &[pred, target, out_b], [1, 1, 1]))
}

/// `out[out_off] = mean((pred − target)²)` over (rows, cols); with `acc_weight ≠ 0` also
/// `out[out_off + 1] += loss · acc_weight`. The mean is over `piece`'s whole batch; pieces after the
/// first add to `out[out_off]`.
pub fn mse_loss<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    pred: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
    acc_weight: f32,
) -> Result<Dispatch> {
    let scale = 1.0 / (piece.batch * shape.1).max(1) as f32;
    loss_kernel(ctx, Kernel::MseLoss, shape, scale, piece, pred.into(), target.into(), out, acc_weight)
}

/// `out[out_off] = mean_b Σ_j y (logsumexp(z_b) − z_bj)` from logits Z (rows, cols); accumulates like `mse_loss`.
pub fn xent_loss<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    piece: Piece,
    logits: impl Into<Span<'a>>,
    target: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
    acc_weight: f32,
) -> Result<Dispatch> {
    let scale = 1.0 / piece.batch.max(1) as f32;
    loss_kernel(ctx, Kernel::XentLoss, shape, scale, piece, logits.into(), target.into(), out, acc_weight)
}

/// `out = softmax(z)` per row of (rows, cols).
pub fn softmax_rows<'a>(
    ctx: &GpuContext,
    shape: (usize, usize),
    z: impl Into<Span<'a>>,
    out: impl Into<Span<'a>>,
) -> Result<Dispatch> {
    let n = shape.0 * shape.1;
    let p = LossParams::new(shape, 1.0, 0, 0.0)?;
    let g = elementwise_groups(ctx, "softmax_rows", shape.0)?;
    let z = bind_aligned(ctx, "logits", z.into(), n)?;
    let out = bind_aligned(ctx, "softmax output", out.into(), n)?;
    Ok(Dispatch::new(ctx, Kernel::SoftmaxRows, &p, &[z, z, out], g))
}

/// Uniform of `bias_grad` (`GradParams` in `grad.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GradParams {
    rows: u32,
    cols: u32,
    off: u32,
    accumulate: u32,
}

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
    (rows, cols): (usize, usize),
    first: bool,
    delta: impl Into<Span<'a>>,
    out: (&'a wgpu::Buffer, usize),
) -> Result<Dispatch> {
    let delta = bind_aligned(ctx, "delta", delta.into(), rows * cols)?;
    let (out_b, off) = bind(ctx, "bias gradient", out.into(), cols)?;
    let p = GradParams {
        rows: u32_of("bias gradient rows", rows)?,
        cols: u32_of("bias gradient columns", cols)?,
        off: u32_of("bias gradient offset", off)?,
        accumulate: u32::from(!first),
    };
    // One workgroup of 256 threads per 16 columns.
    let g = elementwise_groups(ctx, "bias_grad", cols * 16)?;
    Ok(Dispatch::new(ctx, Kernel::BiasGrad, &p, &[delta, delta, out_b], g))
}

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

/// Uniform of `gather_rows` (`GatherParams` in `data.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GatherParams {
    rows: u32,
    cols: u32,
    off: u32,
    lo: u32,
    hi: u32,
    _pad: [u32; 3],
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
