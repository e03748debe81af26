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
// The host compiles this file once per staged tiling (`Tile` on the host), with the tiling's two constants put
// before it:
//   TILE   rows and columns of C one workgroup computes (32, 64 or 128)
//   TK     the step along K, values of op(A) and op(B) held in workgroup memory per step (16, 16 or 8)
// The register-blocked tilings without workgroup memory, `matmul_reg` at the end, take theirs as pipeline
// constants instead (and are compiled from the 64×64 tiling's module).
// `matmul`, the staged body, serves the 64×64 and 128×128 tilings: each of the SIDE × SIDE threads
// keeps an R × R block of C in registers (R = TILE / SIDE: 4 or 8), rows lid.y + SIDE·i and columns
// lid.x + SIDE·j, so the workgroup's loads and stores stay contiguous. `matmul_small`, the 32×32 tiling for
// small products, gives each thread a 2×2 block of neighbours instead, from row-major tiles: where launches
// dominate it costs a third less a launch than the staged body at TILE = 32 (lavapipe: about 66
// against 100 µs for a 1×2×2 product). Every output element sums its products in the order of K, whatever
// the tiling, so all tilings give the same bits.
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
// Vectorised tile loads, set by the host where the operand's contiguous direction, its stride and its
// offset are multiples of 4: four consecutive values of op(A) along K or M, of op(B) along N or K.
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

const SIDE: u32 = 16u;              // threads per side of the workgroup
const THREADS: u32 = SIDE * SIDE;
const R: u32 = TILE / SIDE;         // rows (and columns) of C each thread holds

// The tiles of one K step, both K-major: (TK, TILE) of op(A) and (TK, TILE) of op(B).
var<workgroup> tile_ka: array<f32, TILE * TK>;
var<workgroup> tile_kb: array<f32, TILE * TK>;

// tile_ka = op(A)[row0 .., k0 ..] as (TK, TILE). With A_VEC_K a thread loads one vec4 along K, with A_VEC_M
// one along M (TILE·TK is 4·THREADS for the tilings this body serves: one vector a thread); a vector that
// would cross the matrix's edge is loaded value by value.
fn fill_tile_a(tid: u32, row0: u32, k0: u32) {
    if ((p.flags & A_VEC_K) != 0u) {
        if (tid < TILE * TK / 4u) {
            let q = tid;
            let r = q / (TK / 4u);
            let kq = (q % (TK / 4u)) * 4u;
            let gr = row0 + r;
            let gk = k0 + kq;
            if (gr < p.m && gk + 3u < p.k) {
                let v = a[(p.a_off + gr * p.a_rs + gk) >> 2u];
                for (var i = 0u; i < 4u; i++) { tile_ka[(kq + i) * TILE + r] = v[i]; }
            } else {
                for (var i = 0u; i < 4u; i++) { tile_ka[(kq + i) * TILE + r] = load_a(gr, gk + i); }
            }
        }
    } else if ((p.flags & A_VEC_M) != 0u) {
        if (tid < TILE * TK / 4u) {
            let q = tid;
            let k = q / (TILE / 4u);
            let mq = (q % (TILE / 4u)) * 4u;
            let gm = row0 + mq;
            let gk = k0 + k;
            if (gm + 3u < p.m && gk < p.k) {
                let v = a[(p.a_off + gm + gk * p.a_cs) >> 2u];
                for (var i = 0u; i < 4u; i++) { tile_ka[k * TILE + mq + i] = v[i]; }
            } else {
                for (var i = 0u; i < 4u; i++) { tile_ka[k * TILE + mq + i] = load_a(gm + i, gk); }
            }
        }
    } else {
        for (var e = tid; e < TILE * TK; e += THREADS) {
            let r = e / TK;
            let k = e % TK;
            tile_ka[k * TILE + r] = load_a(row0 + r, k0 + k);
        }
    }
}

// tile_kb = op(B)[k0 .., col0 ..] as (TK, TILE): with B_VEC_N one vec4 along N a thread, with B_VEC_K one
// along K.
fn fill_tile_b(tid: u32, k0: u32, col0: u32) {
    if ((p.flags & B_VEC_N) != 0u) {
        if (tid < TILE * TK / 4u) {
            let q = tid;
            let k = q / (TILE / 4u);
            let nq = (q % (TILE / 4u)) * 4u;
            let gk = k0 + k;
            let gn = col0 + nq;
            if (gk < p.k && gn + 3u < p.n) {
                let v = b[(p.b_off + gk * p.b_rs + gn) >> 2u];
                for (var i = 0u; i < 4u; i++) { tile_kb[k * TILE + nq + i] = v[i]; }
            } else {
                for (var i = 0u; i < 4u; i++) { tile_kb[k * TILE + nq + i] = load_b(gk, gn + i); }
            }
        }
    } else if ((p.flags & B_VEC_K) != 0u) {
        if (tid < TILE * TK / 4u) {
            let q = tid;
            let n = q / (TK / 4u);
            let kq = (q % (TK / 4u)) * 4u;
            let gk = k0 + kq;
            let gn = col0 + n;
            if (gk + 3u < p.k && gn < p.n) {
                let v = b[(p.b_off + gk + gn * p.b_cs) >> 2u];
                for (var i = 0u; i < 4u; i++) { tile_kb[(kq + i) * TILE + n] = v[i]; }
            } else {
                for (var i = 0u; i < 4u; i++) { tile_kb[(kq + i) * TILE + n] = load_b(gk + i, gn); }
            }
        }
    } else {
        for (var e = tid; e < TK * TILE; e += THREADS) { tile_kb[e] = load_b(k0 + e / TILE, col0 + e % TILE); }
    }
}

// A workgroup computes the TILE × TILE block of C at (wid.y, wid.x), each thread its R × R registers,
// stepping K by TK: R² multiply-adds per 2R values read from workgroup memory.
@compute @workgroup_size(SIDE, SIDE, 1)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let tid = lid.y * SIDE + lid.x;
    var acc: array<f32, R * R>;
    for (var i = 0u; i < R * R; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        fill_tile_a(tid, row0, k0);
        fill_tile_b(tid, k0, col0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var ra: array<f32, R>;
            var rb: array<f32, R>;
            for (var i = 0u; i < R; i++) {
                ra[i] = tile_ka[kk * TILE + lid.y + SIDE * i];
                rb[i] = tile_kb[kk * TILE + lid.x + SIDE * i];
            }
            for (var i = 0u; i < R; i++) {
                for (var j = 0u; j < R; j++) {
                    acc[i * R + j] = fma(ra[i], rb[j], acc[i * R + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < R; i++) {
        for (var j = 0u; j < R; j++) {
            store(row0 + lid.y + SIDE * i, col0 + lid.x + SIDE * j, acc[i * R + j]);
        }
    }
}

// matmul_small: a workgroup of SIDE × SIDE threads computes a SMALL_TILE × SMALL_TILE tile of C from
// row-major tiles of op(A) (SMALL_TILE, SMALL_TK) and op(B) (SMALL_TK, SMALL_TILE), each thread a 2×2 block
// of neighbours (rows 2·lid.y, 2·lid.y + 1; columns 2·lid.x, 2·lid.x + 1), stepping K by SMALL_TK. Its
// loads are scalar (the host sets no vector-load flags for it).
const SMALL_TILE: u32 = 2u * SIDE;
const SMALL_TK: u32 = 16u;

var<workgroup> tile_a: array<f32, SMALL_TILE * SMALL_TK>; // (SMALL_TILE, SMALL_TK)
var<workgroup> tile_b: array<f32, SMALL_TK * SMALL_TILE>; // (SMALL_TK, SMALL_TILE)

@compute @workgroup_size(SIDE, SIDE, 1)
fn matmul_small(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row0 = wid.y * SMALL_TILE;
    let col0 = wid.x * SMALL_TILE;
    let tid = lid.y * SIDE + lid.x;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);

    for (var k0 = 0u; k0 < p.k; k0 += SMALL_TK) {
        for (var e = tid; e < SMALL_TILE * SMALL_TK; e += THREADS) {
            tile_a[e] = load_a(row0 + e / SMALL_TK, k0 + e % SMALL_TK);
        }
        for (var e = tid; e < SMALL_TK * SMALL_TILE; e += THREADS) {
            tile_b[e] = load_b(k0 + e / SMALL_TILE, col0 + e % SMALL_TILE);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < SMALL_TK; kk++) {
            let a0 = tile_a[(lid.y * 2u) * SMALL_TK + kk];
            let a1 = tile_a[(lid.y * 2u + 1u) * SMALL_TK + kk];
            let b0 = tile_b[kk * SMALL_TILE + lid.x * 2u];
            let b1 = tile_b[kk * SMALL_TILE + lid.x * 2u + 1u];
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

// matmul_reg: no workgroup memory and no barrier. A workgroup of 64 invocations, REG_WIDTH of them along N, and
// each keeps a 16×4 block of C in sixteen vec4 registers, steps K by 4 and reads op(A) and op(B) straight from
// the storage buffers, a 4×4 block of each a step. On an adapter that runs invocations as the SIMD lanes of a CPU
// (lavapipe) every memory access costs an order of magnitude more than an fma and both sides of every branch
// run, so a tile staged in workgroup memory only adds accesses; there these tilings are several times faster.
// Pipeline constants fix the workgroup's shape and how each operand is read (`Kernel::overrides`), so the loop
// has no branch. Rows and columns past C's edges are clamped to its last ones instead of tested (their sums are
// never stored); the K remainder (K mod 4) is a loop of its own. Whatever indexes the accumulators is written
// out: a loop over them that the compiler does not unroll puts them in memory (on lavapipe, 2x slower).
override A_LOAD: u32 = LOAD_ROWS;
override B_LOAD: u32 = LOAD_ROWS;
override REG_WIDTH: u32 = 64u;
// How an operand is read (`Load` on the host): four consecutive values of a row (its columns contiguous, its
// offset and row stride multiples of 4), of a column (the transposed case), or value by value.
const LOAD_ROWS: u32 = 0u;
const LOAD_COLUMNS: u32 = 1u;
const LOAD_VALUES: u32 = 2u;

fn a_at(e: u32) -> f32 { return a[e >> 2u][e & 3u]; }
fn b_at(e: u32) -> f32 { return b[e >> 2u][e & 3u]; }

// Where rows r .. r+3 of op(A) start, rows past the matrix clamped (r is a multiple of 4): vec4 indices of the
// rows for LOAD_ROWS, the element of the 4-row vector for LOAD_COLUMNS (in x), elements for LOAD_VALUES.
fn a_rows(r: u32) -> vec4<u32> {
    let last = p.m - 1u;
    if (A_LOAD == LOAD_COLUMNS) { return vec4<u32>(p.a_off + min(r, last & ~3u)); }
    let e = p.a_off + min(vec4<u32>(r, r + 1u, r + 2u, r + 3u), vec4<u32>(last)) * p.a_rs;
    if (A_LOAD == LOAD_ROWS) { return e >> vec4<u32>(2u); }
    return e;
}

// op(A) at the four rows of `at` (from a_rows) and k .. k+3: column i of the result is row i.
fn a_block(at: vec4<u32>, k: u32) -> mat4x4<f32> {
    if (A_LOAD == LOAD_ROWS) {
        let q = k >> 2u;
        return mat4x4<f32>(a[at.x + q], a[at.y + q], a[at.z + q], a[at.w + q]);
    }
    let cs = p.a_cs;
    if (A_LOAD == LOAD_COLUMNS) {
        let e = at.x + k * cs;
        return transpose(mat4x4<f32>(a[e >> 2u], a[(e + cs) >> 2u], a[(e + 2u * cs) >> 2u], a[(e + 3u * cs) >> 2u]));
    }
    let e = at + vec4<u32>(k * cs);
    return mat4x4<f32>(vec4<f32>(a_at(e.x), a_at(e.x + cs), a_at(e.x + 2u * cs), a_at(e.x + 3u * cs)),
                       vec4<f32>(a_at(e.y), a_at(e.y + cs), a_at(e.y + 2u * cs), a_at(e.y + 3u * cs)),
                       vec4<f32>(a_at(e.z), a_at(e.z + cs), a_at(e.z + 2u * cs), a_at(e.z + 3u * cs)),
                       vec4<f32>(a_at(e.w), a_at(e.w + cs), a_at(e.w + 2u * cs), a_at(e.w + 3u * cs)));
}

// Where columns c .. c+3 of op(B) start, columns past the matrix clamped (c is a multiple of 4): the element of
// the 4-column vector for LOAD_ROWS (in x), elements otherwise.
fn b_columns(c: u32) -> vec4<u32> {
    let last = p.n - 1u;
    if (B_LOAD == LOAD_ROWS) { return vec4<u32>(p.b_off + min(c, last & ~3u)); }
    return p.b_off + min(vec4<u32>(c, c + 1u, c + 2u, c + 3u), vec4<u32>(last)) * p.b_cs;
}

// op(B) at k .. k+3 and the four columns of `at` (from b_columns): column kk of the result is row k + kk.
fn b_block(at: vec4<u32>, k: u32) -> mat4x4<f32> {
    let rs = p.b_rs;
    if (B_LOAD == LOAD_ROWS) {
        let e = at.x + k * rs;
        return mat4x4<f32>(b[e >> 2u], b[(e + rs) >> 2u], b[(e + 2u * rs) >> 2u], b[(e + 3u * rs) >> 2u]);
    }
    if (B_LOAD == LOAD_COLUMNS) {
        return transpose(mat4x4<f32>(b[(at.x + k) >> 2u], b[(at.y + k) >> 2u], b[(at.z + k) >> 2u],
                                     b[(at.w + k) >> 2u]));
    }
    let e = at + vec4<u32>(k * rs);
    return mat4x4<f32>(vec4<f32>(b_at(e.x), b_at(e.y), b_at(e.z), b_at(e.w)),
                       vec4<f32>(b_at(e.x + rs), b_at(e.y + rs), b_at(e.z + rs), b_at(e.w + rs)),
                       vec4<f32>(b_at(e.x + 2u * rs), b_at(e.y + 2u * rs), b_at(e.z + 2u * rs), b_at(e.w + 2u * rs)),
                       vec4<f32>(b_at(e.x + 3u * rs), b_at(e.y + 3u * rs), b_at(e.z + 3u * rs), b_at(e.w + 3u * rs)));
}

// One row of C advanced by four steps of K, one fma at a time in the order of K as every tiling does:
// c + a.x·b[0], then + a.y·b[1], + a.z·b[2], + a.w·b[3].
fn fma4(av: vec4<f32>, bk: mat4x4<f32>, c: vec4<f32>) -> vec4<f32> {
    let c1 = fma(vec4<f32>(av.x), bk[0], c);
    let c2 = fma(vec4<f32>(av.y), bk[1], c1);
    let c3 = fma(vec4<f32>(av.z), bk[2], c2);
    return fma(vec4<f32>(av.w), bk[3], c3);
}

// One step of K in the remainder: row r of op(A) at k times `bk`, added to c.
fn fma1(r: u32, k: u32, bk: vec4<f32>, c: vec4<f32>) -> vec4<f32> {
    return fma(vec4<f32>(load_a(min(r, p.m - 1u), k)), bk, c);
}

fn store4(r: u32, c: u32, v: vec4<f32>) {
    store(r, c, v.x);
    store(r, c + 1u, v.y);
    store(r, c + 2u, v.z);
    store(r, c + 3u, v.w);
}

@compute @workgroup_size(REG_WIDTH, 64u / REG_WIDTH, 1)
fn matmul_reg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = (wid.y * (64u / REG_WIDTH) + lid.y) * 16u;
    let c = (wid.x * REG_WIDTH + lid.x) * 4u;
    let ar0 = a_rows(r);
    let ar1 = a_rows(r + 4u);
    let ar2 = a_rows(r + 8u);
    let ar3 = a_rows(r + 12u);
    let bc = b_columns(c);
    var c0 = vec4<f32>(0.0);
    var c1 = c0; var c2 = c0; var c3 = c0; var c4 = c0; var c5 = c0; var c6 = c0; var c7 = c0;
    var c8 = c0; var c9 = c0; var c10 = c0; var c11 = c0; var c12 = c0; var c13 = c0; var c14 = c0; var c15 = c0;
    let k4 = p.k & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        let bk = b_block(bc, k);
        let a0 = a_block(ar0, k);
        c0 = fma4(a0[0], bk, c0); c1 = fma4(a0[1], bk, c1); c2 = fma4(a0[2], bk, c2); c3 = fma4(a0[3], bk, c3);
        let a1 = a_block(ar1, k);
        c4 = fma4(a1[0], bk, c4); c5 = fma4(a1[1], bk, c5); c6 = fma4(a1[2], bk, c6); c7 = fma4(a1[3], bk, c7);
        let a2 = a_block(ar2, k);
        c8 = fma4(a2[0], bk, c8); c9 = fma4(a2[1], bk, c9); c10 = fma4(a2[2], bk, c10); c11 = fma4(a2[3], bk, c11);
        let a3 = a_block(ar3, k);
        c12 = fma4(a3[0], bk, c12); c13 = fma4(a3[1], bk, c13); c14 = fma4(a3[2], bk, c14);
        c15 = fma4(a3[3], bk, c15);
    }
    for (var k = k4; k < p.k; k++) {
        let last = p.n - 1u;
        let bk = vec4<f32>(load_b(k, min(c, last)), load_b(k, min(c + 1u, last)), load_b(k, min(c + 2u, last)),
                           load_b(k, min(c + 3u, last)));
        c0 = fma1(r, k, bk, c0); c1 = fma1(r + 1u, k, bk, c1); c2 = fma1(r + 2u, k, bk, c2);
        c3 = fma1(r + 3u, k, bk, c3); c4 = fma1(r + 4u, k, bk, c4); c5 = fma1(r + 5u, k, bk, c5);
        c6 = fma1(r + 6u, k, bk, c6); c7 = fma1(r + 7u, k, bk, c7); c8 = fma1(r + 8u, k, bk, c8);
        c9 = fma1(r + 9u, k, bk, c9); c10 = fma1(r + 10u, k, bk, c10); c11 = fma1(r + 11u, k, bk, c11);
        c12 = fma1(r + 12u, k, bk, c12); c13 = fma1(r + 13u, k, bk, c13); c14 = fma1(r + 14u, k, bk, c14);
        c15 = fma1(r + 15u, k, bk, c15);
    }
    store4(r, c, c0); store4(r + 1u, c, c1); store4(r + 2u, c, c2); store4(r + 3u, c, c3);
    store4(r + 4u, c, c4); store4(r + 5u, c, c5); store4(r + 6u, c, c6); store4(r + 7u, c, c7);
    store4(r + 8u, c, c8); store4(r + 9u, c, c9); store4(r + 10u, c, c10); store4(r + 11u, c, c11);
    store4(r + 12u, c, c12); store4(r + 13u, c, c13); store4(r + 14u, c, c14); store4(r + 15u, c, c15);
}
