//! The f64 CPU reference trained step by step beside a backend: the library's own (`backprop::reference`),
//! with the shapes every test gives it taken as right (a wrong one panics with the reason).

use backprop::cpu::Trace;
use backprop::optim::OptimConfig;
use backprop::{MlpSpec, Params};
use ndarray::ArrayView2;

/// The library's f64 reference; its fields (`flat`, `m`, `v`, `step`, ...) read through `Deref`.
pub struct Reference(backprop::reference::Reference<f64>);

impl std::ops::Deref for Reference {
    type Target = backprop::reference::Reference<f64>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Reference {
    /// The reference from `init` (the backend's starting weights), with optimizer `cfg` and the gradient
    /// norm clipped to `clip` when given.
    pub fn new(spec: &MlpSpec, init: &Params<f32>, cfg: OptimConfig, clip: Option<f32>) -> Self {
        Self(backprop::reference::Reference::new(spec, init, cfg, clip).expect("the starting weights fit the spec"))
    }

    /// The current parameters.
    pub fn params(&self) -> Params<f64> {
        self.0.params().expect("the reference's layout")
    }

    /// One training step on X (B, I_0), Y (B, O_L) at `lr`: forward, backward, clip, update. Returns the
    /// step's trace, computed before the update.
    pub fn step(&mut self, x: ArrayView2<f64>, y: ArrayView2<f64>, lr: f64) -> Trace<f64> {
        self.0.step(x, y, lr).expect("the reference's shapes")
    }
}
