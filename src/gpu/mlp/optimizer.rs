//! The optimizer's side of a GPU step: its rule, the gradient clip, and its dispatches (`optim_prepare`,
//! the clip, the update over the flat parameters), whose learning rate is rewritten only when it changes.

use super::model::ModelBuffers;
use crate::backend;
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch};
use crate::gpu::structs::OptimParams;
use crate::optim::OptimConfig;

pub(super) struct Optimizer {
    cfg: OptimConfig,
    clip: Option<f32>,
    /// The learning rate in the dispatches' uniforms; `None` until the first step sets it.
    lr: Option<f32>,
    /// `optim_prepare`, `grad_norm` per piece and `grad_norm_finish` when clipping, then the update.
    dispatches: Vec<Dispatch>,
}

impl Optimizer {
    /// The dispatches of `cfg` over the `n` parameters of `model`, clipping to `clip` when given.
    pub(super) fn new(
        ctx: &GpuContext,
        model: &ModelBuffers,
        n: usize,
        cfg: OptimConfig,
        clip: Option<f32>,
    ) -> Result<Self> {
        let dispatches = ops::optimizer(ctx, &cfg, n, 0.0, clip, &model.grads, &model.params, model.optim_buffers())?;
        Ok(Self { cfg, clip, lr: None, dispatches })
    }

    pub(super) fn config(&self) -> OptimConfig {
        self.cfg
    }

    pub(super) fn clip(&self) -> Option<f32> {
        self.clip
    }

    pub(super) fn lr(&self) -> Option<f32> {
        self.lr
    }

    /// Whether the update runs inside the backward pass (`backend::fuses_sgd`).
    pub(super) fn fuses_sgd(&self) -> bool {
        backend::fuses_sgd(&self.cfg, self.clip)
    }

    /// Writes `lr` into the uniforms when it changed (once per epoch at most); says whether it did, so the
    /// fused SGD products follow.
    pub(super) fn set_lr(&mut self, ctx: &GpuContext, lr: f32) -> bool {
        if self.lr == Some(lr) {
            return false;
        }
        for d in &mut self.dispatches {
            d.update_params::<OptimParams>(ctx, |p| p.lr = lr);
        }
        self.lr = Some(lr);
        true
    }

    /// The dispatches of one step's update: all of them, or, where plain SGD ran fused into the backward
    /// pass, only `optim_prepare` (the step count and the divergence check).
    pub(super) fn dispatches(&self, fused: bool) -> &[Dispatch] {
        if fused { &self.dispatches[..1] } else { &self.dispatches }
    }
}
