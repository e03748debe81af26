// optim.wgsl: optimizer updates over the one flat parameter buffer, with PyTorch's definitions.
// Every rule first adds the coupled L2 weight decay: g' = g + weight_decay · θ.
//
//   sgd        θ ← θ − lr · g'
//   momentum   b ← μ · b + g';  θ ← θ − lr · b                           (dampening 0, not Nesterov)
//   adam       m ← β1 m + (1 − β1) g';  v ← β2 v + (1 − β2) g'²
//              θ ← θ − (lr / bc1) · m / (sqrt(v) / bc2_sqrt + eps)      bc1 = 1 − β1^t, bc2_sqrt = sqrt(1 − β2^t)
//
// g, θ, m, v are all (P). The host rewrites the uniform when lr or t changes.

struct OptimParams {
    n: u32, _pad0: u32, lr: f32, weight_decay: f32,
    momentum: f32, beta1: f32, beta2: f32, eps: f32,
    bc1: f32, bc2_sqrt: f32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

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
    let m1 = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let v1 = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = m1;
    v[i] = v1;
    let denom = sqrt(v1) / p.bc2_sqrt + p.eps;
    params[i] -= (p.lr / p.bc1) * m1 / denom;
}
