// grad.wgsl: the bias gradient, a column sum of δ over the batch.
//
//   bias_grad   db = Σ_b δ_b      δ (B, O) → out[out_off .. out_off + O]
//
// The weight gradient dW = A_prevᵀ · δ (the outer products a_prev_b ⊗ δ_b summed over the batch) is the
// transposed product of linear.wgsl's `matmul`, so it shares that kernel's tiling.
// Each column is summed by one thread in batch order: a fixed order, so the result is deterministic.
// With `accumulate` set the sum is added to `out` (a batch taken in pieces of rows).

struct GradParams { rows: u32, cols: u32, out_off: u32, accumulate: u32, }

@group(0) @binding(0) var<uniform> p: GradParams;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> unused: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = flat_index(gid, groups);
    if (c >= p.cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) { s += delta[r * p.cols + c]; }
    if (p.accumulate != 0u) { s += out[p.out_off + c]; }
    out[p.out_off + c] = s;
}
