// reduce_subgroup.wgsl: the sum across a workgroup with subgroup operations, where the device has
// wgpu::Features::SUBGROUP. The same names as reduce_workgroup.wgsl (see there). wgpu 30 takes the subgroup
// built-ins without an `enable subgroups;` directive (naga rejects it) and checks them against the device's
// features.

struct Lanes {
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
}

// This invocation's index in its workgroup, numbered subgroup by subgroup (subgroup · size + lane), so the
// invocations of one subgroup are consecutive whatever the device's order.
fn lane_index(lanes: Lanes) -> u32 {
    return lanes.subgroup * lanes.size + lanes.lane;
}

var<workgroup> partial: array<f32, WG>;

// As in reduce_workgroup.wgsl: the sum of `value` over the invocations with the same index modulo `cols`,
// to every invocation. Within a subgroup, subgroupAdd (cols = 1) or an xor butterfly over the index bits
// at and above `cols` (partners are in the same column; a + b and b + a are the same bits, so every lane
// ends with the same sum); then each subgroup's column sums meet in workgroup memory and are added in
// subgroup order. Deterministic on one device. Every invocation must call it.
fn workgroup_sum(lanes: Lanes, value: f32, cols: u32, n: u32) -> f32 {
    let t = lane_index(lanes);
    var s = value;
    if (cols == 1u) {
        s = subgroupAdd(value);
    } else {
        for (var m = cols; m < lanes.size; m *= 2u) { s += subgroupShuffleXor(s, m); }
    }
    let w = min(cols, lanes.size);
    if (lanes.lane < w) { partial[lanes.subgroup * w + lanes.lane] = s; }
    workgroupBarrier();
    let step = max(cols, lanes.size);
    var total = 0.0;
    for (var j = 0u; j < (n + step - 1u) / step; j++) { total += partial[t % cols + j * cols]; }
    workgroupBarrier();
    return total;
}
