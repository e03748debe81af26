//! [`ReferenceBackend`]: the reference's step ([`Reference::step`]) behind the `Backend` calls, so the
//! training loop, `--verify` and the web page can run on it like on any backend.

use ndarray::{Array2, ArrayView2, Axis};

use super::{Reference, cast};
use crate::backend::{self, Backend, Batches, check_clip};
use crate::cpu::{self, Real, Trace};
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::optim::{self, OptimConfig, OptimState};

/// An MLP trained by the reference code in `T`; every value crosses the `Backend` interface as f32.
#[derive(Clone, Debug)]
pub struct ReferenceBackend<T> {
    reference: Reference<T>,
    /// The running sum of `loss · B`.
    loss_sum: f64,
    /// The first step whose loss was NaN or infinite.
    diverged_at: Option<u64>,
    /// The training set of `set_data`: X (N, I_0), Y (N, O_L).
    data: Option<(Array2<f32>, Array2<f32>)>,
}

fn cast_array<A: Real, B: Real>(a: &Array2<A>) -> Array2<B> {
    a.mapv(cast)
}

fn cast_params<A: Real, B: Real>(p: &Params<A>) -> Params<B> {
    Params {
        weights: p.weights.iter().map(cast_array).collect(),
        biases: p.biases.iter().map(|b| b.mapv(cast)).collect(),
    }
}

impl<T: Real> ReferenceBackend<T> {
    /// Starts from `params` (widened to `T`); SGD until `set_optimizer`.
    pub fn new(spec: MlpSpec, params: &Params<f32>) -> Result<Self> {
        let reference = Reference::new(&spec, params, OptimConfig::sgd(), None)?;
        Ok(Self { reference, loss_sum: 0.0, diverged_at: None, data: None })
    }

    /// One step on a batch: the reference's, with its loss added to the running sum.
    fn run_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<T>> {
        self.reference.spec.check_batch(x.dim(), Some(y.dim()))?;
        let (x, y) = (x.mapv(cast::<f32, T>), y.mapv(cast::<f32, T>));
        let trace = self.reference.step(x.view(), y.view(), lr as f64)?;
        let loss: f64 = cast(trace.loss);
        if !loss.is_finite() && self.diverged_at.is_none() {
            self.diverged_at = Some(self.reference.step);
        }
        self.loss_sum += loss * x.nrows() as f64;
        Ok(trace)
    }
}

impl<T: Real> Backend for ReferenceBackend<T> {
    fn name(&self) -> String {
        format!("cpu reference ({})", std::any::type_name::<T>())
    }
    fn spec(&self) -> &MlpSpec {
        &self.reference.spec
    }
    fn params(&mut self) -> Result<Params<f32>> {
        Ok(cast_params(&self.reference.params()?))
    }
    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.reference.spec)?;
        self.reference.flat = p.to_flat().into_iter().map(cast).collect();
        Ok(())
    }
    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()> {
        cfg.validate()?;
        self.reference.set_optimizer(cfg);
        Ok(())
    }
    fn optimizer(&self) -> OptimConfig {
        self.reference.cfg
    }
    fn optimizer_state(&mut self) -> Result<OptimState> {
        Ok(self.reference.state())
    }
    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        optim::check_steps(s.step, 0)?;
        self.reference.set_state(s)
    }
    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        let trace = self.run_step(x, y, lr)?;
        Ok(want_loss.then(|| cast(trace.loss)))
    }
    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.reference.spec.check_batch(x.dim(), Some(y.dim()))?;
        self.data = Some((x.to_owned(), y.to_owned()));
        Ok(())
    }
    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        let (x, y) = self.data.take().ok_or_else(backend::no_data)?;
        let result = Batches::new(rows, batch, x.nrows()).and_then(|batches| {
            optim::check_steps(self.reference.step, batches.len())?;
            for (_, chunk) in batches.iter() {
                self.run_step(x.select(Axis(0), chunk).view(), y.select(Axis(0), chunk).view(), lr)?;
            }
            Ok(())
        });
        self.data = Some((x, y));
        result
    }
    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        check_clip(max_norm)?;
        self.reference.clip = max_norm;
        Ok(())
    }
    fn grad_clip(&self) -> Option<f32> {
        self.reference.clip
    }
    fn diverged_at(&mut self) -> Result<Option<u64>> {
        Ok(self.diverged_at)
    }
    fn take_loss_sum(&mut self) -> Result<f64> {
        Ok(std::mem::take(&mut self.loss_sum))
    }
    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        let t = self.run_step(x, y, lr)?;
        let all = |v: &[Array2<T>]| v.iter().map(cast_array).collect();
        Ok(Trace {
            pre: all(&t.pre),
            post: all(&t.post),
            loss: cast(t.loss),
            delta: all(&t.delta),
            grads: cast_params(&t.grads),
            input_grad: t.input_grad.as_ref().map(cast_array),
        })
    }
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let (_, post) = cpu::forward(&self.reference.spec, &self.reference.params()?, x.mapv(cast::<f32, T>).view())?;
        let last = post.last().ok_or_else(|| Error::Model("a network needs at least one layer".into()))?;
        Ok(cast_array(last))
    }
}
