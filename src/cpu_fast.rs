//! The CPU backend: the same step as the reference, in f32, through a multi-threaded GEMM
//! (matrixmultiply, through ndarray's `general_mat_mul`) into buffers allocated once per batch size.
//! Parameters, gradients and optimizer state are flat vectors in the layout of `MlpSpec::param_layout`,
//! as on the GPU; the optimizer is one pass over them.

use std::collections::HashMap;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};

use crate::backend::{Backend, check_state};
use crate::cpu::{self, Trace, check_batch};
use crate::error::Result;
use crate::model::{Activation, Loss, MlpSpec, ParamLayout, Params};
use crate::optim::{self, OptimConfig, OptimState, StepScalars};

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
            grads: vec![0.0; layout.len],
            params: params.to_flat(),
            spec,
            layout,
            optim,
            state,
            loss_sum: 0.0,
            work: HashMap::new(),
        })
    }

    fn workspace(&mut self, b: usize) -> Box<Workspace> {
        match self.work.remove(&b) {
            Some(w) => w.0,
            None => {
                let shapes: Vec<(usize, usize)> =
                    (0..self.spec.layers()).map(|l| (b, self.spec.layer_shape(l).1)).collect();
                let make = || shapes.iter().map(|&s| Array2::zeros(s)).collect::<Vec<_>>();
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
            general_mat_mul(1.0, &input, &wl, 0.0, z);
            for mut row in z.rows_mut() {
                row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
            }
            let a = &mut rest[0];
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
            } else {
                let act = self.spec.activations()[l];
                Zip::from(&mut *a).and(&*z).for_each(|a, &z| *a = cpu::activate(act, z));
            }
        }
    }

    /// One forward, loss, backward; leaves the gradients in `self.grads`. Returns the loss.
    fn forward_backward(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, w: &mut Workspace) -> f32 {
        self.forward(x, w);
        let n_layers = self.spec.layers();
        let last = n_layers - 1;
        let b = x.nrows();
        let loss = match self.spec.loss() {
            Loss::Mse => {
                let scale = 2.0 / (w.post[last].len() as f32);
                Zip::from(&mut w.grad[last]).and(&w.post[last]).and(&y).for_each(|g, &a, &t| *g = scale * (a - t));
                cpu::mse_loss(w.post[last].view(), y)
            }
            Loss::CrossEntropy => {
                let scale = 1.0 / b as f32;
                Zip::from(&mut w.delta[last]).and(&w.post[last]).and(&y).for_each(|d, &a, &t| *d = scale * (a - t));
                cpu::xent_loss(w.pre[last].view(), y)
            }
        };
        for l in (0..n_layers).rev() {
            let off = self.layout.layers[l];
            if !(l == last && self.spec.loss() == Loss::CrossEntropy) {
                let act: Activation = self.spec.activations()[l];
                Zip::from(&mut w.delta[l])
                    .and(&w.grad[l])
                    .and(&w.pre[l])
                    .for_each(|d, &g, &z| *d = g * cpu::activate_derivative(act, z));
            }
            let input = if l == 0 { x } else { w.post[l - 1].view() };
            let delta = w.delta[l].view();
            // dW = A_prevᵀ · δ
            let mut dw = view_mut(&mut self.grads, off.w, (off.inputs, off.outputs));
            general_mat_mul(1.0, &input.t(), &delta, 0.0, &mut dw);
            // db = Σ_b δ_b
            let db = &mut self.grads[off.b..off.b + off.outputs];
            db.iter_mut().for_each(|v| *v = 0.0);
            for row in delta.rows() {
                db.iter_mut().zip(row).for_each(|(s, &d)| *s += d);
            }
            // dA_prev = δ · Wᵀ
            if l > 0 {
                let wl = view(&self.params, off.w, (off.inputs, off.outputs));
                general_mat_mul(1.0, &delta, &wl.t(), 0.0, &mut w.grad[l - 1]);
            }
        }
        loss
    }

    fn update(&mut self, lr: f32) {
        self.state.step += 1;
        let s = StepScalars::new(&self.optim, lr as f64, self.state.step);
        optim::update(&self.optim, &mut self.params, &self.grads, &mut self.state.m, &mut self.state.v, s);
    }

    fn run_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<(f32, Box<Workspace>)> {
        check_batch(&self.spec, x.dim(), Some(y.dim()))?;
        let b = x.nrows();
        let mut w = self.workspace(b);
        let loss = self.forward_backward(x, y, &mut w);
        self.update(lr);
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
        self.params = p.to_flat();
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
        check_state(&self.optim, self.layout.len, s)?;
        self.state = s.clone();
        Ok(())
    }
    fn step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32, want_loss: bool) -> Result<Option<f32>> {
        let (loss, w) = self.run_step(x, y, lr)?;
        self.work.insert(x.nrows(), WorkspaceBox(w));
        Ok(want_loss.then_some(loss))
    }
    fn take_loss_sum(&mut self) -> Result<f64> {
        Ok(std::mem::take(&mut self.loss_sum))
    }
    fn traced_step(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, lr: f32) -> Result<Trace<f32>> {
        let (loss, w) = self.run_step(x, y, lr)?;
        let grads = Params::from_flat(&self.spec, &self.grads)?;
        let trace =
            Trace { pre: w.pre.clone(), post: w.post.clone(), loss, delta: w.delta.clone(), grads, input_grad: None };
        self.work.insert(x.nrows(), WorkspaceBox(w));
        Ok(trace)
    }
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        check_batch(&self.spec, x.dim(), None)?;
        let b = x.nrows();
        let mut w = self.workspace(b);
        self.forward(x, &mut w);
        let out = w.post[self.spec.layers() - 1].clone();
        self.work.insert(b, WorkspaceBox(w));
        Ok(out)
    }
}
