//! Typed buffers: f32 storage buffers checked against the device's buffer-size limit (each binding of one
//! is checked where it is bound, `ops::bind`), uniforms, and read-back. Every read-back is a future (`_async`),
//! which the web awaits; the plain functions wait for it (natively; see `wait::block_on`).

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::wait::block_on;

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

/// A storage buffer holding one `T`, a struct a kernel binds (its size rounded up to whole 16-byte vectors).
pub fn storage_struct<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> Result<wgpu::Buffer> {
    let bytes = (std::mem::size_of::<T>().max(1) as u64).next_multiple_of(16);
    ctx.check_buffer(label, bytes)?;
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buf, 0, bytemuck::bytes_of(value));
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

/// A buffer the CPU can map to read results: `bytes` bytes (at least 4).
pub fn staging(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(F32),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps a staging buffer that a submission fills and copies out its first `bytes` bytes. Natively the device
/// is polled (with the context's timeout) until the mapping is done, so the future is ready at once; on the
/// web it resolves when the browser has mapped the buffer.
pub async fn read_staging_bytes_async(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let slice = staging.slice(0..bytes.max(F32));
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait_all()?;
    rx.await
        .map_err(|_| Error::Gpu("read-back was never answered".into()))?
        .map_err(|e| Error::Gpu(format!("mapping a read-back buffer: {e}")))?;
    let out = {
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?;
        view[..bytes as usize].to_vec()
    };
    staging.unmap();
    ctx.check()?;
    Ok(out)
}

/// [`read_staging_bytes_async`], waited for.
pub fn read_staging_bytes(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    block_on("a read-back", read_staging_bytes_async(ctx, staging, bytes))
}

/// Maps a staging buffer that a finished submission filled and copies out `len` f32 values.
pub fn read_staging(ctx: &GpuContext, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let bytes = read_staging_bytes(ctx, staging, len as u64 * F32)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// Reads one `T` from byte `offset` of a buffer (a struct a kernel wrote; allocates a staging buffer).
pub async fn read_struct_async<T: bytemuck::Pod>(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64) -> Result<T> {
    let bytes = read_bytes(ctx, buffer, offset, std::mem::size_of::<T>() as u64).await?;
    Ok(bytemuck::pod_read_unaligned(&bytes))
}

/// [`read_struct_async`], waited for.
pub fn read_struct<T: bytemuck::Pod>(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64) -> Result<T> {
    block_on("a read-back", read_struct_async(ctx, buffer, offset))
}

/// Reads `len` f32 values starting at element `offset` of a storage buffer (allocates a staging buffer;
/// for inspection and tests, not for the training loop).
pub async fn read_async(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let bytes = read_bytes(ctx, buffer, offset as u64 * F32, len as u64 * F32).await?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// [`read_async`], waited for.
pub fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
    block_on("a read-back", read_async(ctx, buffer, offset, len))
}

/// Reads `bytes` bytes from byte `offset` of a buffer (both multiples of 4).
async fn read_bytes(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
    let stage = staging(ctx, "read-back", bytes);
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read-back") });
    enc.copy_buffer_to_buffer(buffer, offset, &stage, 0, bytes);
    let idx = ctx.queue.submit([enc.finish()]);
    ctx.wait(idx)?;
    read_staging_bytes_async(ctx, &stage, bytes).await
}
