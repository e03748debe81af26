// optim.wgsl: optimizer updates over the one flat parameter buffer, with PyTorch's definitions.
// Every rule first adds the coupled L2 weight decay: g' = g + weight_decay · θ.
//
//   sgd        θ ← θ − lr · g'
//   momentum   b ← μ · b + g';  θ ← θ − lr · b                           (dampening 0, not Nesterov)
//   adam       m ← β1 m + (1 − β1) g';  v ← β2 v + (1 − β2) g'²
//              θ ← θ − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)      bc1 = 1 − β1^t, bc2_sqrt = sqrt(1 − β2^t)
//
// g, θ, m, v are all (P). The step count t and Adam's bias corrections live on the GPU, in `scalars`
// ([t as u32 bits, bc1, bc2_sqrt, bc2]), advanced by `optim_prepare` (one thread) before each update, so
// many steps can be encoded in one submit. 1 − β^t is kept by the recurrence q ← β·q + (1 − β), with
// 1 − β rounded from f64 on the host: computing 1 − pow(β, t) in f32 would cancel catastrophically for
// β2 = 0.999. The host rewrites the uniform only when lr changes.

struct OptimParams {
    n: u32, _pad0: u32, lr: f32, weight_decay: f32,
    momentum: f32, beta1: f32, beta2: f32, eps: f32,
    one_minus_beta1: f32, one_minus_beta2: f32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> scalars: array<f32>;

// t ← t + 1; bc1 = 1 − β1^t; bc2 = 1 − β2^t; bc2_sqrt = sqrt(bc2).
@compute @workgroup_size(1, 1, 1)
fn optim_prepare() {
    scalars[0] = bitcast<f32>(bitcast<u32>(scalars[0]) + 1u);
    scalars[1] = fma(p.beta1, scalars[1], p.one_minus_beta1);
    scalars[3] = fma(p.beta2, scalars[3], p.one_minus_beta2);
    scalars[2] = sqrt(scalars[3]);
}

@compute @workgroup_size(256, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let g = grads[i] + p.weight_decay * params[i];
    params[i] -= p.lr * g;
}

@compute @workgroup_size(256, 1, 1)
fn momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let g = grads[i] + p.weight_decay * params[i];
    let b = p.momentum * m[i] + g;
    m[i] = b;
    params[i] -= p.lr * b;
}

@compute @workgroup_size(256, 1, 1)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.n) { return; }
    let g = grads[i] + p.weight_decay * params[i];
    let m1 = p.beta1 * m[i] + p.one_minus_beta1 * g;
    let v1 = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
    m[i] = m1;
    v[i] = v1;
    let denom = sqrt(v1) / scalars[2] + p.eps;
    params[i] -= (p.lr / scalars[1]) * m1 / denom;
}
