// linear.wgsl: one tiled matrix product with strided operands serves all three products of a layer.
//
//   forward        Z = A_prev · W + b, A = f(Z)    A_prev (B, I), W (I, O)       → Z, A (B, O)
//   input grad     δ_prev = (δ · Wᵀ) ⊙ f'(Z_prev)   δ (B, O), Wᵀ read from W (I, O), Z_prev (B, I) → (B, I)
//   weight grad    dW = A_prevᵀ · δ                 A_prevᵀ read from (B, I), δ (B, O) → (I, O)
//                  (the sum over the batch of the outer products a_prev_b ⊗ δ_b)
//
// C (M, N) = op(A) (M, K) · op(B) (K, N): element (m, k) of op(A) is a[a_off + m*a_rs + k*a_cs] and element
// (k, n) of op(B) is b[b_off + k*b_rs + n*b_cs], so a transpose is only a swap of strides. C is written
// at out_off with row stride ldc (n, or wider when C is a block of columns of a larger matrix). Every load
// and store is bounds-checked, so any M, N, K >= 1 is valid.
//
// Where a weight matrix is larger than one storage binding, the host splits its rows into bindings that
// fit: forward, the depth K is split and the partial products are summed through the ACC flags; backward,
// each piece writes its own block of columns (input gradient) or rows (weight gradient). Where a batch is
// larger than a binding, its rows go through in pieces and the weight gradient sums them (ACC_OUT).

struct MatmulParams {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
    b_rs: u32, b_cs: u32, bias_off: u32, out_off: u32,
    pre_off: u32, act: u32, ldc: u32, scale: f32,
}

// flags
const ADD_BIAS: u32 = 1u;   // add bias[bias_off + n] to every row
const WRITE_PRE: u32 = 2u;  // also store the value before the activation into `pre`
const MUL_DERIV: u32 = 4u;  // backward: out = C ⊙ f'(pre), pre the previous layer's Z; fuses δ = dA ⊙ f'(Z)
const ACC_OUT: u32 = 8u;    // add the value already in `out` (a partial sum) before the bias
const ACC_PRE: u32 = 16u;   // add the value already in `pre` (a partial sum) before the bias
// Vectorised tile loads of matmul_big, set by the host where the operand's contiguous direction, its stride
// and its offset are multiples of 4: four consecutive values of op(A) along K or M, of op(B) along N or K.
const A_VEC_K: u32 = 32u;
const A_VEC_M: u32 = 64u;
const B_VEC_N: u32 = 128u;
const B_VEC_K: u32 = 256u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
// A and B are read as vec4: whole vectors where a tile load is aligned, single components elsewhere (the host
// binds them in multiples of 16 bytes).
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> pre: array<f32>;

// The epilogue of every tiling: the product scaled by `scale` (1, or −lr where plain SGD adds the weight
// gradient straight into W through ACC_OUT), partial sums, bias, pre-activation store, activation,
// bounds-checked.
fn store(r: u32, c: u32, acc: f32) {
    if (r < p.m && c < p.n) {
        let o = p.out_off + r * p.ldc + c;
        let q = p.pre_off + r * p.ldc + c;
        if ((p.flags & MUL_DERIV) != 0u) {
            out[o] = acc * activate_derivative(p.act, pre[q]);
            return;
        }
        var v = acc * p.scale;
        if ((p.flags & ACC_OUT) != 0u) { v += out[o]; }
        if ((p.flags & ACC_PRE) != 0u) { v += pre[q]; }
        if ((p.flags & ADD_BIAS) != 0u) { v += bias[p.bias_off + c]; }
        if ((p.flags & WRITE_PRE) != 0u) { pre[q] = v; }
        out[o] = activate(p.act, v);
    }
}

// op(A)[r][c] and op(B)[r][c], zero outside the matrix.
fn load_a(r: u32, c: u32) -> f32 {
    if (r < p.m && c < p.k) {
        let e = p.a_off + r * p.a_rs + c * p.a_cs;
        return a[e >> 2u][e & 3u];
    }
    return 0.0;
}
fn load_b(r: u32, c: u32) -> f32 {
    if (r < p.k && c < p.n) {
        let e = p.b_off + r * p.b_rs + c * p.b_cs;
        return b[e >> 2u][e & 3u];
    }
    return 0.0;
}

// matmul: a workgroup of 16x16 threads computes a 32x32 tile of C, each thread a 2x2 block, stepping K
// by 16. Best for small products, where more, smaller workgroups keep the device busy.
const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 16u;
const THREADS: u32 = 256u;

var<workgroup> tile_a: array<f32, 512>; // (TM, TK)
var<workgroup> tile_b: array<f32, 512>; // (TK, TN)

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let tid = lid.y * 16u + lid.x;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var e = tid; e < TM * TK; e += THREADS) { tile_a[e] = load_a(row0 + e / TK, k0 + e % TK); }
        for (var e = tid; e < TK * TN; e += THREADS) { tile_b[e] = load_b(k0 + e / TN, col0 + e % TN); }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a0 = tile_a[(lid.y * 2u) * TK + kk];
            let a1 = tile_a[(lid.y * 2u + 1u) * TK + kk];
            let b0 = tile_b[kk * TN + lid.x * 2u];
            let b1 = tile_b[kk * TN + lid.x * 2u + 1u];
            acc[0] = fma(a0, b0, acc[0]);
            acc[1] = fma(a0, b1, acc[1]);
            acc[2] = fma(a1, b0, acc[2]);
            acc[3] = fma(a1, b1, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        store(row0 + lid.y * 2u + i / 2u, col0 + lid.x * 2u + i % 2u, acc[i]);
    }
}

// The tiles of the two register-blocked tilings (matmul_big, matmul_huge), both K-major: (tk, tm) of op(A) and
// (tk, tn) of op(B), 1024 values each (64 × 16 or 128 × 8). Each entry point has its own copy.
var<workgroup> tile_ka: array<f32, 1024>;
var<workgroup> tile_kb: array<f32, 1024>;

// tile_ka = op(A)[row0 .., k0 ..] as (tk, tm), with tm · tk = 1024, so each of the 256 threads fills 4 values:
// with A_VEC_K one vec4 along K, with A_VEC_M one along M; a vector that would cross the matrix's edge is loaded
// value by value.
fn fill_tile_a(tid: u32, row0: u32, k0: u32, tm: u32, tk: u32) {
    if ((p.flags & A_VEC_K) != 0u) {
        let r = tid / (tk / 4u);
        let kq = (tid % (tk / 4u)) * 4u;
        let gr = row0 + r;
        let gk = k0 + kq;
        if (gr < p.m && gk + 3u < p.k) {
            let v = a[(p.a_off + gr * p.a_rs + gk) >> 2u];
            for (var i = 0u; i < 4u; i++) { tile_ka[(kq + i) * tm + r] = v[i]; }
        } else {
            for (var i = 0u; i < 4u; i++) { tile_ka[(kq + i) * tm + r] = load_a(gr, gk + i); }
        }
    } else if ((p.flags & A_VEC_M) != 0u) {
        let k = tid / (tm / 4u);
        let mq = (tid % (tm / 4u)) * 4u;
        let gm = row0 + mq;
        let gk = k0 + k;
        if (gm + 3u < p.m && gk < p.k) {
            let v = a[(p.a_off + gm + gk * p.a_cs) >> 2u];
            for (var i = 0u; i < 4u; i++) { tile_ka[k * tm + mq + i] = v[i]; }
        } else {
            for (var i = 0u; i < 4u; i++) { tile_ka[k * tm + mq + i] = load_a(gm + i, gk); }
        }
    } else {
        for (var e = tid; e < tm * tk; e += THREADS) {
            let r = e / tk;
            let k = e % tk;
            tile_ka[k * tm + r] = load_a(row0 + r, k0 + k);
        }
    }
}

// tile_kb = op(B)[k0 .., col0 ..] as (tk, tn): with B_VEC_N one vec4 along N per thread, with B_VEC_K one along K.
fn fill_tile_b(tid: u32, k0: u32, col0: u32, tn: u32, tk: u32) {
    if ((p.flags & B_VEC_N) != 0u) {
        let k = tid / (tn / 4u);
        let nq = (tid % (tn / 4u)) * 4u;
        let gk = k0 + k;
        let gn = col0 + nq;
        if (gk < p.k && gn + 3u < p.n) {
            let v = b[(p.b_off + gk * p.b_rs + gn) >> 2u];
            for (var i = 0u; i < 4u; i++) { tile_kb[k * tn + nq + i] = v[i]; }
        } else {
            for (var i = 0u; i < 4u; i++) { tile_kb[k * tn + nq + i] = load_b(gk, gn + i); }
        }
    } else if ((p.flags & B_VEC_K) != 0u) {
        let n = tid / (tk / 4u);
        let kq = (tid % (tk / 4u)) * 4u;
        let gk = k0 + kq;
        let gn = col0 + n;
        if (gk + 3u < p.k && gn < p.n) {
            let v = b[(p.b_off + gk + gn * p.b_cs) >> 2u];
            for (var i = 0u; i < 4u; i++) { tile_kb[(kq + i) * tn + n] = v[i]; }
        } else {
            for (var i = 0u; i < 4u; i++) { tile_kb[(kq + i) * tn + n] = load_b(gk + i, gn); }
        }
    } else {
        for (var e = tid; e < tk * tn; e += THREADS) { tile_kb[e] = load_b(k0 + e / tn, col0 + e % tn); }
    }
}

// matmul_big: a workgroup of 16x16 threads computes a 64x64 tile of C, each thread a 4x4 block held in
// registers (rows lid.y + 16i, columns lid.x + 16j, so the workgroup's loads and stores stay contiguous),
// stepping K by 16: four times the arithmetic per value loaded from workgroup memory of `matmul`.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

@compute @workgroup_size(16, 16, 1)
fn matmul_big(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        fill_tile_a(tid, row0, k0, BM, BK);
        fill_tile_b(tid, k0, col0, BN, BK);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ra: array<f32, 4>;
            var rb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ra[i] = tile_ka[kk * BM + lid.y + 16u * i];
                rb[i] = tile_kb[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(ra[i], rb[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(row0 + lid.y + 16u * i, col0 + lid.x + 16u * j, acc[i * 4u + j]);
        }
    }
}

// matmul_huge: a workgroup of 16x16 threads computes a 128x128 tile of C, each thread an 8x8 block in
// registers (rows lid.y + 16i, columns lid.x + 16j), stepping K by 8: twice the arithmetic per value read
// from workgroup memory of `matmul_big`, for devices with registers to spare (64 accumulators a thread).
const HM: u32 = 128u;
const HN: u32 = 128u;
const HK: u32 = 8u;

@compute @workgroup_size(16, 16, 1)
fn matmul_huge(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * HM;
    let col0 = wid.x * HN;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 64>;
    for (var i = 0u; i < 64u; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += HK) {
        fill_tile_a(tid, row0, k0, HM, HK);
        fill_tile_b(tid, k0, col0, HN, HK);
        workgroupBarrier();
        for (var kk = 0u; kk < HK; kk++) {
            var ra: array<f32, 8>;
            var rb: array<f32, 8>;
            for (var i = 0u; i < 8u; i++) {
                ra[i] = tile_ka[kk * HM + lid.y + 16u * i];
                rb[i] = tile_kb[kk * HN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < 8u; j++) {
                    acc[i * 8u + j] = fma(ra[i], rb[j], acc[i * 8u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        for (var j = 0u; j < 8u; j++) {
            store(row0 + lid.y + 16u * i, col0 + lid.x + 16u * j, acc[i * 8u + j]);
        }
    }
}
