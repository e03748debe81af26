//! A model's own buffers on the GPU, whatever the batch: the flat parameters and gradients, the optimizer's
//! state vectors, its step state and the loss totals; made after a check of their sizes, and read back by
//! name (`offset_of!` on the structs the kernels write).

use std::mem::{offset_of, size_of};

use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::fused::FusedBuffers;
use crate::gpu::structs::{LossTotals, StepState};
use crate::gpu::{buffer, memory, ops};
use crate::model::{MlpSpec, Params};
use crate::optim::OptimConfig;

/// Parameters, gradients and optimizer state, each one flat buffer in the layout of `MlpSpec::param_layout`.
pub(super) struct ModelBuffers {
    pub(super) params: wgpu::Buffer,
    pub(super) grads: wgpu::Buffer,
    /// The momentum buffer or Adam's first moment, and Adam's second moment, where the rule keeps them.
    m: Option<wgpu::Buffer>,
    v: Option<wgpu::Buffer>,
    /// `LossTotals`: the last batch's loss and the running sum of loss·B.
    pub(super) loss: wgpu::Buffer,
    /// `StepState`: the step count, Adam's bias corrections, the first bad step, the clip coefficient.
    pub(super) step_state: wgpu::Buffer,
    /// The gradient norm's partial sums, one per piece of the update.
    norm_partials: wgpu::Buffer,
    /// Where the loss and the epoch's statistics are read back.
    staging: wgpu::Buffer,
}

/// What `epoch_stats` reads back in one go.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EpochStats {
    loss_sum: f32,
    first_bad_step: u32,
}

impl ModelBuffers {
    /// The buffers of `spec`'s model holding `params`, with no optimizer state (plain SGD).
    pub(super) fn new(ctx: &GpuContext, spec: &MlpSpec, params: &Params<f32>) -> Result<Self> {
        let n = spec.param_layout().len;
        let requests =
            [("parameters".to_string(), memory::f32_bytes(n)), ("gradients".to_string(), memory::f32_bytes(n))];
        memory::check(ctx, "the model", &requests, "use fewer or narrower layers")?;
        Ok(Self {
            params: buffer::storage_init(ctx, "parameters", &params.to_flat())?,
            grads: buffer::storage(ctx, "gradients", n)?,
            m: None,
            v: None,
            loss: buffer::storage_struct(ctx, "loss totals", &LossTotals::default())?,
            step_state: buffer::storage_struct(ctx, "optimizer step state", &StepState::START)?,
            norm_partials: buffer::storage(ctx, "gradient norm partial sums", ops::update_pieces(ctx, n)?)?,
            staging: buffer::staging(ctx, "loss read-back", size_of::<EpochStats>() as u64),
        })
    }

    /// Fresh state for `cfg` over `n` parameters: zeroed state vectors for those the rule keeps (new
    /// buffers start zeroed) and the step state before the first step.
    pub(super) fn reset_optimizer(&mut self, ctx: &GpuContext, cfg: &OptimConfig, n: usize) -> Result<()> {
        let k = cfg.state_vectors();
        let requests: Vec<memory::Request> =
            ["optimizer m", "optimizer v"][..k].iter().map(|s| (s.to_string(), memory::f32_bytes(n))).collect();
        memory::check(ctx, &format!("the {} optimizer's state", cfg.kind.name()), &requests, "use a smaller model")?;
        self.m = if k >= 1 { Some(buffer::storage(ctx, "optimizer m", n)?) } else { None };
        self.v = if k >= 2 { Some(buffer::storage(ctx, "optimizer v", n)?) } else { None };
        self.write_step_state(ctx, &StepState::START);
        Ok(())
    }

    /// What the optimizer's dispatches bind.
    pub(super) fn optim_buffers(&self) -> ops::OptimBuffers<'_> {
        let (m, v, partials) = (self.m.as_ref(), self.v.as_ref(), &self.norm_partials);
        ops::OptimBuffers { m, v, step: &self.step_state, loss: &self.loss, partials }
    }

    /// What the fused step binds of the model.
    pub(super) fn fused_buffers(&self) -> FusedBuffers<'_> {
        let (params, grads, step, loss) = (&self.params, &self.grads, &self.step_state, &self.loss);
        FusedBuffers { params, grads, m: self.m.as_ref(), v: self.v.as_ref(), step, loss }
    }

    /// Every buffer a training step changes (the parameters, gradients, state vectors, step state and loss
    /// totals), to be saved and restored around steps that must leave no trace.
    pub(super) fn changed_by_a_step(&self) -> Vec<&wgpu::Buffer> {
        let state = self.m.iter().chain(&self.v);
        [&self.params, &self.grads, &self.step_state, &self.loss].into_iter().chain(state).collect()
    }

    /// The last batch's loss, read back on its own.
    pub(super) async fn last_loss(&self, ctx: &GpuContext) -> Result<f32> {
        buffer::read_struct_async(ctx, &self.loss, offset_of!(LossTotals, last) as u64).await
    }

    /// The state vectors m and v (empty where the rule keeps none), `n` values each.
    pub(super) async fn read_state(&self, ctx: &GpuContext, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut out = [Vec::new(), Vec::new()];
        for (values, buf) in out.iter_mut().zip([&self.m, &self.v]) {
            if let Some(buf) = buf {
                *values = buffer::read_async(ctx, buf, 0, n).await?;
            }
        }
        let [m, v] = out;
        Ok((m, v))
    }

    /// Writes the state vectors (of the lengths `OptimState::check` accepted).
    pub(super) fn write_state(&self, ctx: &GpuContext, m: &[f32], v: &[f32]) {
        for (buf, values) in [(&self.m, m), (&self.v, v)] {
            if let Some(buf) = buf {
                ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(values));
            }
        }
    }

    pub(super) fn write_step_state(&self, ctx: &GpuContext, state: &StepState) {
        ctx.queue.write_buffer(&self.step_state, 0, bytemuck::bytes_of(state));
    }

    /// Copies the last batch's loss to the staging buffer, for `read_loss` once `encoder` has run.
    pub(super) fn copy_loss(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.loss, offset_of!(LossTotals, last) as u64, &self.staging, 0, 4);
    }

    /// The loss `copy_loss` copied (the submission that holds it finished).
    pub(super) async fn read_loss(&self, ctx: &GpuContext) -> Result<f32> {
        Ok(bytemuck::pod_read_unaligned(&buffer::read_staging_bytes_async(ctx, &self.staging, 4).await?))
    }

    /// The running loss sum and the first step whose loss was not finite, in one read-back; the sum is
    /// reset.
    pub(super) async fn epoch_stats(&self, ctx: &GpuContext) -> Result<(f64, Option<u64>)> {
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("epoch stats") });
        let sum = (offset_of!(LossTotals, sum) as u64, offset_of!(EpochStats, loss_sum) as u64);
        let bad = (offset_of!(StepState, first_bad_step) as u64, offset_of!(EpochStats, first_bad_step) as u64);
        enc.copy_buffer_to_buffer(&self.loss, sum.0, &self.staging, sum.1, 4);
        enc.copy_buffer_to_buffer(&self.step_state, bad.0, &self.staging, bad.1, 4);
        ctx.wait(ctx.queue.submit([enc.finish()]))?;
        let bytes = buffer::read_staging_bytes_async(ctx, &self.staging, size_of::<EpochStats>() as u64).await?;
        let stats: EpochStats = bytemuck::pod_read_unaligned(&bytes);
        self.reset_loss_sum(ctx);
        Ok((stats.loss_sum as f64, (stats.first_bad_step != 0).then_some(stats.first_bad_step as u64)))
    }

    /// The running loss sum, which is reset.
    pub(super) async fn take_loss_sum(&self, ctx: &GpuContext) -> Result<f64> {
        let sum: f32 = buffer::read_struct_async(ctx, &self.loss, offset_of!(LossTotals, sum) as u64).await?;
        self.reset_loss_sum(ctx);
        Ok(sum as f64)
    }

    /// The first step whose loss was not finite.
    pub(super) async fn first_bad_step(&self, ctx: &GpuContext) -> Result<Option<u64>> {
        let offset = offset_of!(StepState, first_bad_step) as u64;
        let bad: u32 = buffer::read_struct_async(ctx, &self.step_state, offset).await?;
        Ok((bad != 0).then_some(bad as u64))
    }

    fn reset_loss_sum(&self, ctx: &GpuContext) {
        ctx.queue.write_buffer(&self.loss, offset_of!(LossTotals, sum) as u64, bytemuck::bytes_of(&0.0f32));
    }
}
