// optim.wgsl: optimizer updates over the one flat parameter buffer: the rules of prelude/optim_rules.wgsl
// (prepended), each one kernel, and the step's bookkeeping.
//
//   optim_prepare      t ← t + 1, Adam's bias corrections (`advance_step`), the divergence check
//   grad_norm          partials[piece] = Σ g² over this piece
//   grad_norm_finish   step_state.clip = min(1, max_norm / (‖g‖ + 1e-6)), the pieces summed in order
//   sgd, momentum, adam   the rule over this piece of the parameters
//
// g, θ, m, v are all (P). `optim_prepare` (one thread) runs before each update, so many steps can be
// encoded in one submit. The host rewrites the uniform only when lr changes.
//
// step_state.first_bad_step is the first step whose loss was NaN or infinite (0: none yet), so divergence
// is found with the epoch's one read-back. With --max-grad-norm (max_grad_norm > 0), `grad_norm` sums each
// piece's squares into partials[piece] and `grad_norm_finish` sets step_state.clip as PyTorch's
// clip_grad_norm_; every rule uses g·clip.
//
// Parameters larger than one storage binding are updated in pieces that fit, one dispatch each: g, θ, m, v
// are then bound from the piece's start, `n` is the piece's length and `piece` its index.

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> step_state: StepState;
@group(0) @binding(6) var<storage, read> loss: LossTotals;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

// The gradient of parameter i as the rules use it.
fn grad(i: u32) -> f32 {
    return rule_gradient(p, grads[i], params[i], step_state.clip);
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

// t ← t + 1 and the bias corrections (`advance_step`); the step noted if its loss is not finite.
@compute @workgroup_size(1, 1, 1)
fn optim_prepare() {
    var s = advance_step(step_state, vec2<f32>(p.beta1, p.beta2), vec2<f32>(p.one_minus_beta1, p.one_minus_beta2));
    if (!is_finite(loss.last) && s.first_bad_step == 0u) { s.first_bad_step = s.t; }
    step_state = s;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    params[i] = sgd_rule(p, params[i], grad(i));
}

@compute @workgroup_size(WG)
fn momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let r = momentum_rule(p, params[i], grad(i), m[i]);
    params[i] = r.x;
    m[i] = r.y;
}

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let s = step_state;
    let r = adam_rule(p, params[i], grad(i), m[i], v[i], s.bias_correction1, s.bias_correction2_sqrt);
    params[i] = r.x;
    m[i] = r.y;
    v[i] = r.z;
}
