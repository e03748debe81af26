//! What a backend must offer to train data-parallel: a step split into its gradient, the gradient itself
//! (read and written as one flat vector), and the update from it.

use std::ops::Range;

use ndarray::ArrayView2;

use crate::backend::Backend;
use crate::error::Result;
use crate::model::MlpSpec;

/// What `compute_gradients_in_buckets` calls with each bucket: its range in the flat gradient and its values.
pub type BucketReady<'a> = dyn FnMut(Range<usize>, &mut [f32]) -> Result<()> + 'a;

/// Each layer's part of the flat gradient (its `W`, then its `b`), last layer first: the buckets of
/// `compute_gradients_in_buckets`.
pub fn layer_buckets(spec: &MlpSpec) -> Vec<Range<usize>> {
    let layout = spec.param_layout();
    layout.layers.iter().rev().map(|l| l.w..l.b + l.outputs).collect()
}

/// A `Backend` whose step can be taken apart: gradients of a share of a batch, an exchange in between
/// (done by the caller), then the update. `DataParallel` needs nothing else from a backend.
///
/// The gradient buffer is flat, in the order of `MlpSpec::param_layout` (per layer `W` row-major, then `b`).
pub trait GradientBackend: Backend {
    /// Forward, loss and backward on X (b, I_0), Y (b, O_L), b ≤ `global`: the gradient of these rows' share
    /// of the mean loss over a batch of `global` rows goes to the gradient buffer; nothing is updated. Their
    /// loss is added to the running sum (`take_loss_sum`) as a step's would be, and a loss that is not finite
    /// is noted as the next update's step (`diverged_at`).
    fn compute_gradients(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, global: usize) -> Result<()>;
    /// `compute_gradients` on the rows `rows` of the training set of `set_data` (resident on a GPU).
    fn compute_gradients_rows(&mut self, rows: &[usize], global: usize) -> Result<()>;
    /// Copies the gradient buffer into `out` (its length: the number of parameters).
    fn read_gradients(&mut self, out: &mut [f32]) -> Result<()>;
    /// Replaces the gradient buffer with `g`.
    fn write_gradients(&mut self, g: &[f32]) -> Result<()>;
    /// One optimizer update from the gradient buffer, as `step` ends: clipping to `grad_clip` first, the
    /// step count advanced, the learning rate `lr`.
    fn apply_gradients(&mut self, lr: f32) -> Result<()>;
    /// `compute_gradients_rows` with the gradient handed over in buckets, one per layer, last layer first,
    /// each as soon as the backward pass has produced it (a GPU goes on with the earlier layers meanwhile):
    /// `ready(range, values)` gets the layer's part of the flat gradient and may change it (sum it across
    /// ranks); what it leaves is the gradient the update uses. Without overlap: the whole step, then the
    /// buckets one after the other.
    fn compute_gradients_in_buckets(&mut self, rows: &[usize], global: usize, ready: &mut BucketReady) -> Result<()> {
        self.compute_gradients_rows(rows, global)?;
        let mut g = vec![0.0; self.spec().param_layout().len];
        self.read_gradients(&mut g)?;
        for range in layer_buckets(self.spec()) {
            ready(range.clone(), &mut g[range])?;
        }
        self.write_gradients(&g)
    }
    /// Waits until the work handed to the device so far is done (a GPU queue; nothing on the CPU), so the
    /// time of each part of a step can be told apart.
    fn wait_idle(&mut self) -> Result<()> {
        Ok(())
    }
}
