//! The fused step's side of the GPU model: which step each batch size runs (the device tuner's choice,
//! `gpu::tune::step`, under the model's strategy), the fused plans, their launches on resident data, and
//! the traced fused step (what `--verify` reads).

use std::collections::{BTreeMap, HashMap};

use super::{GpuMlp, step_dispatches};
use crate::cpu::Trace;
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::fused::{FusedBuffers, FusedPlan, Rows};
use crate::gpu::ops::{self, Dispatch};
use crate::gpu::tune::{GpuPath, PathKey, PathStrategy};

/// The strategy in force, the step chosen per batch size, and the fused plans where it is the fused one.
pub(super) struct FusedState {
    /// The model's own strategy (`set_path_strategy`), else the device tuner's.
    strategy: Option<PathStrategy>,
    chosen: HashMap<usize, GpuPath>,
    plans: HashMap<usize, FusedPlan>,
}

impl FusedState {
    pub(super) fn new() -> Self {
        Self { strategy: None, chosen: HashMap::new(), plans: HashMap::new() }
    }

    /// Forgets the plans (they bind the optimizer's state and clip, which were replaced); the choices stay.
    pub(super) fn forget_plans(&mut self) {
        self.plans.clear();
    }

    /// Forgets the launches on resident data (the data set was replaced).
    pub(super) fn forget_resident(&mut self) {
        self.plans.values_mut().for_each(FusedPlan::forget_resident);
    }

    pub(super) fn set_lr(&mut self, ctx: &crate::gpu::GpuContext, lr: f32) {
        self.plans.values_mut().for_each(|p| p.set_lr(ctx, lr));
    }

    /// The fused plan of batches of `batch` rows, where the fused step runs for them.
    pub(super) fn plan(&self, batch: usize) -> Option<&FusedPlan> {
        self.plans.get(&batch).filter(|_| self.chosen.get(&batch) == Some(&GpuPath::Fused))
    }
}

impl GpuMlp {
    fn fused_buffers(&self) -> FusedBuffers<'_> {
        self.model.fused_buffers()
    }

    /// Chooses how this model's training steps are chosen, instead of the device's strategy
    /// (`BACKPROP_GPU_PATH`, else `PathStrategy::Rule`); the choices made so far are forgotten. Forcing the
    /// fused step is an error where the network is outside its bound on this device.
    pub fn set_path_strategy(&mut self, strategy: PathStrategy) -> Result<()> {
        if strategy == PathStrategy::Fixed(GpuPath::Fused) {
            self.ctx.path_key(&self.spec, 1).fused_block_rows()?;
        }
        self.fused = FusedState::new();
        self.fused.strategy = Some(strategy);
        Ok(())
    }

    /// How this model's training steps are chosen.
    pub fn path_strategy(&self) -> PathStrategy {
        self.fused.strategy.unwrap_or_else(|| self.ctx.tuner().path_strategy())
    }

    /// The step that runs for batches of `batch` rows, once a training step has run at that size.
    pub fn path_for(&self, batch: usize) -> Option<GpuPath> {
        self.fused.chosen.get(&batch).copied()
    }

    /// The steps that ran, by batch size, smallest first: those `path_for` gives, and the unfused kernels of
    /// the data-parallel steps (`GradientBackend`), by their whole batch.
    pub fn paths_run(&self) -> Vec<(usize, GpuPath)> {
        let mut all = BTreeMap::new();
        #[cfg(not(target_arch = "wasm32"))]
        all.extend(self.shares.batches().map(|b| (b, GpuPath::Unfused)));
        all.extend(self.fused.chosen.iter().map(|(&b, &p)| (b, p)));
        all.into_iter().collect()
    }

    /// Chooses the step for training batches of `batch` rows (once) and makes the fused plan where it runs.
    /// The unfused plan of that size must exist (`ensure_plan`): the fused one reads its X and Y.
    pub(super) fn ensure_path(&mut self, batch: usize) -> Result<GpuPath> {
        if let Some(&path) = self.fused.chosen.get(&batch) {
            if path == GpuPath::Fused && !self.fused.plans.contains_key(&batch) {
                let plan = self.build_fused(batch)?;
                self.fused.plans.insert(batch, plan);
            }
            return Ok(path);
        }
        let key = self.ctx.path_key(&self.spec, batch);
        let (strategy, tuner) = (self.path_strategy(), self.ctx.tuner());
        let (path, plan) = if strategy == PathStrategy::Timed && key.block_rows.is_ok() {
            let plan = self.build_fused(batch)?;
            (self.timed_choice(&key, batch, &plan)?, Some(plan))
        } else {
            let untimed = |_, _| Err(Error::Gpu("only PathStrategy::Timed times the steps".into()));
            (tuner.gpu_path(&key, strategy, untimed)?, None)
        };
        if path == GpuPath::Fused {
            let plan = match plan {
                Some(plan) => plan,
                None => self.build_fused(batch)?,
            };
            self.fused.plans.insert(batch, plan);
        }
        self.fused.chosen.insert(batch, path);
        Ok(path)
    }

    fn build_fused(&self, batch: usize) -> Result<FusedPlan> {
        let rows = self.ctx.path_key(&self.spec, batch).fused_block_rows()?;
        let bufs = &self.plan(batch).buffers;
        let opt = &self.optimizer;
        let what = format!("making the fused step's buffers for batch size {batch}");
        let optim = (&opt.config(), opt.lr().unwrap_or(0.0), opt.clip());
        self.ctx.catch_oom(&what, || {
            FusedPlan::new(&self.ctx, &self.spec, (batch, rows), optim, self.fused_buffers(), (&bufs.x, &bufs.y))
        })
    }

    /// `PathStrategy::Timed`: the tuner times both steps on this model's buffers, which are saved before
    /// and restored after, so the timing leaves no trace.
    fn timed_choice(&self, key: &PathKey, batch: usize, fused: &FusedPlan) -> Result<GpuPath> {
        let ctx = &*self.ctx;
        let changed = self.model.changed_by_a_step();
        let saved = changed.iter().map(|b| copy_of(ctx, b)).collect::<Result<Vec<_>>>()?;
        let unfused: Vec<&Dispatch> = step_dispatches(self.plan(batch), &self.optimizer, false).collect();
        let fused: Vec<&Dispatch> = fused.step().collect();
        let chosen = ctx.tuner().gpu_path(key, PathStrategy::Timed, |path, runs| {
            let step = if path == GpuPath::Fused { &fused } else { &unfused };
            let many: Vec<&Dispatch> = step.iter().copied().cycle().take(step.len() * runs).collect();
            let t = web_time::Instant::now();
            ops::run(ctx, &many)?;
            Ok(t.elapsed().as_secs_f64())
        });
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("restore") });
        for (from, to) in saved.iter().zip(changed) {
            enc.copy_buffer_to_buffer(from, 0, to, 0, to.size());
        }
        ctx.wait(ctx.queue.submit([enc.finish()]))?;
        chosen
    }

    /// The step's launches on the uploaded batch of `batch` rows: the fused step where it runs, else the
    /// unfused one (`keep_grads` as `step_dispatches` takes it).
    pub(super) fn path_dispatches(&self, batch: usize, keep_grads: bool) -> Vec<&Dispatch> {
        match self.fused.plan(batch) {
            Some(f) => f.step().collect(),
            None => step_dispatches(self.plan(batch), &self.optimizer, keep_grads).collect(),
        }
    }

    /// Launches of one step of `run_steps` on batches of `batch`, where the fused step runs for them.
    pub(super) fn fused_launches(&self, batch: usize) -> Option<usize> {
        self.fused.plan(batch).map(FusedPlan::launches)
    }

    /// Where the fused step runs for batches of `batch` rows, makes its launch on the resident data for the
    /// batch at entry `first` of the row order, and returns true. A data set too large for the launch to
    /// bind whole makes that batch size take the unfused step instead (false), unless the fused one was
    /// forced: then it is an error.
    pub(super) fn ensure_fused_resident(&mut self, batch: usize, first: usize) -> Result<bool> {
        if self.ensure_path(batch)? == GpuPath::Unfused {
            return Ok(false);
        }
        let mut plan = self.fused.plans.remove(&batch).ok_or_else(|| Error::Gpu("fused plan missing".into()))?;
        let data = self.data.as_ref().ok_or_else(crate::backend::no_data)?;
        let rows = Rows { x: &data.x, y: &data.y, order: &data.order, first, n: data.rows };
        let made = plan.ensure_resident(&self.ctx, rows, self.fused_buffers());
        self.fused.plans.insert(batch, plan);
        match made {
            Ok(()) => Ok(true),
            Err(Error::DeviceLimit { .. }) if self.path_strategy() != PathStrategy::Fixed(GpuPath::Fused) => {
                self.fused.chosen.insert(batch, GpuPath::Unfused);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The fused step's launches on resident data (`ensure_fused_resident`).
    pub(super) fn fused_resident_dispatches(&self, batch: usize, first: usize) -> Option<Result<Vec<&Dispatch>>> {
        self.fused.plan(batch).map(|p| p.resident_step(first).map(Iterator::collect))
    }

    /// `traced_step` on the fused path, the batch uploaded: the step's own launches with the trace written.
    pub(super) async fn fused_traced_step(&mut self, batch: usize, lr: f32) -> Result<Trace<f32>> {
        crate::optim::check_steps(self.step, 1)?;
        self.set_lr(lr);
        self.step += 1;
        let mut plan = self.fused.plans.remove(&batch).ok_or_else(|| Error::Gpu("fused plan missing".into()))?;
        let ran = plan
            .traced_step(&self.ctx, self.fused_buffers())
            .and_then(|list| ops::run(&self.ctx, &list.collect::<Vec<_>>()));
        let trace = match ran {
            Ok(()) => plan.read_trace(&self.ctx).await,
            Err(e) => Err(e),
        };
        self.fused.plans.insert(batch, plan);
        let loss = self.model.last_loss(&self.ctx).await?;
        let (mut pre, mut post, mut delta) = (Vec::new(), Vec::new(), Vec::new());
        for [z, a, d] in trace? {
            pre.push(z);
            post.push(a);
            delta.push(d);
        }
        let grads = self.read_flat(&self.model.grads).await?;
        Ok(Trace { pre, post, loss, delta, grads, input_grad: None })
    }
}

/// A copy of `b` (same size), made by a copy on the queue.
fn copy_of(ctx: &crate::gpu::GpuContext, b: &wgpu::Buffer) -> Result<wgpu::Buffer> {
    let copy = buffer::storage(ctx, "saved while timing", (b.size() / 4) as usize)?;
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("save") });
    enc.copy_buffer_to_buffer(b, 0, &copy, 0, b.size());
    ctx.queue.submit([enc.finish()]);
    Ok(copy)
}

/// The steps of `paths` (by batch size, as `GpuMlp::paths_run` gives them) in a few words: the step's name
/// where every batch size ran the same, else each step with its batch sizes ("fused (batches of 7),
/// unfused (batches of 32)"); `None` where none ran.
pub fn describe_paths(paths: &[(usize, GpuPath)]) -> Option<String> {
    let first = paths.first()?.1;
    if paths.iter().all(|&(_, p)| p == first) {
        return Some(first.name().to_string());
    }
    let part = |path: GpuPath| {
        let sizes: Vec<String> = paths.iter().filter(|&&(_, p)| p == path).map(|(b, _)| b.to_string()).collect();
        format!("{} (batches of {})", path.name(), sizes.join(", "))
    };
    Some(format!("{}, {}", part(GpuPath::Fused), part(GpuPath::Unfused)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_that_ran_are_named_with_their_batches_where_they_differ() {
        assert_eq!(describe_paths(&[]), None);
        assert_eq!(describe_paths(&[(32, GpuPath::Fused)]).as_deref(), Some("fused"));
        assert_eq!(describe_paths(&[(7, GpuPath::Unfused), (32, GpuPath::Unfused)]).as_deref(), Some("unfused"));
        let mixed = [(1, GpuPath::Fused), (7, GpuPath::Unfused), (16, GpuPath::Fused)];
        assert_eq!(describe_paths(&mixed).as_deref(), Some("fused (batches of 1, 16), unfused (batches of 7)"));
    }
}
