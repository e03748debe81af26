//! The CPU backend's step taken apart for data-parallel training (`GradientBackend`): the gradient of one
//! rank's share of a batch, the gradient buffer read and written, and the update from it.

use ndarray::ArrayView2;

use super::{CpuBackend, WorkspaceBox};
use crate::backend::{self, Batches};
use crate::distributed::GradientBackend;
use crate::error::{Error, Result};
use crate::optim;

impl GradientBackend for CpuBackend {
    fn compute_gradients(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, global: usize) -> Result<()> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        let b = x.nrows();
        if global < b {
            return Err(Error::shape("rows of the whole batch", format!("at least {b}"), global));
        }
        let mut w = self.workspace(b);
        let loss = self.forward_backward(x, y, &mut w, None, global);
        self.work.insert(b, WorkspaceBox(w));
        if !loss.is_finite() && self.diverged_at.is_none() {
            self.diverged_at = Some(self.state.step + 1);
        }
        self.loss_sum += loss as f64 * b as f64;
        Ok(())
    }

    fn compute_gradients_rows(&mut self, rows: &[usize], global: usize) -> Result<()> {
        let n = self.data.as_ref().map(|d| d.0.nrows()).ok_or_else(backend::no_data)?;
        Batches::new(rows, rows.len().max(1), n)?;
        self.on_rows(rows, |me, x, y| me.compute_gradients(x, y, global))
    }

    fn read_gradients(&mut self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.grads.len() {
            return Err(Error::shape("gradient vector", self.grads.len(), out.len()));
        }
        out.copy_from_slice(&self.grads);
        Ok(())
    }

    fn write_gradients(&mut self, g: &[f32]) -> Result<()> {
        if g.len() != self.grads.len() {
            return Err(Error::shape("gradient vector", self.grads.len(), g.len()));
        }
        self.grads.copy_from_slice(g);
        Ok(())
    }

    fn apply_gradients(&mut self, lr: f32) -> Result<()> {
        optim::check_steps(self.state.step, 1)?;
        self.clip_and_update(lr);
        Ok(())
    }
}
