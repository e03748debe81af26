//! The CPU backend: the same step as the reference, in f32, through a multi-threaded GEMM (the `gemm`
//! crate, `products`) and vectorised elementwise loops (`vector`) into buffers allocated once per batch
//! size (`pages`).
//! Parameters, gradients and optimizer state are flat vectors in the layout of `MlpSpec::param_layout`,
//! as on the GPU; the optimizer is one pass over them.

mod grads;
mod pages;
mod products;
mod vector;

use std::collections::HashMap;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};
use rayon::prelude::*;

use crate::backend::{self, Backend, Batches};
use crate::cpu::{self, Trace};
use crate::error::Result;
use crate::model::{Activation, Loss, MlpSpec, ParamLayout, Params};
use crate::optim::{self, OptimConfig, OptimState, StepScalars};
use pages::{zeroed, zeros2};
use products::{matmul, matmul_add};
pub use vector::fast_exp;
use vector::{PAR_CHUNK, activate_slice, derivative_slice, par_zip4, row_blocks_par, slice, slice_mut};

/// Activations and deltas for one batch size: Z_l, A_l, dL/dA_l, δ_l, each (B, O_l).
struct Workspace {
    pre: Vec<Array2<f32>>,
    post: Vec<Array2<f32>>,
    grad: Vec<Array2<f32>>,
    delta: Vec<Array2<f32>>,
}

/// The CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    spec: MlpSpec,
    layout: ParamLayout,
    params: Vec<f32>,
    grads: Vec<f32>,
    optim: OptimConfig,
    state: OptimState,
    loss_sum: f64,
    work: HashMap<usize, WorkspaceBox>,
    /// The training set of `set_data`: X (N, I_0), Y (N, O_L).
    data: Option<(Array2<f32>, Array2<f32>)>,
    max_grad_norm: Option<f32>,
    /// The first step whose loss was not finite.
    diverged_at: Option<u64>,
    /// Gathered batches of `run_steps`, by batch size: X (B, I_0), Y (B, O_L).
    batch_buf: HashMap<usize, (Array2<f32>, Array2<f32>)>,
}

/// `Workspace` behind a box so the map stays small; `Debug` prints only the batch size.
struct WorkspaceBox(Box<Workspace>);
impl std::fmt::Debug for WorkspaceBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workspace")
    }
}

fn view<'a>(flat: &'a [f32], off: usize, (r, c): (usize, usize)) -> ArrayView2<'a, f32> {
    // The layout guarantees the slice has r·c elements.
    ArrayView2::from_shape((r, c), &flat[off..off + r * c]).expect("layout matches shape")
}

fn view_mut<'a>(flat: &'a mut [f32], off: usize, (r, c): (usize, usize)) -> ArrayViewMut2<'a, f32> {
    ArrayViewMut2::from_shape((r, c), &mut flat[off..off + r * c]).expect("layout matches shape")
}

impl CpuBackend {
    pub fn new(spec: MlpSpec, params: Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        let layout = spec.param_layout();
        let optim = OptimConfig::sgd();
        let state = OptimState::new(&optim, layout.len);
        Ok(Self {
            grads: zeroed(layout.len),
            params: {
                let mut flat = zeroed(layout.len);
                flat.copy_from_slice(&params.to_flat());
                flat
            },
            spec,
            layout,
            optim,
            state,
            loss_sum: 0.0,
            work: HashMap::new(),
            data: None,
            max_grad_norm: None,
            diverged_at: None,
            batch_buf: HashMap::new(),
        })
    }

    fn workspace(&mut self, b: usize) -> Box<Workspace> {
        match self.work.remove(&b) {
            Some(w) => w.0,
            None => {
                let shapes: Vec<(usize, usize)> =
                    (0..self.spec.layers()).map(|l| (b, self.spec.layer_shape(l).1)).collect();
                let make = || shapes.iter().map(|&s| zeros2(s)).collect::<Vec<_>>();
                Box::new(Workspace { pre: make(), post: make(), grad: make(), delta: make() })
            }
        }
    }

    /// Forward pass into the workspace: Z_l = A_prev·W + b, A_l = f(Z_l) (softmax for cross-entropy).
    fn forward(&self, x: ArrayView2<f32>, w: &mut Workspace) {
        let last = self.spec.layers() - 1;
        for l in 0..self.spec.layers() {
            let off = self.layout.layers[l];
            let wl = view(&self.params, off.w, (off.inputs, off.outputs));
            let bias = &self.params[off.b..off.b + off.outputs];
            let (done, rest) = w.post.split_at_mut(l);
            let input = if l == 0 { x } else { done[l - 1].view() };
            let z = &mut w.pre[l];
            matmul(input, wl, &mut z.view_mut());
            let a = &mut rest[0];
            let act = self.spec.activations()[l];
            // Z += b; A = f(Z), in blocks of rows, on every core for large layers.
            let o = off.outputs;
            row_blocks_par(z, a, |zb, ab| {
                zb.chunks_mut(o).for_each(|zr| zr.iter_mut().zip(bias).for_each(|(z, &b)| *z += b));
                activate_slice(act, zb, ab);
            });
            if l == last && self.spec.loss() == Loss::CrossEntropy {
                // softmax of each row, as cpu::softmax_rows, without allocating
                for (mut ar, zr) in a.rows_mut().into_iter().zip(z.rows()) {
                    let m = zr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    let mut sum = 0.0;
                    ar.iter_mut().zip(zr).for_each(|(a, &z)| {
                        *a = (z - m).exp();
                        sum += *a;
                    });
                    ar.iter_mut().for_each(|a| *a /= sum);
                }
            }
        }
    }

    /// One forward, loss, backward; leaves the gradients in `self.grads`. Returns the loss of these rows.
    /// The loss gradient is scaled by a batch of `global` rows (`x.nrows()` for a whole batch; more when these
    /// rows are one rank's share of a batch, whose gradients are summed over the ranks).
    /// With `sgd_lr` Some(lr), plain SGD is applied as the backward pass goes instead: each layer's
    /// `W ← W − lr·A_prevᵀ·δ` is one GEMM that adds into W (after `δ·Wᵀ` has used the old W), so the weight
    /// gradients are never written and the optimizer pass is skipped. `self.grads` then holds only the
    /// bias gradients.
    fn forward_backward(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        w: &mut Workspace,
        sgd_lr: Option<f32>,
        global: usize,
    ) -> f32 {
        self.forward(x, w);
        let n_layers = self.spec.layers();
        let last = n_layers - 1;
        let loss = match self.spec.loss() {
            Loss::Mse => {
                let scale = 2.0 / ((global * w.post[last].ncols()) as f32);
                Zip::from(&mut w.grad[last]).and(&w.post[last]).and(&y).for_each(|g, &a, &t| *g = scale * (a - t));
                cpu::mse_loss(w.post[last].view(), y)
            }
            Loss::CrossEntropy => {
                let scale = 1.0 / global as f32;
                Zip::from(&mut w.delta[last]).and(&w.post[last]).and(&y).for_each(|d, &a, &t| *d = scale * (a - t));
                cpu::xent_loss(w.pre[last].view(), y)
            }
        };
        for l in (0..n_layers).rev() {
            let off = self.layout.layers[l];
            if !(l == last && self.spec.loss() == Loss::CrossEntropy) {
                // δ = dA ⊙ f'(Z), with f' taken from A = f(Z) where that saves an exp.
                let act: Activation = self.spec.activations()[l];
                let (d, g, a, z) = (&mut w.delta[l], &w.grad[l], &w.post[l], &w.pre[l]);
                let (d, g, a, z) = (slice_mut(d), slice(g), slice(a), slice(z));
                let f = move |d: &mut [f32], g: &[f32], a: &[f32], z: &[f32]| derivative_slice(act, d, g, a, z);
                par_zip4(d, g, a, z, f);
            }
            let delta = w.delta[l].view();
            // dA_prev = δ · Wᵀ, with W as the forward pass used it
            if l > 0 {
                let wl = view(&self.params, off.w, (off.inputs, off.outputs));
                matmul(delta, wl.t(), &mut w.grad[l - 1].view_mut());
            }
            let input = if l == 0 { x } else { w.post[l - 1].view() };
            // db = Σ_b δ_b
            let db = &mut self.grads[off.b..off.b + off.outputs];
            db.fill(0.0);
            // over slices, not ndarray rows, so the loop is vectorised
            for row in slice(&w.delta[l]).chunks_exact(off.outputs) {
                db.iter_mut().zip(row).for_each(|(s, &d)| *s += d);
            }
            match sgd_lr {
                // dW = A_prevᵀ · δ
                None => matmul(input.t(), delta, &mut view_mut(&mut self.grads, off.w, (off.inputs, off.outputs))),
                // W ← W − lr · A_prevᵀ · δ; b ← b − lr · db
                Some(lr) => {
                    matmul_add(
                        input.t(),
                        delta,
                        &mut view_mut(&mut self.params, off.w, (off.inputs, off.outputs)),
                        -lr,
                    );
                    let (p, g) =
                        (&mut self.params[off.b..off.b + off.outputs], &self.grads[off.b..off.b + off.outputs]);
                    p.iter_mut().zip(g).for_each(|(p, &g)| *p -= lr * g);
                }
            }
        }
        loss
    }

    /// The optimizer over the flat buffers, split across cores for large models (elementwise, so the result
    /// does not depend on the split).
    fn update(&mut self, lr: f32) {
        self.state.step += 1;
        let s = StepScalars::new(&self.optim, lr as f64, self.state.step);
        let cfg = self.optim;
        let n = self.params.len();
        let chunk = PAR_CHUNK.max(n.div_ceil(rayon::current_num_threads().max(1)));
        let mut m: Vec<&mut [f32]> = self.state.m.chunks_mut(chunk).collect();
        let mut v: Vec<&mut [f32]> = self.state.v.chunks_mut(chunk).collect();
        let parts: Vec<_> = self
            .params
            .chunks_mut(chunk)
            .zip(self.grads.chunks(chunk))
            .enumerate()
            .map(|(i, (p, g))| {
                let mi = if m.is_empty() { &mut [][..] } else { std::mem::take(&mut m[i]) };
                let vi = if v.is_empty() { &mut [][..] } else { std::mem::take(&mut v[i]) };
                (p, g, mi, vi)
            })
            .collect();
        parts.into_par_iter().for_each(|(p, g, m, v)| optim::update(&cfg, p, g, m, v, s));
    }

    /// The update from `self.grads`: clipped to `--max-grad-norm` first, then the optimizer.
    fn clip_and_update(&mut self, lr: f32) {
        if let Some(max) = self.max_grad_norm {
            let c = optim::clip_coefficient(&self.grads, max);
            self.grads.iter_mut().for_each(|g| *g *= c);
        }
        self.update(lr);
    }

    /// Gathers the rows `rows` of the training set (`set_data`) into buffers kept per batch size, so no step
    /// allocates, and runs `f` on them.
    fn on_rows<T>(
        &mut self,
        rows: &[usize],
        f: impl FnOnce(&mut Self, ArrayView2<f32>, ArrayView2<f32>) -> Result<T>,
    ) -> Result<T> {
        let (x, y) = self.data.as_ref().ok_or_else(backend::no_data)?;
        let b = rows.len();
        let (mut xb, mut yb) =
            self.batch_buf.remove(&b).unwrap_or_else(|| (zeros2((b, x.ncols())), zeros2((b, y.ncols()))));
        for (k, &r) in rows.iter().enumerate() {
            xb.row_mut(k).assign(&x.row(r));
            yb.row_mut(k).assign(&y.row(r));
        }
        let result = f(self, xb.view(), yb.view());
        self.batch_buf.insert(b, (xb, yb));
        result
    }

    /// One training step. `keep_grads` asks for the gradients to be left in `self.grads` (for a trace);
    /// otherwise plain SGD without weight decay or clipping runs fused into the backward pass.
    fn run_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
        keep_grads: bool,
    ) -> Result<(f32, Box<Workspace>)> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        optim::check_steps(self.state.step, 1)?;
        let b = x.nrows();
        let mut w = self.workspace(b);
        let fused = !keep_grads && backend::fuses_sgd(&self.optim, self.max_grad_norm);
        let loss = self.forward_backward(x, y, &mut w, fused.then_some(lr), b);
        if fused {
            self.state.step += 1;
        } else {
            self.clip_and_update(lr);
        }
        if !loss.is_finite() && self.diverged_at.is_none() {
            self.diverged_at = Some(self.state.step);
        }
        self.loss_sum += loss as f64 * b as f64;
        Ok((loss, w))
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }
    fn spec(&self) -> &MlpSpec {
        &self.spec
    }
    fn params(&mut self) -> Result<Params<f32>> {
        Params::from_flat(&self.spec, &self.params)
    }
    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.spec)?;
        self.params.copy_from_slice(&p.to_flat());
        Ok(())
    }
    fn set_optimizer(&mut self, cfg: OptimConfig) -> Result<()> {
        cfg.validate()?;
        self.optim = cfg;
        self.state = OptimState::new(&cfg, self.layout.len);
        Ok(())
    }
    fn optimizer(&self) -> OptimConfig {
        self.optim
    }
    fn optimizer_state(&mut self) -> Result<OptimState> {
        Ok(self.state.clone())
    }
    fn set_optimizer_state(&mut self, s: &OptimState) -> Result<()> {
        s.check(&self.optim, self.layout.len)?;
        optim::check_steps(s.step, 0)?;
        self.state = s.clone();
        Ok(())
    }
    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        let (loss, w) = self.run_step(x, y, lr, false)?;
        self.work.insert(x.nrows(), WorkspaceBox(w));
        Ok(want_loss.then_some(loss))
    }
    fn set_data(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        self.data = Some((x.to_owned(), y.to_owned()));
        self.batch_buf.clear();
        Ok(())
    }
    fn run_steps(&mut self, rows: &[usize], batch: usize, lr: f32) -> Result<()> {
        let n = self.data.as_ref().map(|d| d.0.nrows()).ok_or_else(backend::no_data)?;
        let batches = Batches::new(rows, batch, n)?;
        optim::check_steps(self.state.step, batches.len())?;
        for (_, chunk) in batches.iter() {
            self.on_rows(chunk, |me, x, y| me.step(x, y, lr, false).map(drop))?;
        }
        Ok(())
    }
    fn set_grad_clip(&mut self, max_norm: Option<f32>) -> Result<()> {
        backend::check_clip(max_norm)?;
        self.max_grad_norm = max_norm;
        Ok(())
    }
    fn grad_clip(&self) -> Option<f32> {
        self.max_grad_norm
    }
    fn diverged_at(&mut self) -> Result<Option<u64>> {
        Ok(self.diverged_at)
    }
    fn take_loss_sum(&mut self) -> Result<f64> {
        Ok(std::mem::take(&mut self.loss_sum))
    }
    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        let (loss, w) = self.run_step(x, y, lr, true)?;
        let grads = Params::from_flat(&self.spec, &self.grads)?;
        let trace =
            Trace { pre: w.pre.clone(), post: w.post.clone(), loss, delta: w.delta.clone(), grads, input_grad: None };
        self.work.insert(x.nrows(), WorkspaceBox(w));
        Ok(trace)
    }
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.spec.check_batch(x.dim(), None)?;
        let b = x.nrows();
        let mut w = self.workspace(b);
        self.forward(x, &mut w);
        let out = w.post[self.spec.layers() - 1].clone();
        self.work.insert(b, WorkspaceBox(w));
        Ok(out)
    }
}
