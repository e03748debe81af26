// grad.wgsl: the bias gradient, a column sum of δ over the batch.
//
//   bias_grad   db = Σ_b δ_b      δ (B, O) → out[out_off .. out_off + O]
//
// The weight gradient dW = A_prevᵀ · δ (the outer products a_prev_b ⊗ δ_b summed over the batch) is the
// transposed product of linear.wgsl's `matmul`, so it shares that kernel's tiling.
// A workgroup of WG = COLS × LANES invocations (16 × 16) sums COLS columns: invocation t takes column
// t % COLS and adds rows t / COLS, t / COLS + LANES, t / COLS + 2·LANES, ... of it, so a row's COLS columns
// are read side by side; the LANES partial sums of each column are then added by `workgroup_sum` with COLS
// columns (subgroup operations where the device has them, else a fixed-order tree in workgroup memory).
// Sixteen times the threads of one thread per column (the batch usually dwarfs the output width), and
// still deterministic. The sum is multiplied by `scale` (1 for the gradient); with `accumulate`
// set it is added to `out` (a batch taken in pieces of rows, or, with scale −lr, plain SGD applied straight
// to the bias: b ← b − lr·db).

struct GradParams { rows: u32, cols: u32, out_off: u32, accumulate: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32, }

@group(0) @binding(0) var<uniform> p: GradParams;
@group(0) @binding(1) var<storage, read> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = WG / COLS;

@compute @workgroup_size(WG)
fn bias_grad(lanes: Lanes, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = lane_index(lanes);
    let lane = t / COLS;
    let c = (wid.x + wid.y * groups.x) * COLS + t % COLS;
    var s = 0.0;
    if (c < p.cols) {
        for (var r = lane; r < p.rows; r += LANES) { s += delta[r * p.cols + c]; }
    }
    let sum = workgroup_sum(lanes, s, COLS, WG);
    if (lane == 0u && c < p.cols) {
        var v = sum * p.scale;
        if (p.accumulate != 0u) { v += out[p.out_off + c]; }
        out[p.out_off + c] = v;
    }
}
