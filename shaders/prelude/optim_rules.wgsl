// optim_rules.wgsl: the optimizer's update rules, with PyTorch's definitions, and the structs they use;
// prepended (after the reductions) to optim.wgsl and to the fused step's files, so the unfused and the
// fused update run the same code. Every rule first clips the gradient (when clipping) and adds the coupled
// L2 weight decay: g' = g·clip + weight_decay · θ.
//
//   sgd        θ ← θ − lr · g'
//   momentum   b ← μ · b + g';  θ ← θ − lr · b                           (dampening 0, not Nesterov)
//   adam       m ← β1 m + (1 − β1) g';  v ← β2 v + (1 − β2) g'²
//              θ ← θ − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)      bc1 = 1 − β1^t, bc2_sqrt = sqrt(1 − β2^t)
//
// The step count t and Adam's bias corrections live on the GPU, in a `StepState`, advanced once a step by
// `advance_step`. 1 − β^t is kept by the recurrence q ← β·q + (1 − β), with 1 − β rounded from f64 on the
// host: computing 1 − pow(β, t) in f32 would cancel catastrophically for β2 = 0.999.

struct OptimParams {
    n: u32, piece: u32, lr: f32, weight_decay: f32,
    momentum: f32, beta1: f32, beta2: f32, eps: f32,
    one_minus_beta1: f32, one_minus_beta2: f32, max_grad_norm: f32, pieces: u32,
}

// The optimizer's step between kernels (`optim::StepState` on the host).
struct StepState {
    t: u32, bias_step: u32, first_bad_step: u32,
    bias_correction1: f32, bias_correction2: f32, bias_correction2_sqrt: f32,
    clip: f32,
}

// The loss kernels' output (loss.wgsl), read for the divergence check.
struct LossTotals { last: f32, sum: f32, }

fn is_finite(x: f32) -> bool {
    return abs(x) <= 0x1.fffffep+127f; // f32::MAX, exactly; false for NaN and ±inf
}

// The gradient as the rules use it: g times the clip coefficient `clip` (when clipping), then the weight
// decay of the parameter θ.
fn rule_gradient(p: OptimParams, g: f32, theta: f32, clip: f32) -> f32 {
    var c = g;
    if (p.max_grad_norm > 0.0) { c *= clip; }
    return c + p.weight_decay * theta;
}

// θ after one SGD step with gradient g (rule_gradient's).
fn sgd_rule(p: OptimParams, theta: f32, g: f32) -> f32 {
    return theta - p.lr * g;
}

// (θ, b) after one momentum step with gradient g, from θ and the momentum buffer's b.
fn momentum_rule(p: OptimParams, theta: f32, g: f32, b: f32) -> vec2<f32> {
    let b1 = p.momentum * b + g;
    return vec2<f32>(theta - p.lr * b1, b1);
}

// (θ, m, v) after one Adam step with gradient g, with the step state's bias corrections bc1 = 1 − β1^t and
// bc2_sqrt = sqrt(1 − β2^t).
fn adam_rule(p: OptimParams, theta: f32, g: f32, m: f32, v: f32, bc1: f32, bc2_sqrt: f32) -> vec3<f32> {
    let m1 = p.beta1 * m + p.one_minus_beta1 * g;
    let v1 = p.beta2 * v + p.one_minus_beta2 * g * g;
    let denom = sqrt(v1) / bc2_sqrt + p.eps;
    return vec3<f32>(theta - (p.lr / bc1) * m1 / denom, m1, v1);
}

// The step state after t ← t + 1: the bias corrections advance by q ← β·q + (1 − β) once for each step
// since `bias_step`: once a step, and after a restore (bias_step 0) from the start, stopping early where q
// no longer changes (its fixed point: the recurrence only rises, so it stays there). The replay runs this
// same loop, so a resumed run has the bits of one that never stopped. `betas` = (β1, β2) and `one_minus`
// = (1 − β1, 1 − β2), 0 for the rules without corrections.
fn advance_step(s: StepState, betas: vec2<f32>, one_minus: vec2<f32>) -> StepState {
    var out = s;
    let t = s.t + 1u;
    out.t = t;
    var bc1 = s.bias_correction1;
    var bc2 = s.bias_correction2;
    for (var at = s.bias_step; at < t; at++) {
        let next1 = fma(betas.x, bc1, one_minus.x);
        let next2 = fma(betas.y, bc2, one_minus.y);
        if (next1 == bc1 && next2 == bc2) { break; }
        bc1 = next1;
        bc2 = next2;
    }
    out.bias_step = t;
    out.bias_correction1 = bc1;
    out.bias_correction2 = bc2;
    out.bias_correction2_sqrt = sqrt(bc2);
    return out;
}
