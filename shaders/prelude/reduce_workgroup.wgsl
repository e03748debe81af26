// reduce_workgroup.wgsl: the sum across a workgroup through workgroup memory, where the device has no
// subgroup operations. Prepended, after common.wgsl, to every shader file; reduce_subgroup.wgsl defines the
// same names with subgroup operations. A kernel that sums across its invocations takes `lanes: Lanes` among
// its arguments, uses `lane_index(lanes)` as its invocation index, and runs in a one-dimensional workgroup
// of at most WG invocations.

struct Lanes {
    @builtin(local_invocation_index) index: u32,
}

// This invocation's index in its workgroup, 0 .. n.
fn lane_index(lanes: Lanes) -> u32 {
    return lanes.index;
}

var<workgroup> partial: array<f32, WG>;

// The one reduction of every kernel that sums (the losses, the gradient norm, the bias gradient, the fused
// step's loss and norm): the sum of `value` over the invocations of a workgroup of n whose index has the same
// remainder modulo `cols` (a power of two dividing n): column c of the workgroup laid out as n / cols rows of
// `cols`; cols = 1 sums the whole workgroup. Every invocation gets its column's sum. A tree in a fixed order
// (index t adds t + s for s = n/2, n/4, ..., cols), so the same bits on every run. Every invocation must
// call it.
fn workgroup_sum(lanes: Lanes, value: f32, cols: u32, n: u32) -> f32 {
    let t = lane_index(lanes);
    partial[t] = value;
    workgroupBarrier();
    for (var s = n / 2u; s >= cols; s /= 2u) {
        if (t < s) { partial[t] += partial[t + s]; }
        workgroupBarrier();
    }
    let total = partial[t % cols];
    workgroupBarrier();
    return total;
}
