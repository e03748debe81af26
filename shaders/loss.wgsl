// loss.wgsl: the losses and their gradients.
//
//   loss_grad     δ_L = scale (A − Y) ⊙ f'(Z_L)           A (B, O), Y (B, O) → (B, O), f' taken from A
//                 MSE: dL/dA = 2 (A − Y) / (B·O), scale = 2/(B·O), times the output activation's f'
//                 (identity: dL/dA itself)
//                 softmax cross-entropy, fused: δ_L = (softmax(Z) − Y) / B, scale = 1/B, act identity
//   mse_loss      L = mean((A − Y)²)                       → totals.last
//   xent_loss     L = mean_b Σ_j y_bj (logsumexp(z_b) − z_bj)   Z (B, O), Y (B, O) → totals.last
//   softmax_rows  A = softmax(Z) per row                   Z (B, O) → A (B, O)
//
// The two loss kernels run as one workgroup and sum in a fixed order, so the loss is the same bits on
// every run. When acc_weight is not 0 they also add loss·acc_weight to totals.sum, which sums the epoch's
// loss on the GPU with no read-back per step. A batch too large for one binding is taken in pieces of rows:
// `scale` holds the whole batch's size, and every piece after the first has `accumulate` set, so
// totals.last ends as the whole batch's loss.

struct LossParams {
    n: u32, rows: u32, cols: u32, act: u32,
    scale: f32, acc_weight: f32, accumulate: u32, _pad: u32,
}

// The last batch's loss and the running sum of loss·B (`LossTotals` on the host).
struct LossTotals { last: f32, sum: f32, }

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;      // A, or Z for xent_loss and softmax_rows
@group(0) @binding(2) var<storage, read> expected: array<f32>;  // Y
@group(0) @binding(3) var<storage, read_write> out: array<f32>;            // δ, or softmax(Z)
@group(0) @binding(3) var<storage, read_write> totals: LossTotals;         // the loss kernels' output

@compute @workgroup_size(WG)
fn loss_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i < p.n) {
        let a = pred[i];
        out[i] = p.scale * (a - expected[i]) * derivative_from_output(p.act, a);
    }
}

// Sums the invocations' values over the workgroup (`workgroup_sum`) and stores the mean (sum · scale).
fn finish_loss(lanes: Lanes, s: f32) {
    let sum = workgroup_sum(lanes, s, 1u, WG);
    if (lane_index(lanes) == 0u) {
        let loss = sum * p.scale;
        if (p.accumulate != 0u) { totals.last += loss; } else { totals.last = loss; }
        if (p.acc_weight != 0.0) { totals.sum += loss * p.acc_weight; }
    }
}

// scale = 1 / (B·O)
@compute @workgroup_size(WG)
fn mse_loss(lanes: Lanes) {
    let t = lane_index(lanes);
    var s = 0.0;
    for (var i = t; i < p.n; i += WG) {
        let d = pred[i] - expected[i];
        s = fma(d, d, s);
    }
    finish_loss(lanes, s);
}

// scale = 1 / B; one thread per row, rows strided over the workgroup.
@compute @workgroup_size(WG)
fn xent_loss(lanes: Lanes) {
    let t = lane_index(lanes);
    var s = 0.0;
    for (var r = t; r < p.rows; r += WG) {
        let base = r * p.cols;
        var m = pred[base];
        for (var j = 1u; j < p.cols; j++) { m = max(m, pred[base + j]); }
        var e = 0.0;
        for (var j = 0u; j < p.cols; j++) { e += exp(pred[base + j] - m); }
        let lse = m + log(e);
        for (var j = 0u; j < p.cols; j++) { s += expected[base + j] * (lse - pred[base + j]); }
    }
    finish_loss(lanes, s);
}

// One thread per row.
@compute @workgroup_size(WG)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = flat_index(gid, groups);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    var m = pred[base];
    for (var j = 1u; j < p.cols; j++) { m = max(m, pred[base + j]); }
    var e = 0.0;
    for (var j = 0u; j < p.cols; j++) { e += exp(pred[base + j] - m); }
    for (var j = 0u; j < p.cols; j++) { out[base + j] = exp(pred[base + j] - m) / e; }
}
