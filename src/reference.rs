//! The CPU reference trained step by step: `cpu::forward_backward`, the gradient clip
//! (`optim::clip_coefficient`) and the optimizer's rule (`optim::update`), in f64 or f32. Written once for
//! `--verify`, for the tests that train a backend beside it, and for the web page; `backend` makes it a
//! [`Backend`](crate::Backend), [`ReferenceBackend`], which needs no threads and no `gemm`, so it builds
//! everywhere: the web page trains on it where the browser has no WebGPU.

mod backend;

pub use backend::ReferenceBackend;

use ndarray::ArrayView2;

use crate::cpu::{self, Real, Trace};
use crate::error::Result;
use crate::model::{MlpSpec, Params};
use crate::optim::{self, OptimConfig, OptimState, StepScalars};

/// A network's parameters and optimizer state in `T`, in the flat layout of `MlpSpec::param_layout`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference<T> {
    pub spec: MlpSpec,
    pub cfg: OptimConfig,
    /// The gradient's global norm is clipped to this before every update, when set.
    pub clip: Option<f32>,
    /// Parameters (P).
    pub flat: Vec<T>,
    /// The optimizer's state vectors (P each; zeros where the rule keeps none).
    pub m: Vec<T>,
    pub v: Vec<T>,
    /// Steps taken.
    pub step: u64,
}

/// `v` in another precision (NaN where it does not fit).
pub(crate) fn cast<A: Real, B: Real>(v: A) -> B {
    B::from(v).unwrap_or_else(B::nan)
}

impl<T: Real> Reference<T> {
    /// From `init` (a backend's starting weights, widened to `T`), with optimizer `cfg` from its first step
    /// and the gradient norm clipped to `clip` when given.
    pub fn new(spec: &MlpSpec, init: &Params<f32>, cfg: OptimConfig, clip: Option<f32>) -> Result<Self> {
        init.check(spec)?;
        let flat: Vec<T> = init.to_flat().into_iter().map(cast).collect();
        let n = flat.len();
        Ok(Self { spec: spec.clone(), cfg, clip, flat, m: vec![T::zero(); n], v: vec![T::zero(); n], step: 0 })
    }

    /// From parameters and an optimizer state as a backend holds them, to take the step it takes next.
    pub fn resume(
        spec: &MlpSpec,
        params: &Params<f32>,
        cfg: OptimConfig,
        clip: Option<f32>,
        state: &OptimState,
    ) -> Result<Self> {
        let mut r = Self::new(spec, params, cfg, clip)?;
        r.set_state(state)?;
        Ok(r)
    }

    /// Trains with `cfg` from here, its state fresh.
    pub fn set_optimizer(&mut self, cfg: OptimConfig) {
        self.cfg = cfg;
        self.m.fill(T::zero());
        self.v.fill(T::zero());
        self.step = 0;
    }

    /// Continues from an optimizer state as a backend holds it (checked against the optimizer).
    pub fn set_state(&mut self, state: &OptimState) -> Result<()> {
        let n = self.flat.len();
        state.check(&self.cfg, n)?;
        for (to, from) in [(&mut self.m, &state.m), (&mut self.v, &state.v)] {
            *to = if from.is_empty() { vec![T::zero(); n] } else { from.iter().copied().map(cast).collect() };
        }
        self.step = state.step;
        Ok(())
    }

    /// The current parameters.
    pub fn params(&self) -> Result<Params<T>> {
        Params::from_flat(&self.spec, &self.flat)
    }

    /// The optimizer's state in f32, as a backend reports it (only the vectors the rule keeps).
    pub fn state(&self) -> OptimState {
        let k = self.cfg.state_vectors();
        let narrow = |v: &[T], kept: bool| if kept { v.iter().copied().map(cast).collect() } else { Vec::new() };
        OptimState { m: narrow(&self.m, k >= 1), v: narrow(&self.v, k >= 2), step: self.step }
    }

    /// One training step on X (B, I_0), Y (B, O_L) at `lr`: forward, backward, clip, update. Returns the
    /// step's trace, computed before the update.
    pub fn step(&mut self, x: ArrayView2<T>, y: ArrayView2<T>, lr: f64) -> Result<Trace<T>> {
        optim::check_steps(self.step, 1)?;
        let trace = cpu::forward_backward(&self.spec, &self.params()?, x, y)?;
        let mut g = trace.grads.to_flat();
        if let Some(max) = self.clip {
            let c = optim::clip_coefficient(&g, max);
            g.iter_mut().for_each(|v| *v = *v * c);
        }
        self.step += 1;
        let s = StepScalars::new(&self.cfg, lr, self.step);
        optim::update(&self.cfg, &mut self.flat, &g, &mut self.m, &mut self.v, s);
        Ok(trace)
    }
}
