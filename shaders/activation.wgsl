// activation.wgsl: an activation's forward and its derivative, side by side.
//
//   activation_forward   A = f(Z)               Z (B, O) → A (B, O)
//   activation_backward  δ = dA ⊙ f'(Z)         dA (B, O), Z (B, O) → δ (B, O)

struct EltParams { n: u32, act: u32, _pad0: u32, _pad1: u32, }

@group(0) @binding(0) var<uniform> p: EltParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;   // Z (forward) or dA (backward)
@group(0) @binding(2) var<storage, read> aux: array<f32>;   // Z (backward only)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn activation_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i < p.n) { dst[i] = activate(p.act, src[i]); }
}

@compute @workgroup_size(256, 1, 1)
fn activation_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i < p.n) { dst[i] = src[i] * activate_derivative(p.act, aux[i]); }
}
