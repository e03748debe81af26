//! The host's twin of every struct a kernel binds: `#[repr(C)]` and `bytemuck::Pod`, field for field the
//! WGSL struct of the same name. A test reads each kernel's bindings from its module with naga and checks
//! them, and these structs' sizes, against what the host binds (`Kernel::bindings`).

use bytemuck::{Pod, Zeroable};

pub use crate::optim::StepState;

/// A host struct whose layout is that of the WGSL struct `WGSL_NAME`.
pub trait ShaderStruct: Pod {
    const WGSL_NAME: &'static str;
}

/// Uniform of `matmul` (`linear.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// The epilogue's flags and the vector-load flags (`ops::Epilogue::flags`, `ops::vector_loads`).
    pub flags: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub bias_off: u32,
    pub out_off: u32,
    pub pre_off: u32,
    pub act: u32,
    pub ldc: u32,
    /// The product is multiplied by this before the rest of the epilogue (1, or −lr for a fused SGD update).
    pub scale: f32,
}

/// Uniform of the loss kernels (`loss.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct LossParams {
    pub n: u32,
    pub rows: u32,
    pub cols: u32,
    /// `loss_grad`: the output activation whose derivative multiplies the gradient (identity: none).
    pub act: u32,
    pub scale: f32,
    /// The losses also add `loss · acc_weight` to `LossTotals::sum` (0: not).
    pub acc_weight: f32,
    /// 1: a later piece of a batch, whose loss adds to `LossTotals::last`.
    pub accumulate: u32,
    pub _pad: u32,
}

/// The loss of the last batch and the running sum of `loss · B` (`loss.wgsl`), written by the loss kernels
/// and read by `optim_prepare` (divergence) and by the host once an epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct LossTotals {
    pub last: f32,
    pub sum: f32,
}

/// Uniform of `bias_grad` (`grad.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct GradParams {
    pub rows: u32,
    pub cols: u32,
    pub out_off: u32,
    pub accumulate: u32,
    /// The column sums are multiplied by this (1, or −lr for a fused SGD update of the bias).
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// Uniform of `gather_rows` (`data.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct GatherParams {
    pub rows: u32,
    pub cols: u32,
    pub off: u32,
    pub lo: u32,
    pub hi: u32,
    pub _pad: [u32; 3],
}

/// Uniform of the optimizer kernels (`optim.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct OptimParams {
    /// Parameters in this piece.
    pub n: u32,
    /// This piece's index (its slot in the gradient norm's partial sums).
    pub piece: u32,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// Clip the gradient's norm to this (0: no clipping).
    pub max_grad_norm: f32,
    /// How many pieces the parameters are updated in.
    pub pieces: u32,
}

/// Layers in the fused step's table (`MAX_LAYERS` in `fused.wgsl`): the most the fused step takes.
pub const FUSED_LAYERS: usize = 64;

/// One layer of the fused step's table (`FusedLayer` in `fused.wgsl`): its shape, activation and W's offset
/// in the flat parameters (b follows W), the offsets of its input and output in the kernel's workgroup
/// memory, and of its Z in the trace (then A and δ, B·O values each).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct FusedLayer {
    pub inputs: u32,
    pub outputs: u32,
    pub activation: u32,
    pub w_off: u32,
    pub act_in: u32,
    pub act_out: u32,
    pub trace_off: u32,
    pub _pad: u32,
}

/// Uniform of `fused_forward_backward` (`fused.wgsl`): the batch and how it is cut, the loss, the betas
/// that advance the step state, and the layer table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct FusedParams {
    /// B, the batch's rows.
    pub rows: u32,
    pub layers: u32,
    pub block_rows: u32,
    pub blocks: u32,
    pub blocks_per_group: u32,
    /// P, the parameters (the stride of the groups' partial gradients).
    pub params: u32,
    /// The batch's first entry in the row order.
    pub order_off: u32,
    /// 0: MSE, 1: softmax cross-entropy.
    pub loss: u32,
    /// G·P: where the groups' loss sums start in the work buffer.
    pub loss_off: u32,
    /// 1: also write Z, A and δ of every layer to the trace.
    pub trace: u32,
    /// δ_L's scale: 2/(B·O) for MSE, 1/B for cross-entropy.
    pub grad_scale: f32,
    pub _pad: u32,
    /// Adam's β1, β2, 1 − β1 and 1 − β2 (0 for the other rules), as in `OptimParams`.
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// The layers, then unused entries up to `FUSED_LAYERS`.
    pub table: [FusedLayer; FUSED_LAYERS],
}

/// Uniform of `fused_update`, `fused_reduce` and `fused_apply` (`fused_update.wgsl`): the optimizer's
/// uniform over all P parameters in one piece, then the fused step's fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct FusedUpdateParams {
    pub optim: OptimParams,
    /// 0: SGD, 1: momentum, 2: Adam.
    pub rule: u32,
    /// G, the groups whose partials are summed.
    pub groups: u32,
    pub loss_off: u32,
    /// Where the per-workgroup Σ g² of `fused_reduce` go in the work buffer, and how many there are.
    pub norm_off: u32,
    pub norm_parts: u32,
    /// The batch loss is the groups' loss sums times this: 1/(B·O) for MSE, 1/B for cross-entropy.
    pub loss_scale: f32,
    /// B: loss·B is added to `LossTotals::sum`.
    pub acc_weight: f32,
    pub _pad: u32,
}

macro_rules! twins {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl ShaderStruct for $t { const WGSL_NAME: &'static str = $name; })*
    };
}

twins! {
    MatmulParams => "MatmulParams",
    LossParams => "LossParams",
    LossTotals => "LossTotals",
    GradParams => "GradParams",
    GatherParams => "GatherParams",
    OptimParams => "OptimParams",
    StepState => "StepState",
    FusedParams => "FusedParams",
    FusedUpdateParams => "FusedUpdateParams",
}
