// optim.wgsl: optimizer updates over the one flat parameter buffer, with PyTorch's definitions.
// Every rule first adds the coupled L2 weight decay: g' = g + weight_decay · θ.
//
//   sgd        θ ← θ − lr · g'
//   momentum   b ← μ · b + g';  θ ← θ − lr · b                           (dampening 0, not Nesterov)
//   adam       m ← β1 m + (1 − β1) g';  v ← β2 v + (1 − β2) g'²
//              θ ← θ − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)      bc1 = 1 − β1^t, bc2_sqrt = sqrt(1 − β2^t)
//
// g, θ, m, v are all (P). The step count t and Adam's bias corrections live on the GPU, in `step_state`,
// advanced by `optim_prepare` (one thread) before each update, so many steps can be encoded in one submit.
// 1 − β^t is kept by the recurrence q ← β·q + (1 − β), with 1 − β rounded from f64 on the host: computing
// 1 − pow(β, t) in f32 would cancel catastrophically for β2 = 0.999. The host rewrites the uniform only
// when lr changes.
//
// step_state.first_bad_step is the first step whose loss was NaN or infinite (0: none yet), so divergence
// is found with the epoch's one read-back. With --max-grad-norm (max_grad_norm > 0), `grad_norm` sums each
// piece's squares into partials[piece] and `grad_norm_finish` sets step_state.clip =
// min(1, max_norm / (‖g‖ + 1e-6)) as PyTorch's clip_grad_norm_; every rule uses g·clip.
//
// Parameters larger than one storage binding are updated in pieces that fit, one dispatch each: g, θ, m, v
// are then bound from the piece's start, `n` is the piece's length and `piece` its index.

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

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> step_state: StepState;
@group(0) @binding(6) var<storage, read> loss: LossTotals;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

fn is_finite(x: f32) -> bool {
    return abs(x) <= 0x1.fffffep+127f; // f32::MAX, exactly; false for NaN and ±inf
}

// The gradient as the rules use it: clipped, then with weight decay.
fn grad(i: u32) -> f32 {
    var g = grads[i];
    if (p.max_grad_norm > 0.0) { g *= step_state.clip; }
    return g + p.weight_decay * params[i];
}

// partials[piece] = Σ g² over this piece; one workgroup, fixed summation order.
@compute @workgroup_size(WG)
fn grad_norm(lanes: Lanes) {
    let t = lane_index(lanes);
    var s = 0.0;
    for (var i = t; i < p.n; i += WG) { s = fma(grads[i], grads[i], s); }
    let sum = workgroup_sum(lanes, s, 1u, WG);
    if (t == 0u) { partials[p.piece] = sum; }
}

// clip = min(1, max_norm / (‖g‖ + 1e-6)), summing the pieces in order.
@compute @workgroup_size(1, 1, 1)
fn grad_norm_finish() {
    var s = 0.0;
    for (var i = 0u; i < p.pieces; i++) { s += partials[i]; }
    step_state.clip = min(1.0, p.max_grad_norm / (sqrt(s) + 1e-6));
}

// t ← t + 1; note the step if its loss is not finite; bc1 = 1 − β1^t, bc2 = 1 − β2^t, bc2_sqrt = sqrt(bc2).
// The corrections advance by q ← β·q + (1 − β) once for each step since `bias_step`: once a step, and
// after a restore (bias_step 0) from the start, stopping early where q no longer changes (its fixed point:
// the recurrence only rises, so it stays there). The replay runs this same loop, so a resumed run has the
// bits of one that never stopped.
@compute @workgroup_size(1, 1, 1)
fn optim_prepare() {
    let t = step_state.t + 1u;
    step_state.t = t;
    if (!is_finite(loss.last) && step_state.first_bad_step == 0u) { step_state.first_bad_step = t; }
    var bc1 = step_state.bias_correction1;
    var bc2 = step_state.bias_correction2;
    for (var at = step_state.bias_step; at < t; at++) {
        let next1 = fma(p.beta1, bc1, p.one_minus_beta1);
        let next2 = fma(p.beta2, bc2, p.one_minus_beta2);
        if (next1 == bc1 && next2 == bc2) { break; }
        bc1 = next1;
        bc2 = next2;
    }
    step_state.bias_step = t;
    step_state.bias_correction1 = bc1;
    step_state.bias_correction2 = bc2;
    step_state.bias_correction2_sqrt = sqrt(bc2);
}

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    params[i] -= p.lr * grad(i);
}

@compute @workgroup_size(WG)
fn momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let b = p.momentum * m[i] + grad(i);
    m[i] = b;
    params[i] -= p.lr * b;
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let g = grad(i);
    let m1 = p.beta1 * m[i] + p.one_minus_beta1 * g;
    let v1 = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
    m[i] = m1;
    v[i] = v1;
    let denom = sqrt(v1) / step_state.bias_correction2_sqrt + p.eps;
    params[i] -= (p.lr / step_state.bias_correction1) * m1 / denom;
}
