//! The update rules over one flat parameter vector, as PyTorch's single-tensor code writes them: the CPU
//! twins of the kernels in `shaders/optim.wgsl`, each function named as its kernel (`sgd`, `momentum`,
//! `adam`, `optim_prepare`, `grad_norm`, `grad_norm_finish`), and `update`, which picks the rule.
//! Every rule first adds the coupled L2 weight decay: `g' = g + weight_decay · θ`.

use super::{OptimConfig, OptimizerKind};
use crate::model::Real;

fn cast<T: Real>(x: f64) -> T {
    T::from_f64(x).unwrap_or_else(T::nan)
}

/// The numbers one update needs beyond the state: PyTorch's bias corrections for step `t` (1-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    pub lr: f64,
    /// `1 − β1^t` (1 when not Adam).
    pub bias_correction1: f64,
    /// `sqrt(1 − β2^t)` (1 when not Adam).
    pub bias_correction2_sqrt: f64,
}

impl StepScalars {
    pub fn new(cfg: &OptimConfig, lr: f64, t: u64) -> Self {
        match cfg.kind {
            OptimizerKind::Adam { beta1, beta2, .. } if t > 0 => {
                let t = t.min(i32::MAX as u64) as i32;
                Self { lr, bias_correction1: 1.0 - beta1.powi(t), bias_correction2_sqrt: (1.0 - beta2.powi(t)).sqrt() }
            }
            _ => Self { lr, bias_correction1: 1.0, bias_correction2_sqrt: 1.0 },
        }
    }
}

/// One update of `params` (P) from `grads` (P) by `cfg`'s rule, exactly as PyTorch's single-tensor code
/// writes it. `m` and `v` are the state vectors the rule keeps (empty slices where it keeps none).
pub fn update<T: Real>(cfg: &OptimConfig, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T], s: StepScalars) {
    let (lr, weight_decay) = (cast(s.lr), cast(cfg.weight_decay));
    match cfg.kind {
        OptimizerKind::Sgd => sgd(params, grads, lr, weight_decay),
        OptimizerKind::Momentum { momentum: mu } => momentum(params, grads, m, lr, weight_decay, cast(mu)),
        OptimizerKind::Adam { beta1, beta2, eps } => {
            let (beta1, beta2, eps) = (cast(beta1), cast(beta2), cast(eps));
            let (bias_correction1, bias_correction2_sqrt) = (cast(s.bias_correction1), cast(s.bias_correction2_sqrt));
            let step = AdamStep { lr, weight_decay, beta1, beta2, eps, bias_correction1, bias_correction2_sqrt };
            adam(params, grads, m, v, &step)
        }
    }
}

/// Twin of `sgd`: `θ ← θ − lr·g'`. θ, g (P).
pub fn sgd<T: Real>(params: &mut [T], grads: &[T], lr: T, weight_decay: T) {
    for (p, &g) in params.iter_mut().zip(grads) {
        let g = g + weight_decay * *p;
        *p = *p - lr * g;
    }
}

/// Twin of `momentum` (PyTorch's `SGD(momentum=μ)`, dampening 0, not Nesterov): `b ← μ·b + g'`,
/// `θ ← θ − lr·b`. θ, g, b (P).
pub fn momentum<T: Real>(params: &mut [T], grads: &[T], b: &mut [T], lr: T, weight_decay: T, mu: T) {
    for ((p, &g), b) in params.iter_mut().zip(grads).zip(b.iter_mut()) {
        let g = g + weight_decay * *p;
        *b = mu * *b + g;
        *p = *p - lr * *b;
    }
}

/// The numbers of one Adam step, in the type it runs in: the kernel's uniform (lr, weight decay, β1, β2,
/// eps) and its step state's bias corrections (`1 − β1^t`, `sqrt(1 − β2^t)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep<T> {
    pub lr: T,
    pub weight_decay: T,
    pub beta1: T,
    pub beta2: T,
    pub eps: T,
    pub bias_correction1: T,
    pub bias_correction2_sqrt: T,
}

/// Twin of `adam` (PyTorch's, not AMSGrad): `m ← β1 m + (1 − β1) g'`, `v ← β2 v + (1 − β2) g'²`,
/// `θ ← θ − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)`. θ, g, m, v (P).
pub fn adam<T: Real>(params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T], s: &AdamStep<T>) {
    let one = T::one();
    for i in 0..params.len() {
        let g = grads[i] + s.weight_decay * params[i];
        m[i] = s.beta1 * m[i] + (one - s.beta1) * g;
        v[i] = s.beta2 * v[i] + (one - s.beta2) * g * g;
        let denom = v[i].sqrt() / s.bias_correction2_sqrt + s.eps;
        params[i] = params[i] - (s.lr / s.bias_correction1) * m[i] / denom;
    }
}

/// Twin of `grad_norm`: `Σ g²` over a piece of the gradient, in f64. g (P).
pub fn grad_norm<T: Real>(grads: &[T]) -> f64 {
    grads.iter().map(|g| g.to_f64().unwrap_or(f64::NAN).powi(2)).sum()
}

/// Twin of `grad_norm_finish`: PyTorch's `clip_grad_norm_` coefficient `min(1, max_norm / (‖g‖ + 1e-6))`
/// from the pieces' sums of squares.
pub fn grad_norm_finish(partials: &[f64], max_norm: f32) -> f64 {
    let norm = partials.iter().sum::<f64>().sqrt();
    (max_norm as f64 / (norm + 1e-6)).min(1.0)
}

/// The clip coefficient of a whole gradient (one piece), as the CPU backend applies it.
pub fn clip_coefficient<T: Real>(grads: &[T], max_norm: f32) -> T {
    cast(grad_norm_finish(&[grad_norm(grads)], max_norm))
}

/// Twin of `optim_prepare`, on the state the GPU keeps: counts the step, notes it if `last_loss` is not
/// finite, and advances Adam's bias corrections in f32 (`fma` in WGSL, `mul_add` here) once for each step
/// since `bias_step`, stopping at the recurrence's fixed point. `betas` and `one_minus` are the uniform's
/// (β1, β2) and (1 − β1, 1 − β2), rounded from f64; 0 for the rules without corrections.
///
/// WGSL lets `fma` round the product before the sum, and some devices do: the GPU's corrections agree
/// with these to the recurrence's rounding, not bit for bit. That is why a restored GPU state has the
/// replay done on the GPU, by the kernel itself, rather than corrections computed here.
pub fn optim_prepare(state: &mut StepState, last_loss: f32, betas: (f32, f32), one_minus: (f32, f32)) {
    let t = state.t + 1;
    state.t = t;
    if !last_loss.is_finite() && state.first_bad_step == 0 {
        state.first_bad_step = t;
    }
    let (mut bc1, mut bc2) = (state.bias_correction1, state.bias_correction2);
    for _ in state.bias_step..t {
        let next = (betas.0.mul_add(bc1, one_minus.0), betas.1.mul_add(bc2, one_minus.1));
        if next == (bc1, bc2) {
            break;
        }
        (bc1, bc2) = next;
    }
    state.bias_step = t;
    (state.bias_correction1, state.bias_correction2, state.bias_correction2_sqrt) = (bc1, bc2, bc2.sqrt());
}

/// What the GPU keeps of the optimizer's step from kernel to kernel (`StepState` in `optim.wgsl`): the
/// step count and Adam's bias corrections, advanced by `optim_prepare` before each update, the first
/// step whose loss was not finite, and the step's gradient clip coefficient.
///
/// The bias corrections are a recurrence in f32, not a function of t the host could recompute to the same
/// bits, so a restored state starts them over (`resumed`) and the next `optim_prepare` replays them up to t.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepState {
    /// Steps taken.
    pub t: u32,
    /// The step the bias corrections are for: t, except after a restore until the next step replays them.
    pub bias_step: u32,
    /// The first step whose loss was NaN or infinite; 0 while there is none.
    pub first_bad_step: u32,
    /// `1 − β1^t`, kept by the recurrence `q ← β1·q + (1 − β1)` (1 − pow(β, t) in f32 would cancel
    /// catastrophically for β2 = 0.999).
    pub bias_correction1: f32,
    /// `1 − β2^t`, by the same recurrence.
    pub bias_correction2: f32,
    /// `sqrt(1 − β2^t)`.
    pub bias_correction2_sqrt: f32,
    /// The clip coefficient of the step's gradient (1 when not clipping).
    pub clip: f32,
}

impl StepState {
    /// Before the first step.
    pub const START: Self = Self::resumed(0);

    /// After `t` steps, restored: the bias corrections start over, for the next step to replay.
    pub const fn resumed(t: u32) -> Self {
        Self {
            t,
            bias_step: 0,
            first_bad_step: 0,
            bias_correction1: 0.0,
            bias_correction2: 0.0,
            bias_correction2_sqrt: 0.0,
            clip: 1.0,
        }
    }
}
