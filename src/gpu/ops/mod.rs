//! One `Dispatch` per kernel launch: its bind group, uniform and workgroup counts, made once and encoded
//! many times. The builders (in `matmul`, `elementwise`, `optimizer`, and `gpu::fused::launch` for the fused
//! step) are the only place that knows each kernel's uniform layout; this file binds buffer ranges and checks
//! them against the device's limits.

mod elementwise;
mod matmul;
mod optimizer;

pub use elementwise::*;
pub use matmul::*;
pub use optimizer::*;

use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::{Kernel, Slot};
use crate::gpu::structs::ShaderStruct;

/// Threads per workgroup of the elementwise kernels (`WG` in `common.wgsl`).
pub const WG: u32 = 256;

/// A kernel launch with everything bound: encode it into any compute pass, any number of times.
pub struct Dispatch {
    kernel: Kernel,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    /// The uniform's current bytes (a `U` with `U::WGSL_NAME == kernel.uniform().name`), so one field can be
    /// changed (`update_params`).
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
pub(crate) struct Binding<'a> {
    buffer: &'a wgpu::Buffer,
    start: u64,
    size: u64,
}

pub(crate) const F32: u64 = 4;

/// The device's storage-offset alignment, in f32 values.
pub fn offset_alignment(ctx: &GpuContext) -> usize {
    (ctx.limits().min_storage_buffer_offset_alignment as usize / F32 as usize).max(1)
}

/// The most f32 values one storage binding holds on this device.
/// (Whole 16-byte vectors, since the matmul's operands are bound in those.)
pub fn binding_capacity(ctx: &GpuContext) -> usize {
    (ctx.limits().max_storage_buffer_binding_size / 16 * 4) as usize
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
pub(crate) fn bind<'a>(ctx: &GpuContext, what: &str, span: Span<'a>, len: usize) -> Result<(Binding<'a>, usize)> {
    bind_rounded(ctx, what, span, len, F32)
}

/// As `bind`, the binding's size rounded up to a multiple of `unit` bytes (16 for `array<vec4<f32>>`), as far
/// as the buffer reaches (`buffer::storage` makes whole vectors).
pub(crate) fn bind_rounded<'a>(
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
pub(crate) fn bind_aligned<'a>(ctx: &GpuContext, what: &str, span: Span<'a>, len: usize) -> Result<Binding<'a>> {
    match bind(ctx, what, span, len)? {
        (b, 0) => Ok(b),
        (_, rem) => Err(Error::Gpu(format!("{what}: offset {} is not aligned ({rem} past a boundary)", span.offset))),
    }
}

/// Panics where two of a launch's bindings overlap in one buffer and either is written: WebGPU refuses
/// such a bind group (native backends take it), so the check runs everywhere, where the tests see it.
fn check_no_writable_alias(kernel: Kernel, bindings: &[Binding<'_>], slots: &[(u32, Slot)]) {
    let written = |slot: Slot| matches!(slot, Slot::Array { write: true, .. } | Slot::Struct { write: true, .. });
    for (i, (a, &(ai, sa))) in bindings.iter().zip(slots).enumerate() {
        for (b, &(bi, sb)) in bindings.iter().zip(slots).skip(i + 1) {
            let overlap = a.buffer == b.buffer && a.start < b.start + b.size && b.start < a.start + a.size;
            assert!(
                !(overlap && (written(sa) || written(sb))),
                "{kernel:?}: bindings {ai} and {bi} overlap in one buffer and one is written (WebGPU refuses this)"
            );
        }
    }
}

impl Dispatch {
    /// The launch of `kernel` with uniform `params` and `bindings` for the kernel's storage bindings, in
    /// the order of `Kernel::bindings` (binding 0, the uniform, excepted).
    pub(crate) fn new<U: ShaderStruct>(
        ctx: &GpuContext,
        kernel: Kernel,
        params: &U,
        bindings: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Self {
        check_uniform::<U>(kernel);
        let slots = &kernel.bindings()[1..];
        assert_eq!(bindings.len(), slots.len(), "{kernel:?} takes {} storage bindings", slots.len());
        check_no_writable_alias(kernel, bindings, slots);
        let uniform = buffer::uniform(ctx, kernel.entry_point(), params);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(bindings.iter().zip(slots).map(|(b, &(binding, _))| wgpu::BindGroupEntry {
            binding,
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
    pub fn set_params<U: ShaderStruct>(&mut self, ctx: &GpuContext, params: &U) {
        check_uniform::<U>(self.kernel);
        self.params = bytemuck::bytes_of(params).to_vec();
        ctx.queue.write_buffer(&self.uniform, 0, &self.params);
    }

    /// Changes the uniform through `f`, keeping its other fields (for example only the learning rate of
    /// one piece of an update). `U` must be the kernel's uniform type.
    pub fn update_params<U: ShaderStruct>(&mut self, ctx: &GpuContext, f: impl FnOnce(&mut U)) {
        let mut u = self.params::<U>();
        f(&mut u);
        self.set_params(ctx, &u);
    }

    /// The uniform (for inspection: which flags a product got). `U` must be the kernel's uniform type.
    pub fn params<U: ShaderStruct>(&self) -> U {
        check_uniform::<U>(self.kernel);
        bytemuck::pod_read_unaligned(&self.params)
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

/// Asserts that `U` is `kernel`'s uniform: using another struct's bytes would be a bug in the builders.
fn check_uniform<U: ShaderStruct>(kernel: Kernel) {
    let want = kernel.uniform();
    assert!(
        U::WGSL_NAME == want.name && std::mem::size_of::<U>() == want.size,
        "{kernel:?}'s uniform is {}, not {}",
        want.name,
        U::WGSL_NAME
    );
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
pub(crate) fn elementwise_groups(ctx: &GpuContext, what: &str, n: usize) -> Result<[u32; 3]> {
    let groups = n.div_ceil(WG as usize).max(1);
    let max = ctx.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    let (x, y) = if groups <= max { (groups, 1) } else { (max, groups.div_ceil(max)) };
    ctx.check_workgroups(what, y.min(u32::MAX as usize) as u32)?;
    Ok([x as u32, y as u32, 1])
}

pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::DeviceLimit {
        what: what.to_string(),
        limit: "32-bit indexing in the shaders",
        requested: v as u64,
        available: u32::MAX as u64,
    })
}
