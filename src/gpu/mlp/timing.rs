//! `timed_step`: one training step timed part by part, for `backprop bench`.

use ndarray::ArrayView2;

use super::GpuMlp;
use crate::error::{Error, Result};
use crate::gpu::{buffer, ops};

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

/// Query set and buffers for timing a step, made on first use.
pub(super) struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl GpuMlp {
    /// One training step, timed part by part (for `backprop bench`). Waits for the GPU between parts, so it
    /// is slower than `step`; the parts say where the time goes.
    pub fn timed_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<StepTiming> {
        use std::time::Instant;
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        self.upload(x, Some(y))?;
        let idx = self.ctx.queue.submit([]);
        self.ctx.wait(idx)?;
        let upload_ms = ms(start);

        let t1 = Instant::now();
        crate::optim::check_steps(self.step, 1)?;
        self.set_lr(lr)?;
        self.step += 1;
        if self.timer.is_none() && self.ctx.has_timestamps() {
            let ctx = &self.ctx;
            self.timer = Some(Timer {
                queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("step timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                staging: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps read-back"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            });
        }
        let ctx = &*self.ctx;
        let plan = self.plan(x.nrows())?;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed step") });
        let writes = self.timer.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
            query_set: &t.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        });
        ops::encode_timed(ctx, &mut enc, self.step_dispatches(plan, false), writes);
        if let Some(t) = &self.timer {
            enc.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, 16);
        }
        enc.copy_buffer_to_buffer(&self.loss, 0, &self.loss_staging, 0, 4); // LossTotals::last
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(idx)?;
        let wall_kernels = ms(t1);

        let t2 = Instant::now();
        buffer::read_staging(ctx, &self.loss_staging, 1)?;
        let readback_ms = ms(t2);

        let kernel = match &self.timer {
            Some(t) => {
                let slice = t.staging.slice(..);
                slice.map_async(wgpu::MapMode::Read, |_| {});
                ctx.wait_all()?;
                let ticks: Vec<u64> = {
                    let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
                    bytemuck::cast_slice::<u8, u64>(&view).to_vec()
                };
                t.staging.unmap();
                let period = ctx.queue.get_timestamp_period() as f64;
                match ticks.as_slice() {
                    [a, b] if b > a => Some((b - a) as f64 * period / 1e6),
                    _ => None,
                }
            }
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
