// loss.wgsl: the MSE loss and its gradient.
//
//   mse_grad   dA = 2 (A − Y) / (B·O)      A (B, O), Y (B, O) → (B, O)
//   mse_loss   L = mean((A − Y)²)          A (B, O), Y (B, O) → out[out_off] (one value)
//
// mse_loss runs as one workgroup and sums in a fixed order, so the loss is the same bits on every run.

struct LossParams { n: u32, out_off: u32, scale: f32, _pad0: u32, }

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> expected: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn mse_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i < p.n) { out[i] = p.scale * (pred[i] - expected[i]); }
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn mse_loss(@builtin(local_invocation_index) t: u32) {
    var s = 0.0;
    for (var i = t; i < p.n; i += WG) {
        let d = pred[i] - expected[i];
        s = fma(d, d, s);
    }
    partial[t] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) { partial[t] += partial[t + stride]; }
        workgroupBarrier();
    }
    if (t == 0u) { out[p.out_off] = partial[0] / f32(p.n); }
}
