// fused_update.wgsl: the second (and, when the gradient norm is clipped, third) launch of fused.wgsl's
// step: the groups' partial gradients summed in a fixed order, the loss, and the optimizer update in place,
// with the rules of prelude/optim_rules.wgsl (the unfused optimizer's own code).
//
//   fused_update   g = Σ_g partials[g·P + i] (groups in order) into grads; the batch loss (the loss
//                  partials in order, times the loss scale) into loss.last, loss·B added to loss.sum, and
//                  the first non-finite loss's step into step_state.first_bad_step; then the rule in place.
//   fused_reduce   as fused_update without the rule; each workgroup's Σ g² into partials[norm_off + w].
//   fused_apply    ‖g‖ from those sums (the same order in every workgroup), the clip coefficient
//                  min(1, max_norm / (‖g‖ + 1e-6)) into step_state.clip, and the rule.
//
// The step count and bias corrections are those fused_forward_backward advanced for this step.

// `FusedUpdateParams` on the host: the optimizer's uniform over all P parameters (n = P, one piece), then
// the fused step's fields. rule: 0 SGD, 1 momentum, 2 Adam.
struct FusedUpdateParams {
    o: OptimParams,
    rule: u32, groups: u32, loss_off: u32, norm_off: u32,
    norm_parts: u32, loss_scale: f32, acc_weight: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> up: FusedUpdateParams;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>; // fused_forward_backward's `work`
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> step_state: StepState;
@group(0) @binding(7) var<storage, read_write> loss: LossTotals;

// Σ over the groups, in order, of the partial gradients at parameter i.
fn summed_gradient(i: u32) -> f32 {
    var s = 0.0;
    for (var g = 0u; g < up.groups; g++) { s += partials[g * up.o.n + i]; }
    return s;
}

// The batch loss from the groups' loss sums, into loss.last and (times B) loss.sum; the divergence check.
fn finish_loss() {
    var s = 0.0;
    for (var g = 0u; g < up.groups; g++) { s += partials[up.loss_off + g]; }
    let l = s * up.loss_scale;
    loss.last = l;
    loss.sum += l * up.acc_weight;
    if (!is_finite(l) && step_state.first_bad_step == 0u) { step_state.first_bad_step = step_state.t; }
}

// The rule for parameter i with the summed gradient g, clipped by `clip` when clipping is on.
fn apply_rule(i: u32, g: f32, clip: f32) {
    let d = rule_gradient(up.o, g, params[i], clip);
    switch up.rule {
        case 1u: {
            let r = momentum_rule(up.o, params[i], d, m[i]);
            params[i] = r.x;
            m[i] = r.y;
        }
        case 2u: {
            let bc = vec2<f32>(step_state.bias_correction1, step_state.bias_correction2_sqrt);
            let r = adam_rule(up.o, params[i], d, m[i], v[i], bc.x, bc.y);
            params[i] = r.x;
            m[i] = r.y;
            v[i] = r.z;
        }
        default: { params[i] = sgd_rule(up.o, params[i], d); }
    }
}

@compute @workgroup_size(WG)
fn fused_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i == 0u) { finish_loss(); }
    if (i < up.o.n) {
        let g = summed_gradient(i);
        grads[i] = g;
        apply_rule(i, g, 1.0);
    }
}

@compute @workgroup_size(WG)
fn fused_reduce(lanes: Lanes, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = lane_index(lanes);
    let w = wid.x + wid.y * groups.x;
    let i = w * WG + t;
    if (i == 0u) { finish_loss(); }
    var sq = 0.0;
    if (i < up.o.n) {
        let g = summed_gradient(i);
        grads[i] = g;
        sq = g * g;
    }
    let total = workgroup_sum(lanes, sq, 1u, WG);
    if (t == 0u) { partials[up.norm_off + w] = total; }
}

@compute @workgroup_size(WG)
fn fused_apply(lanes: Lanes, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = lane_index(lanes);
    let w = wid.x + wid.y * groups.x;
    let i = w * WG + t;
    var s = 0.0;
    for (var k = t; k < up.norm_parts; k += WG) { s += partials[up.norm_off + k]; }
    let total = workgroup_sum(lanes, s, 1u, WG);
    let clip = min(1.0, up.o.max_grad_norm / (sqrt(total) + 1e-6));
    if (i == 0u) { step_state.clip = clip; }
    if (i < up.o.n) { apply_rule(i, grads[i], clip); }
}
