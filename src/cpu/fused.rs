//! The twins of the fused step's kernels (`shaders/fused.wgsl`, `shaders/fused_update.wgsl`), re-exported
//! from `cpu` with their kernels' names: what one workgroup of the first launch and what each update launch
//! computes, written with the plain functions of `cpu` and `optim`, so a kernel test compares the two
//! tensor by tensor.

use std::ops::Range;

use ndarray::{ArrayView2, s};

use super::{Real, forward_backward};
use crate::error::{Error, Result};
use crate::model::{Loss, MlpSpec, Params};
use crate::optim::{self, OptimConfig, StepScalars};

/// What one workgroup of `fused_forward_backward` leaves for its rows of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupPartial<T> {
    /// The rows' share of the batch's weight and bias gradients (scaled as the whole batch's loss is, so
    /// the groups' partials add up to the batch's gradients).
    pub grads: Params<T>,
    /// The rows' loss before the batch's mean: Σ (A − Y)² for MSE, Σ over rows of the cross-entropy.
    pub loss_sum: T,
}

/// Twin of `fused_forward_backward` for one workgroup: the rows `rows` of the batch X (B, I_0), Y (B, O_L)
/// through `forward_backward`, its gradients scaled by the rows' share of the batch.
pub fn fused_forward_backward<T: Real>(
    spec: &MlpSpec,
    params: &Params<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    rows: Range<usize>,
) -> Result<GroupPartial<T>> {
    let batch = x.nrows();
    if rows.is_empty() || rows.end > batch {
        return Err(Error::shape(
            "rows of a group",
            format!("a non-empty range within 0..{batch}"),
            format!("{rows:?}"),
        ));
    }
    let n = rows.len();
    let t = forward_backward(spec, params, x.slice(s![rows.clone(), ..]), y.slice(s![rows, ..]))?;
    // forward_backward takes the mean over its n rows; the kernel's scale is the whole batch's.
    let share = T::from_usize(n).unwrap_or_else(T::nan) / T::from_usize(batch).unwrap_or_else(T::nan);
    let mut grads = t.grads;
    grads.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| v * share));
    grads.biases.iter_mut().for_each(|b| b.mapv_inplace(|v| v * share));
    let per_row = match spec.loss() {
        Loss::Mse => n * spec.output_width(),
        Loss::CrossEntropy => n,
    };
    Ok(GroupPartial { grads, loss_sum: t.loss * T::from_usize(per_row).unwrap_or_else(T::nan) })
}

/// The loss that the update launches write into `loss[0]`: the groups' loss sums, in order, as the mean
/// of the batch of `batch` rows.
pub fn fused_loss<T: Real>(spec: &MlpSpec, partials: &[GroupPartial<T>], batch: usize) -> T {
    let sum = partials.iter().fold(T::zero(), |a, p| a + p.loss_sum);
    let per = match spec.loss() {
        Loss::Mse => batch * spec.output_width(),
        Loss::CrossEntropy => batch,
    };
    sum / T::from_usize(per).unwrap_or_else(T::nan)
}

/// Twin of `fused_reduce` (and the first half of `fused_update`): the groups' partial gradients summed in group
/// order, as one flat gradient.
pub fn fused_reduce<T: Real>(partials: &[GroupPartial<T>]) -> Vec<T> {
    let mut sum: Vec<T> = Vec::new();
    for p in partials {
        let flat = p.grads.to_flat();
        if sum.is_empty() {
            sum = flat;
        } else {
            sum.iter_mut().zip(flat).for_each(|(s, v)| *s = *s + v);
        }
    }
    sum
}

/// Twin of `fused_apply` (and the second half of `fused_update`): the optimizer step on the flat parameters from the
/// summed gradient, clipped to `max_grad_norm` when given; `m` and `v` are the rule's state.
pub fn fused_apply<T: Real>(
    cfg: &OptimConfig,
    params: &mut [T],
    grads: &[T],
    (m, v): (&mut [T], &mut [T]),
    scalars: StepScalars,
    max_grad_norm: Option<f32>,
) {
    let mut g = grads.to_vec();
    if let Some(max) = max_grad_norm {
        let c = optim::clip_coefficient(&g, max);
        g.iter_mut().for_each(|v| *v = *v * c);
    }
    optim::update(cfg, params, &g, m, v, scalars);
}

/// Twin of `fused_update`: `fused_reduce` then `fused_apply`; returns the summed gradient.
pub fn fused_update<T: Real>(
    cfg: &OptimConfig,
    params: &mut [T],
    partials: &[GroupPartial<T>],
    state: (&mut [T], &mut [T]),
    scalars: StepScalars,
    max_grad_norm: Option<f32>,
) -> Vec<T> {
    let g = fused_reduce(partials);
    fused_apply(cfg, params, &g, state, scalars, max_grad_norm);
    g
}
