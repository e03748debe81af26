// grad.wgsl: the bias gradient, a column sum of δ over the batch.
//
//   bias_grad   db = Σ_b δ_b      δ (B, O) → out[out_off .. out_off + O]
//
// The weight gradient dW = A_prevᵀ · δ (the outer products a_prev_b ⊗ δ_b summed over the batch) is the
// transposed product of linear.wgsl's `matmul`, so it shares that kernel's tiling.
// A workgroup of 16 × 16 threads sums 16 columns: thread (x, y) adds rows y, y + 16, y + 32, ... of column
// x, so a row's 16 columns are read side by side, and the 16 partial sums of each column are then added in a
// fixed tree order. Sixteen times the threads of one thread per column (the batch usually dwarfs the output
// width), and still deterministic. The sum is multiplied by `scale` (1 for the gradient); with `accumulate`
// set it is added to `out` (a batch taken in pieces of rows, or, with scale −lr, plain SGD applied straight
// to the bias: b ← b − lr·db).

struct GradParams { rows: u32, cols: u32, out_off: u32, accumulate: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32, }

@group(0) @binding(0) var<uniform> p: GradParams;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read> unused: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const LANES: u32 = 16u;
var<workgroup> lane_sums: array<f32, 256>; // (LANES rows, 16 columns)

@compute @workgroup_size(16, 16, 1)
fn bias_grad(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = (wid.x + wid.y * groups.x) * 16u + lid.x;
    var s = 0.0;
    if (c < p.cols) {
        for (var r = lid.y; r < p.rows; r += LANES) { s += delta[r * p.cols + c]; }
    }
    lane_sums[lid.y * 16u + lid.x] = s;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lid.y < stride) { lane_sums[lid.y * 16u + lid.x] += lane_sums[(lid.y + stride) * 16u + lid.x]; }
        workgroupBarrier();
    }
    if (lid.y == 0u && c < p.cols) {
        var v = lane_sums[lid.x] * p.scale;
        if (p.accumulate != 0u) { v += out[p.out_off + c]; }
        out[p.out_off + c] = v;
    }
}
