// optim.wgsl: optimizer updates over the one flat parameter buffer.
//
//   sgd   θ ← θ − lr · g      g (P), θ (P)

struct OptimParams { n: u32, lr: f32, _pad0: u32, _pad1: u32, }

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read> unused: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i < p.n) { params[i] -= p.lr * grads[i]; }
}
