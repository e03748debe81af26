//! One `Dispatch` per kernel launch: its bind group, uniform and workgroup counts, made once and encoded
//! many times. The builders here are the only place that knows each kernel's uniform layout.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
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
    groups: [u32; 3],
}

impl Dispatch {
    fn new<U: Pod>(ctx: &GpuContext, kernel: Kernel, params: &U, buffers: &[&wgpu::Buffer], groups: [u32; 3]) -> Self {
        let uniform = buffer::uniform(ctx, kernel.entry_point(), params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
        );
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry_point()),
            layout: &ctx.pipelines().get(kernel).layout,
            entries: &entries,
        });
        Self { kernel, bind_group, uniform, groups }
    }

    /// Rewrites the uniform (for example a new learning rate); takes effect at the next submit.
    pub fn set_params<U: Pod>(&self, ctx: &GpuContext, params: &U) {
        ctx.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
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
    u32::try_from(v).map_err(|_| crate::error::Error::DeviceLimit {
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
    pub _pad: [u32; 2],
}

/// Add `bias[bias_off + n]` to every row.
pub const ADD_BIAS: u32 = 1;
/// Also store the value before the activation.
pub const WRITE_PRE: u32 = 2;
/// Multiply by `f'(pre)` instead (the backward epilogue).
pub const MUL_DERIV: u32 = 4;

/// A strided view of a matrix inside a flat buffer: element (r, c) is at `offset + r*row_stride + c*col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major (rows, cols) matrix at `offset`.
    pub fn rows(buffer: &'a wgpu::Buffer, offset: usize, cols: usize) -> Self {
        Self { buffer, offset, row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns stored at `offset`.
    pub fn transposed(buffer: &'a wgpu::Buffer, offset: usize, cols: usize) -> Self {
        Self { buffer, offset, row_stride: 1, col_stride: cols }
    }
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
}

impl<'a> Epilogue<'a> {
    /// A plain product.
    pub fn none() -> Self {
        Self { bias: None, pre: None, activation: Activation::Identity, derivative_at: None }
    }

    /// Forward: `f(C + bias)`, storing `C + bias` at `pre`.
    pub fn forward(bias: (&'a wgpu::Buffer, usize), pre: (&'a wgpu::Buffer, usize), activation: Activation) -> Self {
        Self { bias: Some(bias), pre: Some(pre), activation, derivative_at: None }
    }

    /// Backward: `C ⊙ f'(Z)`, Z at `z`.
    pub fn derivative(activation: Activation, z: (&'a wgpu::Buffer, usize)) -> Self {
        Self { bias: None, pre: None, activation, derivative_at: Some(z) }
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
    if epilogue.derivative_at.is_some() {
        flags = MUL_DERIV;
    }
    let (bias_buf, bias_off) = epilogue.bias.unwrap_or((b.buffer, 0));
    let (pre_buf, pre_off) = epilogue.derivative_at.or(epilogue.pre).unwrap_or((scratch, 0));
    let params = MatmulParams {
        m: u32_of("matmul rows", m)?,
        n: u32_of("matmul columns", n)?,
        k: u32_of("matmul depth", k)?,
        flags,
        a_off: u32_of("matmul A offset", a.offset)?,
        a_rs: u32_of("matmul A stride", a.row_stride)?,
        a_cs: u32_of("matmul A stride", a.col_stride)?,
        b_off: u32_of("matmul B offset", b.offset)?,
        b_rs: u32_of("matmul B stride", b.row_stride)?,
        b_cs: u32_of("matmul B stride", b.col_stride)?,
        bias_off: u32_of("bias offset", bias_off)?,
        out_off: u32_of("output offset", out.1)?,
        pre_off: u32_of("pre-activation offset", pre_off)?,
        act: epilogue.activation.shader_id(),
        _pad: [0; 2],
    };
    let gx = n.div_ceil(tile.size());
    let gy = m.div_ceil(tile.size());
    ctx.check_workgroups("matmul column tiles", u32_of("matmul tiles", gx)?)?;
    ctx.check_workgroups("matmul row tiles", u32_of("matmul tiles", gy)?)?;
    let groups = [gx.max(1) as u32, gy.max(1) as u32, 1];
    Ok(Dispatch::new(ctx, tile.kernel(), &params, &[a.buffer, b.buffer, bias_buf, out.0, pre_buf], groups))
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
pub fn activation_forward(
    ctx: &GpuContext,
    act: Activation,
    n: usize,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = EltParams { n: u32_of("activation size", n)?, act: act.shader_id(), _pad: [0; 2] };
    let g = elementwise_groups(ctx, "activation_forward", n)?;
    Ok(Dispatch::new(ctx, Kernel::ActivationForward, &p, &[src, src, dst], g))
}

/// `delta = grad ⊙ f'(pre)` over `n` elements.
pub fn activation_backward(
    ctx: &GpuContext,
    act: Activation,
    n: usize,
    grad: &wgpu::Buffer,
    pre: &wgpu::Buffer,
    delta: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = EltParams { n: u32_of("activation size", n)?, act: act.shader_id(), _pad: [0; 2] };
    let g = elementwise_groups(ctx, "activation_backward", n)?;
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
    _pad: [u32; 2],
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
            _pad: [0; 2],
        })
    }
}

/// `out = scale · (pred − target)` over (rows, cols): the MSE gradient with `scale = 2/(B·O)`, the fused
/// softmax cross-entropy δ with `scale = 1/B`.
pub fn loss_grad(
    ctx: &GpuContext,
    shape: (usize, usize),
    scale: f32,
    pred: &wgpu::Buffer,
    target: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = LossParams::new(shape, scale, 0, 0.0)?;
    let g = elementwise_groups(ctx, "loss_grad", shape.0 * shape.1)?;
    Ok(Dispatch::new(ctx, Kernel::LossGrad, &p, &[pred, target, out], g))
}

/// The MSE gradient `2 (A − Y) / (B·O)`.
pub fn mse_grad(
    ctx: &GpuContext,
    shape: (usize, usize),
    pred: &wgpu::Buffer,
    target: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    loss_grad(ctx, shape, 2.0 / (shape.0 * shape.1).max(1) as f32, pred, target, out)
}

/// The fused softmax cross-entropy gradient `(A − Y) / B`, A the softmax output.
pub fn xent_grad(
    ctx: &GpuContext,
    shape: (usize, usize),
    probs: &wgpu::Buffer,
    target: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    loss_grad(ctx, shape, 1.0 / shape.0.max(1) as f32, probs, target, out)
}

/// `out[out_off] = mean((pred − target)²)` over (rows, cols); with `acc_weight ≠ 0` also
/// `out[out_off + 1] += loss · acc_weight`.
pub fn mse_loss(
    ctx: &GpuContext,
    shape: (usize, usize),
    pred: &wgpu::Buffer,
    target: &wgpu::Buffer,
    out: (&wgpu::Buffer, usize),
    acc_weight: f32,
) -> Result<Dispatch> {
    let p = LossParams::new(shape, 1.0 / (shape.0 * shape.1).max(1) as f32, out.1, acc_weight)?;
    Ok(Dispatch::new(ctx, Kernel::MseLoss, &p, &[pred, target, out.0], [1, 1, 1]))
}

/// `out[out_off] = mean_b Σ_j y (logsumexp(z_b) − z_bj)` from logits Z (rows, cols); accumulates like `mse_loss`.
pub fn xent_loss(
    ctx: &GpuContext,
    shape: (usize, usize),
    logits: &wgpu::Buffer,
    target: &wgpu::Buffer,
    out: (&wgpu::Buffer, usize),
    acc_weight: f32,
) -> Result<Dispatch> {
    let p = LossParams::new(shape, 1.0 / shape.0.max(1) as f32, out.1, acc_weight)?;
    Ok(Dispatch::new(ctx, Kernel::XentLoss, &p, &[logits, target, out.0], [1, 1, 1]))
}

/// `out = softmax(z)` per row of (rows, cols).
pub fn softmax_rows(ctx: &GpuContext, shape: (usize, usize), z: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<Dispatch> {
    let p = LossParams::new(shape, 1.0, 0, 0.0)?;
    let g = elementwise_groups(ctx, "softmax_rows", shape.0)?;
    Ok(Dispatch::new(ctx, Kernel::SoftmaxRows, &p, &[z, z, out], g))
}

/// Uniform of `bias_grad` and `gather_rows` (`GradParams` in `grad.wgsl`, `GatherParams` in `data.wgsl`):
/// a (rows, cols) shape and an offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ShapeParams {
    rows: u32,
    cols: u32,
    off: u32,
    _pad: u32,
}

/// `out[out_off + c] = Σ_r delta[r][c]`, delta (rows, cols).
pub fn bias_grad(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    delta: &wgpu::Buffer,
    out: (&wgpu::Buffer, usize),
) -> Result<Dispatch> {
    let p = ShapeParams {
        rows: u32_of("bias gradient rows", rows)?,
        cols: u32_of("bias gradient columns", cols)?,
        off: u32_of("bias gradient offset", out.1)?,
        _pad: 0,
    };
    let g = elementwise_groups(ctx, "bias_grad", cols)?;
    Ok(Dispatch::new(ctx, Kernel::BiasGrad, &p, &[delta, delta, out.0], g))
}

/// Uniform of the optimizers (`OptimParams` in `optim.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct OptimParams {
    pub n: u32,
    pub _pad0: u32,
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
    pub _pad1: u32,
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
/// bias corrections on the GPU, notes a non-finite loss), `grad_norm` when clipping, and the update itself,
/// which reads `grads` and updates `params`, `m`, `v`.
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
    let p = OptimParams::new(cfg, n, lr, max_grad_norm)?;
    let g = elementwise_groups(ctx, kernel.entry_point(), n)?;
    let bufs = [grads, params, state.m, state.v, state.scalars, state.loss];
    let mut out = vec![Dispatch::new(ctx, Kernel::OptimPrepare, &p, &bufs, [1, 1, 1])];
    if max_grad_norm.is_some() {
        out.push(Dispatch::new(ctx, Kernel::GradNorm, &p, &bufs, [1, 1, 1]));
    }
    out.push(Dispatch::new(ctx, kernel, &p, &bufs, g));
    Ok(out)
}

/// `out (rows, cols) = src[idx[off + r]]`: a batch gathered from a data set resident on the GPU.
pub fn gather_rows(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    src: &wgpu::Buffer,
    idx: (&wgpu::Buffer, usize),
    out: &wgpu::Buffer,
) -> Result<Dispatch> {
    let p = ShapeParams {
        rows: u32_of("batch rows", rows)?,
        cols: u32_of("data columns", cols)?,
        off: u32_of("row offset", idx.1)?,
        _pad: 0,
    };
    let g = elementwise_groups(ctx, "gather_rows", rows * cols)?;
    Ok(Dispatch::new(ctx, Kernel::GatherRows, &p, &[src, idx.0, out], g))
}
