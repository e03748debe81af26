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
}
