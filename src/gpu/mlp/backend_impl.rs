//! `GpuMlp` as a `Backend`: the calls the training loop makes, on the GPU model's buffers and plans. Those
//! that read back are futures first (`params_async`, ...), which the web awaits; the `Backend` methods wait
//! for them (natively; see `wait::block_on`).

use ndarray::{Array2, ArrayView2};

use super::GpuMlp;
use super::optimizer::Optimizer;
use crate::backend::{self, Backend};
use crate::cpu::Trace;
use crate::error::Result;
use crate::gpu::ops;
use crate::gpu::structs::StepState;
use crate::gpu::tune::GpuPath;
use crate::gpu::wait::block_on;
use crate::model::{MlpSpec, Params};
use crate::optim::{self, OptimConfig, OptimState};

impl Backend for GpuMlp {
    fn name(&self) -> String {
        format!("gpu ({}, {})", self.ctx.adapter().name, self.ctx.adapter().backend)
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn step_path(&self) -> Option<String> {
        super::fused::describe_paths(&self.paths_run())
    }

    fn params(&mut self) -> Result<Params<f32>> {
        block_on("GpuMlp::params", self.params_async())
    }

    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.spec)?;
        self.ctx.queue.write_buffer(&self.model.params, 0, bytemuck::cast_slice(&p.to_flat()));
        Ok(())
    }

    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()> {
        cfg.validate()?;
        self.model.reset_optimizer(&self.ctx, &cfg, self.layout.len)?;
        self.step = 0;
        self.optimizer = Optimizer::new(&self.ctx, &self.model, self.layout.len, cfg, self.optimizer.clip())?;
        self.fused.forget_plans();
        Ok(())
    }

    fn optimizer(&self) -> OptimConfig {
        self.optimizer.config()
    }

    fn optimizer_state(&mut self) -> Result<OptimState> {
        block_on("GpuMlp::optimizer_state", self.optimizer_state_async())
    }

    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        let cfg = self.optimizer.config();
        s.check(&cfg, self.layout.len)?;
        optim::check_steps(s.step, 0)?;
        self.model.write_state(&self.ctx, &s.m, &s.v);
        // The bias corrections are not recomputed from t on the host (f64 rounded to f32 differs from the
        // GPU's f32 recurrence by an ulp): the next step's `optim_prepare` replays the recurrence itself.
        let t = u32::try_from(s.step).expect("check_steps bounds the step count to u32");
        self.model.write_step_state(&self.ctx, &StepState::resumed(t));
        self.step = s.step;
        Ok(())
    }

    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        block_on("GpuMlp::step", self.step_async(x, y, lr, want_loss))
    }

    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        GpuMlp::set_data(self, x, y)
    }

    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        GpuMlp::run_steps(self, rows, batch, lr)
    }

    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        backend::check_clip(max_norm)?;
        self.optimizer = Optimizer::new(&self.ctx, &self.model, self.layout.len, self.optimizer.config(), max_norm)?;
        self.fused.forget_plans();
        Ok(())
    }

    fn grad_clip(&self) -> Option<f32> {
        self.optimizer.clip()
    }

    fn diverged_at(&mut self) -> Result<Option<u64>> {
        block_on("GpuMlp::diverged_at", self.diverged_at_async())
    }

    fn take_epoch_stats(&mut self) -> Result<(f64, Option<u64>)> {
        block_on("GpuMlp::take_epoch_stats", self.take_epoch_stats_async())
    }

    fn take_loss_sum(&mut self) -> Result<f64> {
        block_on("GpuMlp::take_loss_sum", self.take_loss_sum_async())
    }

    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        block_on("GpuMlp::traced_step", self.traced_step_async(x, y, lr))
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        block_on("GpuMlp::predict", self.predict_async(x))
    }
}

/// The `Backend` calls that read back, as futures.
impl GpuMlp {
    /// [`Backend::params`] without blocking.
    pub async fn params_async(&self) -> Result<Params<f32>> {
        self.read_flat(&self.model.params).await
    }

    /// [`Backend::optimizer_state`] without blocking.
    pub async fn optimizer_state_async(&self) -> Result<OptimState> {
        let (m, v) = self.model.read_state(&self.ctx, self.layout.len).await?;
        Ok(OptimState { m, v, step: self.step })
    }

    /// [`Backend::step`] without blocking (a read-back only when `want_loss`).
    pub async fn step_async(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: ArrayView2<'_, f32>,
        lr: f32,
        want_loss: bool,
    ) -> Result<Option<f32>> {
        self.upload(x, Some(y))?;
        self.ensure_path(x.nrows())?;
        self.encode_step(x.nrows(), lr, want_loss, false).await
    }

    /// [`Backend::diverged_at`] without blocking.
    pub async fn diverged_at_async(&self) -> Result<Option<u64>> {
        self.model.first_bad_step(&self.ctx).await
    }

    /// [`Backend::take_epoch_stats`] without blocking.
    pub async fn take_epoch_stats_async(&mut self) -> Result<(f64, Option<u64>)> {
        self.model.epoch_stats(&self.ctx).await
    }

    /// [`Backend::take_loss_sum`] without blocking.
    pub async fn take_loss_sum_async(&mut self) -> Result<f64> {
        self.model.take_loss_sum(&self.ctx).await
    }

    /// [`Backend::traced_step`] without blocking.
    pub async fn traced_step_async(
        &mut self,
        x: ArrayView2<'_, f32>,
        y: ArrayView2<'_, f32>,
        lr: f32,
    ) -> Result<Trace<f32>> {
        self.upload(x, Some(y))?;
        let b = x.nrows();
        if self.ensure_path(b)? == GpuPath::Fused {
            return self.fused_traced_step(b, lr).await;
        }
        let loss = self.encode_step(b, lr, true, true).await?.expect("a step asked for its loss returns it");
        let bufs = &self.plan(b).buffers;
        let (mut pre, mut post, mut delta) = (Vec::new(), Vec::new(), Vec::new());
        for l in 0..self.spec.layers() {
            let o = self.spec.layer_shape(l).1;
            pre.push(self.read_matrix(&bufs.pre[l], b, o).await?);
            post.push(self.read_matrix(&bufs.post[l], b, o).await?);
            delta.push(self.read_matrix(&bufs.delta[l], b, o).await?);
        }
        let grads = self.read_flat(&self.model.grads).await?;
        Ok(Trace { pre, post, loss, delta, grads, input_grad: None })
    }

    /// [`Backend::predict`] without blocking.
    pub async fn predict_async(&mut self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.upload(x, None)?;
        let b = x.nrows();
        let ctx = &*self.ctx;
        let plan = self.plan(b);
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("predict") });
        ops::encode_all(ctx, &mut enc, plan.forward.iter());
        ctx.wait(ctx.queue.submit([enc.finish()]))?;
        self.read_matrix(&plan.buffers.post[self.spec.layers() - 1], b, self.spec.output_width()).await
    }
}
