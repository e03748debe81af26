//! Where the page trains: the WGSL kernels through WebGPU, or the f64 CPU reference where the browser has
//! no WebGPU. One type, so the playground is written once; every read-back of the GPU is awaited.

use std::sync::Arc;

use backprop::cpu::Trace;
use backprop::gpu::{GpuContext, GpuMlp};
use backprop::model::{MlpSpec, Params};
use backprop::optim::OptimState;
use backprop::{Backend, ReferenceBackend, Result};
use ndarray::{Array2, ArrayView2};

/// A model on the GPU or on the CPU reference.
pub enum Engine {
    Gpu(Box<GpuMlp>),
    Reference(Box<ReferenceBackend<f64>>),
}

impl Engine {
    /// The model `spec` with `params`, on `gpu` when there is one.
    pub fn new(gpu: Option<&Arc<GpuContext>>, spec: MlpSpec, params: &Params<f32>) -> Result<Engine> {
        Ok(match gpu {
            Some(ctx) => Engine::Gpu(Box::new(GpuMlp::new(ctx.clone(), spec, params)?)),
            None => Engine::Reference(Box::new(ReferenceBackend::new(spec, params)?)),
        })
    }

    /// The calls that never wait for the GPU (set_data, run_steps, set_optimizer, ...).
    pub fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Engine::Gpu(g) => g.as_mut(),
            Engine::Reference(r) => r.as_mut(),
        }
    }

    /// "webgpu" or "cpu reference (f64)", as `#train-json`'s `backend`.
    pub fn label(&self) -> &'static str {
        match self {
            Engine::Gpu(_) => "webgpu",
            Engine::Reference(_) => "cpu reference (f64)",
        }
    }

    pub async fn params(&mut self) -> Result<Params<f32>> {
        match self {
            Engine::Gpu(g) => g.params_async().await,
            Engine::Reference(r) => r.params(),
        }
    }

    pub async fn optimizer_state(&mut self) -> Result<OptimState> {
        match self {
            Engine::Gpu(g) => g.optimizer_state_async().await,
            Engine::Reference(r) => r.optimizer_state(),
        }
    }

    pub async fn take_epoch_stats(&mut self) -> Result<(f64, Option<u64>)> {
        match self {
            Engine::Gpu(g) => g.take_epoch_stats_async().await,
            Engine::Reference(r) => r.take_epoch_stats(),
        }
    }

    pub async fn traced_step(&mut self, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>, lr: f32) -> Result<Trace<f32>> {
        match self {
            Engine::Gpu(g) => g.traced_step_async(x, y, lr).await,
            Engine::Reference(r) => r.traced_step(x, y, lr),
        }
    }

    pub async fn predict(&mut self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        match self {
            Engine::Gpu(g) => g.predict_async(x).await,
            Engine::Reference(r) => r.predict(x),
        }
    }
}
