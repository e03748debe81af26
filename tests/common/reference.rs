//! The f64 CPU reference trained step by step beside a backend: the loop every "train and compare" test
//! shares (`cpu::forward_backward`, the clip, `optim::update`), written once.

use backprop::cpu::{self, Trace};
use backprop::optim::{self, OptimConfig, StepScalars};
use backprop::{MlpSpec, Params};
use ndarray::ArrayView2;

/// The reference's parameters and optimizer state, in f64, in the flat layout of `MlpSpec::param_layout`.
pub struct Reference {
    pub spec: MlpSpec,
    pub cfg: OptimConfig,
    pub clip: Option<f32>,
    /// Parameters.
    pub flat: Vec<f64>,
    /// The optimizer's state vectors (zeros where the rule keeps none).
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    /// Steps taken.
    pub step: u64,
}

impl Reference {
    /// The reference from `init` (the backend's starting weights), with optimizer `cfg` and the gradient
    /// norm clipped to `clip` when given.
    pub fn new(spec: &MlpSpec, init: &Params<f32>, cfg: OptimConfig, clip: Option<f32>) -> Self {
        let flat = init.to_f64().to_flat();
        let n = flat.len();
        Self { spec: spec.clone(), cfg, clip, flat, m: vec![0.0; n], v: vec![0.0; n], step: 0 }
    }

    /// The current parameters.
    pub fn params(&self) -> Params<f64> {
        Params::from_flat(&self.spec, &self.flat).expect("the reference's layout")
    }

    /// One training step on X (B, I_0), Y (B, O_L) at `lr`: forward, backward, clip, update. Returns the
    /// step's trace, computed before the update.
    pub fn step(&mut self, x: ArrayView2<f64>, y: ArrayView2<f64>, lr: f64) -> Trace<f64> {
        let trace = cpu::forward_backward(&self.spec, &self.params(), x, y).expect("the reference's shapes");
        let mut g = trace.grads.to_flat();
        if let Some(max) = self.clip {
            let c = optim::clip_coefficient(&g, max);
            g.iter_mut().for_each(|v| *v *= c);
        }
        self.step += 1;
        let s = StepScalars::new(&self.cfg, lr, self.step);
        optim::update(&self.cfg, &mut self.flat, &g, &mut self.m, &mut self.v, s);
        trace
    }
}
