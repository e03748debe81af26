// data.wgsl: batches gathered on the GPU from a data set uploaded once.
//
//   gather_rows   out (B, C) = src[idx[off + r]] for r < B     src (N, C), idx (N) → out (B, C)
//
// The host writes only the row order (N u32 values) per group of steps; every batch of the group is
// gathered from it at its own offset. A data set larger than one storage binding is bound in pieces of
// rows [lo, hi), one dispatch each; a dispatch copies only the rows that fall in its piece.

struct GatherParams { rows: u32, cols: u32, off: u32, lo: u32, hi: u32, _pad0: u32, _pad1: u32, _pad2: u32, }

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= p.rows * p.cols) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    let row = idx[p.off + r];
    if (row >= p.lo && row < p.hi) { out[i] = src[(row - p.lo) * p.cols + c]; }
}
