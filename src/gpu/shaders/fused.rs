//! The fused step's kernels (`fused.wgsl`, `fused_update.wgsl`) as the host knows them: their bindings, the
//! workgroup's shape, and the workgroup memory a device's limits leave for a block of rows.

use super::{Bindings, Elem, F32_IN, F32_OUT, STEP_STATE, Slot, TOTALS, Twin};
use crate::gpu::structs::{FUSED_LAYERS, FusedParams, FusedUpdateParams};

/// Invocations in a workgroup of `fused_forward_backward` (`FUSED_WG` in `fused.wgsl`): the widest layer
/// the fused step takes (an invocation owns a column).
pub const FUSED_WORKGROUP: usize = 128;
/// Most rows in one block of the fused step (`MAX_BLOCK_ROWS` in `fused.wgsl`).
pub const MAX_BLOCK_ROWS: usize = 32;
/// Bytes of `fused_forward_backward`'s workgroup arrays besides `act`: the reduction's WG values and
/// MAX_BLOCK_ROWS row numbers (a test sums them from the module).
pub const FUSED_OTHER_WORKGROUP_BYTES: u32 = (256 + MAX_BLOCK_ROWS as u32) * 4;

/// f32 values of `fused_forward_backward`'s `act` array (`ACT_CAP`) on a device with `limits`: its
/// workgroup storage less the kernel's other workgroup arrays.
pub fn fused_act_capacity(limits: &wgpu::Limits) -> u32 {
    limits.max_compute_workgroup_storage_size.saturating_sub(FUSED_OTHER_WORKGROUP_BYTES) / 4
}

/// Most layers the fused step takes (its layer table's entries).
pub const MAX_FUSED_LAYERS: usize = FUSED_LAYERS;

// params, x, y, the row order → the groups' partial gradients and losses (work), step_state, the trace
pub(super) const FUSED_FORWARD_BACKWARD: Bindings = &[
    (0, Slot::Uniform(Twin::of::<FusedParams>())),
    (1, F32_IN),
    (2, F32_IN),
    (3, F32_IN),
    (4, Slot::read(Elem::U32)),
    (5, F32_OUT),
    (6, STEP_STATE),
    (7, F32_OUT),
];
const FUSED: Slot = Slot::Uniform(Twin::of::<FusedUpdateParams>());
// partials, grads, params, m, v, step_state, loss: what each of the three uses
pub(super) const FUSED_UPDATE: Bindings =
    &[(0, FUSED), (1, F32_OUT), (2, F32_OUT), (3, F32_OUT), (4, F32_OUT), (5, F32_OUT), (6, STEP_STATE), (7, TOTALS)];
pub(super) const FUSED_REDUCE: Bindings = &[(0, FUSED), (1, F32_OUT), (2, F32_OUT), (6, STEP_STATE), (7, TOTALS)];
pub(super) const FUSED_APPLY: Bindings =
    &[(0, FUSED), (1, F32_OUT), (2, F32_OUT), (3, F32_OUT), (4, F32_OUT), (5, F32_OUT), (6, STEP_STATE)];
