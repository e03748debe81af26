//! `timed_step`: one training step timed part by part, for `backprop bench`.

use ndarray::ArrayView2;
use web_time::Instant;

use super::GpuMlp;
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops;
use crate::gpu::wait;

/// Where the time of one GPU training step goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepTiming {
    /// Writing the batch into GPU buffers, until the copy is done.
    pub upload_ms: f64,
    /// The step's kernels: from timestamp queries where the adapter has them, else the wall time of the submit.
    pub kernel_ms: f64,
    /// True when `kernel_ms` comes from timestamp queries.
    pub kernel_timestamps: bool,
    /// Reading the loss back.
    pub readback_ms: f64,
    /// The whole step, wall clock.
    pub total_ms: f64,
}

/// Query set and buffers for timing a step's compute pass, made on first use.
pub(super) struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl Timer {
    fn new(ctx: &GpuContext) -> Self {
        let buffer = |label, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Self {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("step timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: buffer("timestamps", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            staging: buffer("timestamps read-back", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        }
    }

    /// The pass's timestamps: at its start and at its end.
    fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Copies the timestamps where `read_ms` reads them, once `encoder` has run.
    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, 16);
    }

    /// Milliseconds between the two timestamps, where they are in order.
    fn read_ms(&self, ctx: &GpuContext) -> Result<Option<f64>> {
        let slice = self.staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        ctx.wait_all()?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
            bytemuck::cast_slice::<u8, u64>(&view).to_vec()
        };
        self.staging.unmap();
        let period = ctx.queue.get_timestamp_period() as f64;
        Ok(match ticks.as_slice() {
            [a, b] if b > a => Some((b - a) as f64 * period / 1e6),
            _ => None,
        })
    }
}

impl GpuMlp {
    /// One training step, timed part by part (for `backprop bench`). Waits for the GPU between parts, so it
    /// is slower than `step`; the parts say where the time goes.
    pub fn timed_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<StepTiming> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        self.upload(x, Some(y))?;
        self.ensure_path(x.nrows())?;
        self.ctx.wait(self.ctx.queue.submit([]))?;
        let upload_ms = ms(start);

        let t1 = Instant::now();
        crate::optim::check_steps(self.step, 1)?;
        self.set_lr(lr);
        self.step += 1;
        if self.timer.is_none() && self.ctx.has_timestamps() {
            self.timer = Some(Timer::new(&self.ctx));
        }
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed step") });
        let dispatches = self.path_dispatches(x.nrows(), false);
        ops::encode_timed(ctx, &mut enc, dispatches, self.timer.as_ref().map(Timer::writes));
        if let Some(t) = &self.timer {
            t.resolve(&mut enc);
        }
        self.model.copy_loss(&mut enc);
        ctx.wait(ctx.queue.submit([enc.finish()]))?;
        let wall_kernels = ms(t1);

        let t2 = Instant::now();
        wait::block_on("GpuMlp::timed_step", self.model.read_loss(ctx))?;
        let readback_ms = ms(t2);

        let kernel = match &self.timer {
            Some(t) => t.read_ms(ctx)?,
            None => None,
        };
        Ok(StepTiming {
            upload_ms,
            kernel_ms: kernel.unwrap_or(wall_kernels),
            kernel_timestamps: kernel.is_some(),
            readback_ms,
            total_ms: ms(start),
        })
    }
}
