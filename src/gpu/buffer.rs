//! Typed buffers: f32 storage buffers checked against the device's buffer-size limit (each binding of one
//! is checked where it is bound, `ops::bind`), uniforms, and read-back.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;

const F32: u64 = std::mem::size_of::<f32>() as u64;

/// A storage buffer of `len` f32 values (at least one, since wgpu bindings cannot be empty), its size rounded
/// up to whole 16-byte vectors so the matmul kernels can read any range of it as `vec4`.
pub fn storage(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer> {
    let bytes = ((len.max(1) as u64) * F32).next_multiple_of(16);
    ctx.check_buffer(label, bytes)?;
    Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    }))
}

/// A storage buffer holding `data`.
pub fn storage_init(ctx: &GpuContext, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
    let buf = storage(ctx, label, data.len())?;
    if !data.is_empty() {
        ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
    }
    Ok(buf)
}

/// A uniform buffer holding one `T` that can be rewritten later.
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// A buffer the CPU can map to read results: `len` f32 values.
pub fn staging(ctx: &GpuContext, label: &str, len: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (len.max(1) as u64) * F32,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps a staging buffer that a finished submission filled and copies out `len` values.
pub fn read_staging(ctx: &GpuContext, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let slice = staging.slice(0..(len.max(1) as u64) * F32);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait_all()?;
    rx.recv()
        .map_err(|_| Error::Gpu("read-back was never answered".into()))?
        .map_err(|e| Error::Gpu(format!("mapping a read-back buffer: {e}")))?;
    let out = {
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?;
        bytemuck::cast_slice::<u8, f32>(&view)[..len].to_vec()
    };
    staging.unmap();
    ctx.check()?;
    Ok(out)
}

/// Reads `len` f32 values starting at element `offset` of a storage buffer (allocates a staging buffer;
/// for inspection and tests, not for the training loop).
pub fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let stage = staging(ctx, "read-back", len);
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read-back") });
    enc.copy_buffer_to_buffer(buffer, offset as u64 * F32, &stage, 0, len as u64 * F32);
    let idx = ctx.queue.submit([enc.finish()]);
    ctx.wait(idx)?;
    read_staging(ctx, &stage, len)
}
