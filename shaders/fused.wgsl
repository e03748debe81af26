// fused.wgsl: a whole training step of a narrow MLP in two launches (three when the gradient norm is
// clipped), whatever its depth; this is the first, fused_update.wgsl the others. P is the number of
// parameters, G the workgroups of this launch ("groups"), R the rows of a block; the other letters as in
// DESIGN.md.
//
//   fused_forward_backward  one workgroup per group of consecutive row blocks. For each of its blocks (R rows
//                           of the batch, taken through the row order as data.wgsl does): the rows of X into
//                           workgroup memory, forward through every layer (each A_l kept there), the loss and
//                           δ_L, and backward through every layer (δ_l written over A_l once nothing needs
//                           A_l). The block's weight and bias gradients add into the group's partial gradient
//                           work[g·P ..] (its first block writes it), its loss sum into work[loss_off + g].
//
// The step count and Adam's bias corrections advance once per step here, in workgroup 0 (nothing reads
// them in this launch; the update does), by optim_prepare's `advance_step` (prelude/optim_rules.wgsl).
//
// Workgroup memory holds a block's X and every A_l: R·(I_0 + Σ O_l) values, at most ACT_CAP, which the
// host sets from the device's max_compute_workgroup_storage_size. The products run in 4 × 4 tiles held in
// registers, shared round-robin among the FUSED_WG invocations; layers are at most FUSED_WG wide.
// Every sum runs in a fixed order: over a layer's inputs, over a block's rows, over the blocks of a group.
// With `trace` set it also writes Z_l, A_l and δ_l of every row to `trace`.

// The host's values: `gpu::tune::{FUSED_WORKGROUP, MAX_BLOCK_ROWS, MAX_LAYERS}` (a test reads these).
const FUSED_WG: u32 = 128u;
const MAX_BLOCK_ROWS: u32 = 32u;
const MAX_LAYERS: u32 = 64u;
// f32 values of `act`: set per device from max_compute_workgroup_storage_size (`gpu::tune::act_capacity`);
// the default is WebGPU's 16 KiB less this kernel's other workgroup arrays.
override ACT_CAP: u32 = 3808u;

// One layer of the network: its shape, activation and W's offset in the flat parameters (b follows W);
// the offsets of its input and output in `act`, and of its Z in `trace` (then A and δ, B·O values each).
struct FusedLayer {
    inputs: u32, outputs: u32, activation: u32, w_off: u32,
    act_in: u32, act_out: u32, trace_off: u32, _pad: u32,
}

// `FusedParams` on the host. loss: 0 MSE, 1 softmax cross-entropy; grad_scale: δ_L's scale (2/(B·O) for
// MSE, 1/B for cross-entropy); the betas advance Adam's bias corrections (0 for the other rules).
struct FusedParams {
    rows: u32, layers: u32, block_rows: u32, blocks: u32,
    blocks_per_group: u32, params: u32, order_off: u32, loss: u32,
    loss_off: u32, trace: u32, grad_scale: f32, _pad: u32,
    beta1: f32, beta2: f32, one_minus_beta1: f32, one_minus_beta2: f32,
    table: array<FusedLayer, MAX_LAYERS>,
}

@group(0) @binding(0) var<uniform> fp: FusedParams;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;       // (N, I_0): the batch, or a resident data set
@group(0) @binding(3) var<storage, read> y: array<f32>;       // (N, O_L)
@group(0) @binding(4) var<storage, read> order: array<u32>;   // the batch's rows of x and y
@group(0) @binding(5) var<storage, read_write> work: array<f32>;
@group(0) @binding(6) var<storage, read_write> step_state: StepState;
@group(0) @binding(7) var<storage, read_write> trace: array<f32>;

var<workgroup> act: array<f32, ACT_CAP>;
var<workgroup> block_row: array<u32, MAX_BLOCK_ROWS>;

// The block's data rows, then its rows of X at the start of `act`.
fn load_block(t: u32, r0: u32, nr: u32) {
    if (t < nr) { block_row[t] = order[fp.order_off + r0 + t]; }
    workgroupBarrier();
    let i0 = fp.table[0].inputs;
    for (var e = t; e < nr * i0; e += FUSED_WG) {
        let r = e / i0;
        act[e] = x[block_row[r] * i0 + (e - r * i0)];
    }
    workgroupBarrier();
}

// A 4 × 4 tile of sums held in registers: rows k = 0..3, each a vec4 of four columns.
struct Tile { r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32> }

// tile[k] += a[k] · b: one step of a product, a four rows' values and b four columns' values.
fn tile_fma(m: Tile, a: vec4<f32>, b: vec4<f32>) -> Tile {
    return Tile(fma(vec4<f32>(a.x), b, m.r0), fma(vec4<f32>(a.y), b, m.r1), fma(vec4<f32>(a.z), b, m.r2),
                fma(vec4<f32>(a.w), b, m.r3));
}

fn tile_row(m: Tile, k: u32) -> vec4<f32> {
    switch k {
        case 0u: { return m.r0; }
        case 1u: { return m.r1; }
        case 2u: { return m.r2; }
        default: { return m.r3; }
    }
}

// Four values of `act` from `at`, `stride` apart (values past a block's rows or a row's end read whatever
// follows; results from them are never stored).
fn act4(at: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(act[at], act[at + stride], act[at + 2u * stride], act[at + 3u * stride]);
}

fn params4(at: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(params[at], params[at + stride], params[at + 2u * stride], params[at + 3u * stride]);
}

// A_l = f(A_{l-1} · W + b) for the block's rows, in 4 × 4 tiles of (rows, columns), the tiles shared
// round-robin among the invocations: each weight is read once for four rows, each input once for four
// columns.
fn forward_layer(t: u32, l: u32, r0: u32, nr: u32) {
    let layer = fp.table[l];
    let i_w = layer.inputs;
    let o_w = layer.outputs;
    let b_off = layer.w_off + i_w * o_w;
    let col_tiles = (o_w + 3u) / 4u;
    for (var tile = t; tile < col_tiles * ((nr + 3u) / 4u); tile += FUSED_WG) {
        let c = 4u * (tile % col_tiles);
        let r = 4u * (tile / col_tiles);
        let bias = params4(b_off + c, 1u);
        var z = Tile(bias, bias, bias, bias);
        for (var i = 0u; i < i_w; i++) {
            z = tile_fma(z, act4(layer.act_in + r * i_w + i, i_w), params4(layer.w_off + i * o_w + c, 1u));
        }
        for (var k = 0u; k < min(4u, nr - r); k++) {
            let zk = tile_row(z, k);
            for (var j = 0u; j < min(4u, o_w - c); j++) {
                let a = activate(layer.activation, zk[j]);
                act[layer.act_out + (r + k) * o_w + c + j] = a;
                if (fp.trace != 0u) {
                    let tr = layer.trace_off + (r0 + r + k) * o_w + c + j;
                    trace[tr] = zk[j];
                    trace[tr + fp.rows * o_w] = a;
                }
            }
        }
    }
    workgroupBarrier();
}

// The block's loss sum (every invocation gets it), with δ_L written over A_L: MSE (δ = scale (A − Y) f'(Z),
// f' from A) or softmax cross-entropy from the logits (δ = (softmax(Z) − Y) / B).
fn loss_and_delta(lanes: Lanes, t: u32, r0: u32, nr: u32) -> f32 {
    let layer = fp.table[fp.layers - 1u];
    let o_w = layer.outputs;
    let out = layer.act_out;
    let d_trace = layer.trace_off + 2u * fp.rows * o_w + r0 * o_w;
    var part = 0.0;
    if (fp.loss == 0u) {
        for (var e = t; e < nr * o_w; e += FUSED_WG) {
            let r = e / o_w;
            let a = act[out + e];
            let d = a - y[block_row[r] * o_w + (e - r * o_w)];
            part = fma(d, d, part);
            let delta = fp.grad_scale * d * derivative_from_output(layer.activation, a);
            act[out + e] = delta;
            if (fp.trace != 0u) { trace[d_trace + e] = delta; }
        }
    } else {
        for (var r = t; r < nr; r += FUSED_WG) {
            let row = out + r * o_w;
            let target_row = block_row[r] * o_w;
            var m = act[row];
            for (var j = 1u; j < o_w; j++) { m = max(m, act[row + j]); }
            var e = 0.0;
            for (var j = 0u; j < o_w; j++) { e += exp(act[row + j] - m); }
            let lse = m + log(e);
            for (var j = 0u; j < o_w; j++) { part += y[target_row + j] * (lse - act[row + j]); }
            for (var j = 0u; j < o_w; j++) {
                let prob = exp(act[row + j] - m) / e;
                let delta = fp.grad_scale * (prob - y[target_row + j]);
                act[row + j] = delta;
                if (fp.trace != 0u) {
                    trace[d_trace + r * o_w + j - fp.rows * o_w] = prob;
                    trace[d_trace + r * o_w + j] = delta;
                }
            }
        }
    }
    return workgroup_sum(lanes, part, 1u, FUSED_WG);
}

// Adds a block's sum into the group's partial gradient at parameter i (the group's first block writes it).
fn add_partial(g: u32, i: u32, v: f32, first: bool) {
    let at = g * fp.params + i;
    if (first) { work[at] = v; } else { work[at] += v; }
}

// Layer l's weight and bias gradients over the block's rows into the partials, dW in 4 × 4 tiles of
// (inputs, columns); then (l > 0) δ_{l-1} = (δ_l · Wᵀ) ⊙ f'(A_{l-1}) in 4 × 4 tiles of (rows, inputs),
// written over A_{l-1}.
fn backward_layer(t: u32, g: u32, l: u32, r0: u32, nr: u32, first: bool) {
    let layer = fp.table[l];
    let i_w = layer.inputs;
    let o_w = layer.outputs;
    let col_tiles = (o_w + 3u) / 4u;
    for (var tile = t; tile < col_tiles * ((i_w + 3u) / 4u); tile += FUSED_WG) {
        let c = 4u * (tile % col_tiles);
        let i = 4u * (tile / col_tiles);
        var dw = Tile(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        for (var r = 0u; r < nr; r++) {
            dw = tile_fma(dw, act4(layer.act_in + r * i_w + i, 1u), act4(layer.act_out + r * o_w + c, 1u));
        }
        for (var k = 0u; k < min(4u, i_w - i); k++) {
            let row = tile_row(dw, k);
            for (var j = 0u; j < min(4u, o_w - c); j++) {
                add_partial(g, layer.w_off + (i + k) * o_w + c + j, row[j], first);
            }
        }
    }
    for (var c = t; c < o_w; c += FUSED_WG) {
        var sum = 0.0;
        for (var r = 0u; r < nr; r++) { sum += act[layer.act_out + r * o_w + c]; }
        add_partial(g, layer.w_off + i_w * o_w + c, sum, first);
    }
    if (l > 0u) {
        workgroupBarrier(); // every read of A_{l-1} above is done before δ_{l-1} replaces it
        let f_prev = fp.table[l - 1u].activation;
        let d_trace = fp.table[l - 1u].trace_off + 2u * fp.rows * i_w + r0 * i_w;
        let in_tiles = (i_w + 3u) / 4u;
        for (var tile = t; tile < in_tiles * ((nr + 3u) / 4u); tile += FUSED_WG) {
            let c = 4u * (tile % in_tiles);
            let r = 4u * (tile / in_tiles);
            var sum = Tile(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
            for (var o = 0u; o < o_w; o++) {
                sum = tile_fma(sum, act4(layer.act_out + r * o_w + o, o_w), params4(layer.w_off + c * o_w + o, o_w));
            }
            for (var k = 0u; k < min(4u, nr - r); k++) {
                let row = tile_row(sum, k);
                for (var j = 0u; j < min(4u, i_w - c); j++) {
                    let a_at = layer.act_in + (r + k) * i_w + c + j;
                    let d = row[j] * derivative_from_output(f_prev, act[a_at]);
                    act[a_at] = d;
                    if (fp.trace != 0u) { trace[d_trace + (r + k) * i_w + c + j] = d; }
                }
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(FUSED_WG)
fn fused_forward_backward(lanes: Lanes, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lane_index(lanes);
    let g = wid.x;
    if (g == 0u && t == 0u) {
        let betas = vec2<f32>(fp.beta1, fp.beta2);
        step_state = advance_step(step_state, betas, vec2<f32>(fp.one_minus_beta1, fp.one_minus_beta2));
    }
    var loss_sum = 0.0;
    for (var k = 0u; k < fp.blocks_per_group; k++) {
        let block = g * fp.blocks_per_group + k;
        if (block >= fp.blocks) { break; }
        let r0 = block * fp.block_rows;
        let nr = min(fp.block_rows, fp.rows - r0);
        load_block(t, r0, nr);
        for (var l = 0u; l < fp.layers; l++) { forward_layer(t, l, r0, nr); }
        loss_sum += loss_and_delta(lanes, t, r0, nr);
        for (var l = fp.layers; l > 0u; l--) { backward_layer(t, g, l - 1u, r0, nr, k == 0u); }
    }
    if (t == 0u) { work[fp.loss_off + g] = loss_sum; }
}
