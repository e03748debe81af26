//! The CPU reference: forward, backward and update on ndarray, generic over f32 and f64.
//!
//! This module is the specification, written to be read, not to be fast. Every GPU kernel has a twin of
//! the same name and shapes, built from the functions of the math: `matmul` (with its `Epilogue`),
//! `loss_grad`, `mse_loss`, `xent_loss`, `softmax_rows`, `bias_grad` and `gather_rows` here, the
//! optimizer's in `optim`, the fused step's in `fused` (re-exported here); the GPU suite runs every kernel
//! of `gpu::shaders::Kernel::ALL` against its twin.

mod fused;

pub use fused::{GroupPartial, fused_apply, fused_forward_backward, fused_loss, fused_reduce, fused_update};

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};

use crate::error::Result;
pub use crate::model::Real;
use crate::model::{Activation, Loss, MlpSpec, Params};

fn cast<T: Real>(v: f64) -> T {
    T::from_f64(v).unwrap_or_else(T::nan)
}

/// `A · B` as explicit sums in index order, with no fused multiply-add. A (M, K), B (K, N) → (M, N).
///
/// Not ndarray's `dot`: that goes through matrixmultiply, which fuses multiply-adds where the CPU has them
/// (natively) and not on wasm32, so the reference would give other last bits in the web page than in the
/// CLI. Written out, it gives the same bits on every platform.
fn product<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(r, c)| {
        (0..a.ncols()).fold(T::zero(), |s, k| s + a[[r, k]] * b[[k, c]])
    })
}

/// `Z = A_prev · W + b`. A_prev (B, I), W (I, O), b (O) → Z (B, O).
pub fn linear_forward<T: Real>(a_prev: ArrayView2<T>, w: ArrayView2<T>, b: ArrayView1<T>) -> Array2<T> {
    product(a_prev, w) + b
}

/// `f(z)` for one element.
pub fn activate<T: Real>(act: Activation, z: T) -> T {
    match act {
        Activation::Identity => z,
        Activation::Sigmoid => T::one() / (T::one() + (-z).exp()),
        Activation::Relu => z.max(T::zero()),
        Activation::Tanh => z.tanh(),
    }
}

/// `f'(z)` for one element (relu'(0) = 0, as PyTorch).
pub fn activate_derivative<T: Real>(act: Activation, z: T) -> T {
    match act {
        Activation::Identity => T::one(),
        Activation::Sigmoid => {
            let s = activate(Activation::Sigmoid, z);
            s * (T::one() - s)
        }
        Activation::Relu => {
            if z > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Activation::Tanh => {
            let t = z.tanh();
            T::one() - t * t
        }
    }
}

/// `A = f(Z)`, elementwise. Z (B, O) → A (B, O).
pub fn activation_forward<T: Real>(act: Activation, z: ArrayView2<T>) -> Array2<T> {
    z.mapv(|v| activate(act, v))
}

/// `δ = dL/dA ⊙ f'(Z)`. dA (B, O), Z (B, O) → δ (B, O).
pub fn activation_backward<T: Real>(act: Activation, grad: ArrayView2<T>, z: ArrayView2<T>) -> Array2<T> {
    Zip::from(&grad).and(&z).map_collect(|&g, &zv| g * activate_derivative(act, zv))
}

/// `f'(z)` from `a = f(z)`, the output: the same value as `activate_derivative(act, z)` without the
/// exponential (sigmoid `a(1 − a)`, relu `a > 0`, tanh `1 − a²`, identity 1).
pub fn derivative_from_output<T: Real>(act: Activation, a: T) -> T {
    match act {
        Activation::Identity => T::one(),
        Activation::Sigmoid => a * (T::one() - a),
        Activation::Relu => {
            if a > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Activation::Tanh => T::one() - a * a,
    }
}

/// What `matmul` does with the product C before storing it: one variant per use, as the GPU's
/// `ops::Epilogue`. `pre` is the pre-activation `matmul` is given.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a, T> {
    /// `out = C`.
    Store,
    /// `out = out + s·C`: a partial sum added (s = 1), or plain SGD's `W ← W − lr·dW` (s = −lr).
    AddScaled(T),
    /// `out = C + bias`: the first part of a forward product split along K.
    Bias(ArrayView1<'a, T>),
    /// `pre = C + bias; out = f(pre)`: a layer's forward product.
    Forward { bias: ArrayView1<'a, T>, activation: Activation },
    /// `pre = C + pre; out = f(pre)`: the last part of a forward product split along K.
    FinishForward(Activation),
    /// `out = C ⊙ f'(z)`: the input gradient with the previous layer's derivative fused (δ_prev).
    Derivative { z: ArrayView2<'a, T>, activation: Activation },
}

/// Twin of `matmul`: `C = op(A) · op(B)` through `epilogue` into `out`, where op(A) (M, K) and op(B) (K, N)
/// are views (a transpose is `.t()`) and `out`, `pre` are (M, N).
pub fn matmul<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    epilogue: Epilogue<T>,
    out: &mut Array2<T>,
    pre: &mut Array2<T>,
) {
    let c = product(a, b);
    match epilogue {
        Epilogue::Store => out.assign(&c),
        Epilogue::AddScaled(s) => out.zip_mut_with(&c, |o, &c| *o = *o + s * c),
        Epilogue::Bias(bias) => out.assign(&(c + bias)),
        Epilogue::Forward { bias, activation } => {
            pre.assign(&linear_forward(a, b, bias));
            out.assign(&activation_forward(activation, pre.view()));
        }
        Epilogue::FinishForward(activation) => {
            *pre = &*pre + &c;
            out.assign(&activation_forward(activation, pre.view()));
        }
        Epilogue::Derivative { z, activation } => out.assign(&activation_backward(activation, c.view(), z)),
    }
}

/// Twin of `loss_grad`: `δ_L = scale (A − Y) ⊙ f'(Z_L)`, f' taken from A (`derivative_from_output`). The
/// MSE gradient times the output activation's derivative with `scale = 2/(B·O)`; the fused softmax
/// cross-entropy gradient with `scale = 1/B` and the identity. A (B, O), Y (B, O) → (B, O).
pub fn loss_grad<T: Real>(scale: T, output: Activation, a: ArrayView2<T>, y: ArrayView2<T>) -> Array2<T> {
    Zip::from(&a).and(&y).map_collect(|&a, &y| scale * (a - y) * derivative_from_output(output, a))
}

/// Twin of `gather_rows`: the rows `idx` of `src`, in that order. src (N, C) → (len(idx), C).
pub fn gather_rows<T: Real>(src: ArrayView2<T>, idx: &[usize]) -> Array2<T> {
    src.select(Axis(0), idx)
}

/// Twin of `mse_loss`: `mean((A − Y)²)` over all B·O elements.
pub fn mse_loss<T: Real>(pred: ArrayView2<T>, target: ArrayView2<T>) -> T {
    let sum = Zip::from(&pred).and(&target).fold(T::zero(), |acc, &p, &y| acc + (p - y) * (p - y));
    sum / cast(pred.len() as f64)
}

/// `dL/dA = 2 (A − Y) / (B·O)`. A (B, O), Y (B, O) → (B, O).
pub fn mse_grad<T: Real>(pred: ArrayView2<T>, target: ArrayView2<T>) -> Array2<T> {
    let scale: T = cast(2.0 / pred.len() as f64);
    Zip::from(&pred).and(&target).map_collect(|&p, &y| scale * (p - y))
}

/// Twin of `softmax_rows`: `softmax` of each row, computed as `exp(z − max z) / Σ exp(z − max z)`. Z (B, O) → (B, O).
pub fn softmax_rows<T: Real>(z: ArrayView2<T>) -> Array2<T> {
    let mut out = z.to_owned();
    for mut row in out.outer_iter_mut() {
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Twin of `xent_loss`: softmax cross-entropy from logits, `mean_b Σ_j y_bj (logsumexp(z_b) − z_bj)`. Z (B, O), Y (B, O) → scalar.
pub fn xent_loss<T: Real>(z: ArrayView2<T>, target: ArrayView2<T>) -> T {
    let mut total = T::zero();
    for (zr, yr) in z.outer_iter().zip(target.outer_iter()) {
        let m = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = m + zr.iter().fold(T::zero(), |a, &v| a + (v - m).exp()).ln();
        total = total + Zip::from(&zr).and(&yr).fold(T::zero(), |a, &zv, &y| a + y * (lse - zv));
    }
    total / cast(z.nrows() as f64)
}

/// `δ_L = (softmax(Z) − Y) / B`, the fused softmax cross-entropy gradient. A (B, O), Y (B, O) → (B, O).
pub fn xent_grad<T: Real>(probs: ArrayView2<T>, target: ArrayView2<T>) -> Array2<T> {
    let scale: T = cast(1.0 / probs.nrows() as f64);
    Zip::from(&probs).and(&target).map_collect(|&p, &y| scale * (p - y))
}

/// `dW = Σ_b a_prev_b ⊗ δ_b`, the outer products summed over the batch. A_prev (B, I), δ (B, O) → (I, O).
pub fn weight_grad<T: Real>(a_prev: ArrayView2<T>, delta: ArrayView2<T>) -> Array2<T> {
    let mut dw = Array2::zeros((a_prev.ncols(), delta.ncols()));
    for (a_row, d_row) in a_prev.outer_iter().zip(delta.outer_iter()) {
        for (i, &a) in a_row.iter().enumerate() {
            for (j, &d) in d_row.iter().enumerate() {
                dw[[i, j]] = dw[[i, j]] + a * d;
            }
        }
    }
    dw
}

/// Twin of `bias_grad`: `db = Σ_b δ_b`. δ (B, O) → (O).
pub fn bias_grad<T: Real>(delta: ArrayView2<T>) -> Array1<T> {
    delta.sum_axis(Axis(0))
}

/// `dA_prev = δ · Wᵀ`. δ (B, O), W (I, O) → (B, I).
pub fn input_grad<T: Real>(delta: ArrayView2<T>, w: ArrayView2<T>) -> Array2<T> {
    product(delta, w.t())
}

/// `θ ← θ − lr · g` for every parameter.
pub fn sgd_update<T: Real>(params: &mut Params<T>, grads: &Params<T>, lr: T) {
    for (w, g) in params.weights.iter_mut().zip(&grads.weights) {
        w.zip_mut_with(g, |p, &g| *p = *p - lr * g);
    }
    for (b, g) in params.biases.iter_mut().zip(&grads.biases) {
        b.zip_mut_with(g, |p, &g| *p = *p - lr * g);
    }
}

/// Everything one forward and backward pass computes, layer by layer (index `l` is layer `l`).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace<T> {
    /// Pre-activations `Z_l` (B, O_l).
    pub pre: Vec<Array2<T>>,
    /// Activations `A_l = f(Z_l)` (B, O_l).
    pub post: Vec<Array2<T>>,
    /// The loss of this batch.
    pub loss: T,
    /// `δ_l = dL/dZ_l` (B, O_l).
    pub delta: Vec<Array2<T>>,
    /// `dL/dW_l` (I, O) and `dL/db_l` (O).
    pub grads: Params<T>,
    /// `dL/dX`, the gradient with respect to the network's input (B, I_0), where it was computed
    /// (training on the GPU skips it: nothing consumes it).
    pub input_grad: Option<Array2<T>>,
}

/// Per layer: the pre-activations Z_l and the activations A_l.
pub type Activations<T> = (Vec<Array2<T>>, Vec<Array2<T>>);

/// Forward pass: returns (Z_l, A_l) for every layer. X (B, I_0).
pub fn forward<T: Real>(spec: &MlpSpec, params: &Params<T>, x: ArrayView2<T>) -> Result<Activations<T>> {
    params.check(spec)?;
    spec.check_batch(x.dim(), None)?;
    let mut pre = Vec::with_capacity(spec.layers());
    let mut post: Vec<Array2<T>> = Vec::with_capacity(spec.layers());
    for l in 0..spec.layers() {
        let input = if l == 0 { x } else { post[l - 1].view() };
        let z = linear_forward(input, params.weights[l].view(), params.biases[l].view());
        let a = if l + 1 == spec.layers() && spec.loss() == Loss::CrossEntropy {
            softmax_rows(z.view())
        } else {
            activation_forward(spec.activations()[l], z.view())
        };
        pre.push(z);
        post.push(a);
    }
    Ok((pre, post))
}

/// Forward and backward pass on one batch: X (B, I_0), Y (B, O_L).
pub fn forward_backward<T: Real>(
    spec: &MlpSpec,
    params: &Params<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
) -> Result<Trace<T>> {
    spec.check_batch(x.dim(), Some(y.dim()))?;
    let (pre, post) = forward(spec, params, x)?;
    let last = spec.layers() - 1;
    // `grad` is dL/dA_l on the way down; for the fused softmax cross-entropy it is already δ_L.
    let (loss, mut grad) = match spec.loss() {
        Loss::Mse => (mse_loss(post[last].view(), y), mse_grad(post[last].view(), y)),
        Loss::CrossEntropy => (xent_loss(pre[last].view(), y), xent_grad(post[last].view(), y)),
    };
    let mut grads = Params::zeros(spec);
    let mut delta = vec![Array2::zeros((0, 0)); spec.layers()];
    for l in (0..spec.layers()).rev() {
        let d = if l == last && spec.loss() == Loss::CrossEntropy {
            grad.clone()
        } else {
            activation_backward(spec.activations()[l], grad.view(), pre[l].view())
        };
        let input = if l == 0 { x } else { post[l - 1].view() };
        grads.weights[l] = weight_grad(input, d.view());
        grads.biases[l] = bias_grad(d.view());
        grad = input_grad(d.view(), params.weights[l].view());
        delta[l] = d;
    }
    Ok(Trace { pre, post, loss, delta, grads, input_grad: Some(grad) })
}

/// The loss of `params` on one batch, without gradients.
pub fn loss<T: Real>(spec: &MlpSpec, params: &Params<T>, x: ArrayView2<T>, y: ArrayView2<T>) -> Result<T> {
    spec.check_batch(x.dim(), Some(y.dim()))?;
    let (pre, post) = forward(spec, params, x)?;
    let last = spec.layers() - 1;
    Ok(match spec.loss() {
        Loss::Mse => mse_loss(post[last].view(), y),
        Loss::CrossEntropy => xent_loss(pre[last].view(), y),
    })
}

/// One SGD step: forward, backward, update. Returns the trace of the step (computed before the update).
pub fn sgd_step<T: Real>(
    spec: &MlpSpec,
    params: &mut Params<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    lr: T,
) -> Result<Trace<T>> {
    let trace = forward_backward(spec, params, x, y)?;
    sgd_update(params, &trace.grads, lr);
    Ok(trace)
}
