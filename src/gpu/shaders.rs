//! Every WGSL file, compiled into the binary and looked up by an enum; each kernel's bindings and
//! pipeline-overridable constants, declared once (a test checks them against the shaders with naga). The
//! pipelines are built from these once per device, each at its first use (`gpu::pipelines`).

mod fused;

pub use fused::{FUSED_OTHER_WORKGROUP_BYTES, FUSED_WORKGROUP, MAX_BLOCK_ROWS, MAX_FUSED_LAYERS, fused_act_capacity};

use crate::gpu::structs::{
    GatherParams, GradParams, LossParams, LossTotals, MatmulParams, OptimParams, ShaderStruct, StepState,
};
pub use crate::gpu::tiling::{Load, RegShape, Tile};
use fused::{FUSED_APPLY, FUSED_FORWARD_BACKWARD, FUSED_REDUCE, FUSED_UPDATE};

/// The code every shader file begins with (activations, indexing).
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// The optimizer's structs and update rules, shared by `optim.wgsl` and the fused step's files so that
/// both updates run one copy of them.
pub const OPTIM_RULES: &str = include_str!("../../shaders/prelude/optim_rules.wgsl");

/// How kernels sum across the invocations of a workgroup (`workgroup_sum` in `shaders/prelude/`): with
/// subgroup operations where the device has `wgpu::Features::SUBGROUP`, else through workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reductions {
    Workgroup,
    Subgroup,
}

impl Reductions {
    pub const ALL: [Reductions; 2] = [Self::Workgroup, Self::Subgroup];

    /// The prelude that defines `Lanes`, `lane_index` and `workgroup_sum` this way; it follows `COMMON`.
    pub fn prelude(self) -> &'static str {
        match self {
            Self::Workgroup => include_str!("../../shaders/prelude/reduce_workgroup.wgsl"),
            Self::Subgroup => include_str!("../../shaders/prelude/reduce_subgroup.wgsl"),
        }
    }
}

/// One WGSL file: an op family with its forward and backward entry points side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFile {
    Linear,
    Loss,
    Grad,
    Optim,
    Data,
    Fused,
    FusedUpdate,
}

impl ShaderFile {
    pub const ALL: [ShaderFile; 7] =
        [Self::Linear, Self::Loss, Self::Grad, Self::Optim, Self::Data, Self::Fused, Self::FusedUpdate];

    /// The file's name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Linear => "linear.wgsl",
            Self::Loss => "loss.wgsl",
            Self::Grad => "grad.wgsl",
            Self::Optim => "optim.wgsl",
            Self::Data => "data.wgsl",
            Self::Fused => "fused.wgsl",
            Self::FusedUpdate => "fused_update.wgsl",
        }
    }

    /// The file's own text.
    pub fn body(self) -> &'static str {
        match self {
            Self::Linear => include_str!("../../shaders/linear.wgsl"),
            Self::Loss => include_str!("../../shaders/loss.wgsl"),
            Self::Grad => include_str!("../../shaders/grad.wgsl"),
            Self::Optim => include_str!("../../shaders/optim.wgsl"),
            Self::Data => include_str!("../../shaders/data.wgsl"),
            Self::Fused => include_str!("../../shaders/fused.wgsl"),
            Self::FusedUpdate => include_str!("../../shaders/fused_update.wgsl"),
        }
    }

    /// The shared code this file uses beyond `common.wgsl` and the reductions: the optimizer's rules.
    pub fn prelude(self) -> &'static str {
        match self {
            Self::Optim | Self::Fused | Self::FusedUpdate => OPTIM_RULES,
            _ => "",
        }
    }

    /// What is compiled for a kernel of this file: `common.wgsl`, the reductions' prelude, the file's own
    /// prelude, then `constants` (a tiling's for `linear.wgsl`, see `Tile`), then the file.
    fn source_with(self, reductions: Reductions, constants: &str) -> String {
        format!("{COMMON}\n{}\n{}\n{constants}{}", reductions.prelude(), self.prelude(), self.body())
    }
}

/// A WGSL struct as the host knows it: its name and its size in bytes (that of its `ShaderStruct` twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Twin {
    pub name: &'static str,
    pub size: usize,
}

impl Twin {
    pub const fn of<T: ShaderStruct>() -> Self {
        Self { name: T::WGSL_NAME, size: std::mem::size_of::<T>() }
    }
}

/// The element type of a storage array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    U32,
    /// `vec4<f32>`: bound in whole 16-byte vectors (the matmul's operands).
    Vec4F32,
}

/// What a kernel binds at one binding of group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The kernel's uniform (binding 0 of every kernel).
    Uniform(Twin),
    /// A storage array, written or only read.
    Array { elem: Elem, write: bool },
    /// A storage struct, written or only read.
    Struct { twin: Twin, write: bool },
}

impl Slot {
    pub(super) const fn read(elem: Elem) -> Self {
        Self::Array { elem, write: false }
    }
    const fn write(elem: Elem) -> Self {
        Self::Array { elem, write: true }
    }
}

/// One compute entry point (the matrix product once per tiling, and per way of reading its operands for the
/// register-blocked ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A staged tiling's product (`Tile::Small`, `Big` or `Huge`; `Kernel::matmul` picks the kernel of a tiling).
    Matmul(Tile),
    /// `matmul_reg` in one workgroup shape, reading A and B as the two `Load`s say.
    MatmulReg(RegShape, Load, Load),
    LossGrad,
    MseLoss,
    XentLoss,
    SoftmaxRows,
    BiasGrad,
    Sgd,
    Momentum,
    Adam,
    OptimPrepare,
    GradNorm,
    GradNormFinish,
    GatherRows,
    FusedForwardBackward,
    FusedUpdate,
    FusedReduce,
    FusedApply,
}

/// A kernel's bindings: (binding number, what is bound there), binding 0 its uniform.
pub type Bindings = &'static [(u32, Slot)];

pub(super) const F32_IN: Slot = Slot::read(Elem::F32);
pub(super) const F32_OUT: Slot = Slot::write(Elem::F32);
const LOSS: Slot = Slot::Uniform(Twin::of::<LossParams>());
pub(super) const TOTALS: Slot = Slot::Struct { twin: Twin::of::<LossTotals>(), write: true };
const OPTIM: Slot = Slot::Uniform(Twin::of::<OptimParams>());
pub(super) const STEP_STATE: Slot = Slot::Struct { twin: Twin::of::<StepState>(), write: true };

// Each kernel's bindings, named as in its WGSL file.
const MATMUL: Bindings = &[
    (0, Slot::Uniform(Twin::of::<MatmulParams>())),
    (1, Slot::read(Elem::Vec4F32)), // a: op(A)
    (2, Slot::read(Elem::Vec4F32)), // b: op(B)
    (3, F32_IN),                    // bias
    (4, F32_OUT),                   // out
    (5, F32_OUT),                   // pre
];
const LOSS_GRAD: Bindings = &[(0, LOSS), (1, F32_IN), (2, F32_IN), (3, F32_OUT)]; // pred, expected → out
const LOSS_VALUE: Bindings = &[(0, LOSS), (1, F32_IN), (2, F32_IN), (3, TOTALS)]; // pred, expected → totals
const SOFTMAX_ROWS: Bindings = &[(0, LOSS), (1, F32_IN), (3, F32_OUT)]; // pred (Z) → out
const BIAS_GRAD: Bindings = &[(0, Slot::Uniform(Twin::of::<GradParams>())), (1, F32_IN), (2, F32_OUT)]; // delta → out
// grads, params (m, v) and step_state; the rules
const SGD: Bindings = &[(0, OPTIM), (1, F32_IN), (2, F32_OUT), (5, STEP_STATE)];
const MOMENTUM: Bindings = &[(0, OPTIM), (1, F32_IN), (2, F32_OUT), (3, F32_OUT), (5, STEP_STATE)];
const ADAM: Bindings = &[(0, OPTIM), (1, F32_IN), (2, F32_OUT), (3, F32_OUT), (4, F32_OUT), (5, STEP_STATE)];
const OPTIM_PREPARE: Bindings =
    &[(0, OPTIM), (5, STEP_STATE), (6, Slot::Struct { twin: Twin::of::<LossTotals>(), write: false })]; // loss
const GRAD_NORM: Bindings = &[(0, OPTIM), (1, F32_IN), (7, F32_OUT)]; // grads → partials
const GRAD_NORM_FINISH: Bindings = &[(0, OPTIM), (5, STEP_STATE), (7, F32_OUT)]; // partials → step_state.clip
const GATHER_ROWS: Bindings =
    &[(0, Slot::Uniform(Twin::of::<GatherParams>())), (1, F32_IN), (2, Slot::read(Elem::U32)), (3, F32_OUT)]; // src, idx → out

impl Kernel {
    /// Every kernel: the staged products, the others (the fused step's last), then the 27 register-blocked products (shape by shape,
    /// A's load, B's load), in the order of `index`.
    pub const ALL: [Kernel; 46] = {
        let listed = [
            Self::Matmul(Tile::Small),
            Self::Matmul(Tile::Big),
            Self::Matmul(Tile::Huge),
            Self::LossGrad,
            Self::MseLoss,
            Self::XentLoss,
            Self::SoftmaxRows,
            Self::BiasGrad,
            Self::Sgd,
            Self::Momentum,
            Self::Adam,
            Self::OptimPrepare,
            Self::GradNorm,
            Self::GradNormFinish,
            Self::GatherRows,
            Self::FusedForwardBackward,
            Self::FusedUpdate,
            Self::FusedReduce,
            Self::FusedApply,
        ];
        let mut all = [Self::LossGrad; 46];
        let mut i = 0;
        while i < 46 {
            all[i] = if i < Self::FIRST_REG {
                listed[i]
            } else {
                let r = i - Self::FIRST_REG;
                Self::MatmulReg(RegShape::ALL[r / 9], Load::ALL[r / 3 % 3], Load::ALL[r % 3])
            };
            i += 1;
        }
        all
    };
    /// Where the register-blocked products start in `ALL`.
    const FIRST_REG: usize = 19;

    /// The kernel's position in `ALL`.
    pub fn index(self) -> usize {
        match self {
            Self::Matmul(Tile::Small) => 0,
            Self::Matmul(Tile::Big) => 1,
            Self::Matmul(Tile::Huge) => 2,
            Self::Matmul(Tile::Reg(_)) => unreachable!("a register-blocked product is Kernel::MatmulReg"),
            Self::LossGrad => 3,
            Self::MseLoss => 4,
            Self::XentLoss => 5,
            Self::SoftmaxRows => 6,
            Self::BiasGrad => 7,
            Self::Sgd => 8,
            Self::Momentum => 9,
            Self::Adam => 10,
            Self::OptimPrepare => 11,
            Self::GradNorm => 12,
            Self::GradNormFinish => 13,
            Self::GatherRows => 14,
            Self::FusedForwardBackward => 15,
            Self::FusedUpdate => 16,
            Self::FusedReduce => 17,
            Self::FusedApply => 18,
            Self::MatmulReg(shape, a, b) => Self::FIRST_REG + shape.index() * 9 + a as usize * 3 + b as usize,
        }
    }

    pub fn file(self) -> ShaderFile {
        match self {
            Self::Matmul(_) | Self::MatmulReg(..) => ShaderFile::Linear,
            Self::LossGrad | Self::MseLoss | Self::XentLoss | Self::SoftmaxRows => ShaderFile::Loss,
            Self::BiasGrad => ShaderFile::Grad,
            Self::Sgd | Self::Momentum | Self::Adam | Self::OptimPrepare | Self::GradNorm | Self::GradNormFinish => {
                ShaderFile::Optim
            }
            Self::GatherRows => ShaderFile::Data,
            Self::FusedForwardBackward => ShaderFile::Fused,
            Self::FusedUpdate | Self::FusedReduce | Self::FusedApply => ShaderFile::FusedUpdate,
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Self::Matmul(Tile::Small) => "matmul_small",
            Self::Matmul(_) => "matmul",
            Self::MatmulReg(..) => "matmul_reg",
            Self::LossGrad => "loss_grad",
            Self::MseLoss => "mse_loss",
            Self::XentLoss => "xent_loss",
            Self::SoftmaxRows => "softmax_rows",
            Self::BiasGrad => "bias_grad",
            Self::Sgd => "sgd",
            Self::Momentum => "momentum",
            Self::Adam => "adam",
            Self::OptimPrepare => "optim_prepare",
            Self::GradNorm => "grad_norm",
            Self::GradNormFinish => "grad_norm_finish",
            Self::GatherRows => "gather_rows",
            Self::FusedForwardBackward => "fused_forward_backward",
            Self::FusedUpdate => "fused_update",
            Self::FusedReduce => "fused_reduce",
            Self::FusedApply => "fused_apply",
        }
    }

    /// Every binding of group 0 the entry point uses, in binding order, and what is bound there.
    pub fn bindings(self) -> Bindings {
        match self {
            Self::Matmul(_) | Self::MatmulReg(..) => MATMUL,
            Self::LossGrad => LOSS_GRAD,
            Self::MseLoss | Self::XentLoss => LOSS_VALUE,
            Self::SoftmaxRows => SOFTMAX_ROWS,
            Self::BiasGrad => BIAS_GRAD,
            Self::Sgd => SGD,
            Self::Momentum => MOMENTUM,
            Self::Adam => ADAM,
            Self::OptimPrepare => OPTIM_PREPARE,
            Self::GradNorm => GRAD_NORM,
            Self::GradNormFinish => GRAD_NORM_FINISH,
            Self::GatherRows => GATHER_ROWS,
            Self::FusedForwardBackward => FUSED_FORWARD_BACKWARD,
            Self::FusedUpdate => FUSED_UPDATE,
            Self::FusedReduce => FUSED_REDUCE,
            Self::FusedApply => FUSED_APPLY,
        }
    }

    /// The kernel that runs a product with `tile`, reading A and B as `a` and `b` say (only the
    /// register-blocked tilings have a kernel per way of reading).
    pub fn matmul(tile: Tile, a: Load, b: Load) -> Kernel {
        match tile {
            Tile::Reg(shape) => Self::MatmulReg(shape, a, b),
            staged => Self::Matmul(staged),
        }
    }

    /// The WGSL this kernel is compiled from on a device with `reductions`: `common.wgsl`, their prelude,
    /// the tiling's constants for a product, its file.
    pub fn source(self, reductions: Reductions) -> String {
        match self.module_tile() {
            Some(tile) => self.file().source_with(
                reductions,
                &format!(
                    "// {tile:?} tiling\nconst TILE: u32 = {}u;\nconst TK: u32 = {}u;\n",
                    tile.size(),
                    tile.k_step()
                ),
            ),
            None => self.file().source_with(reductions, ""),
        }
    }

    /// A name for the compiled module: the file, and the tiling for a product.
    pub fn module_label(self) -> String {
        match self.module_tile() {
            Some(tile) => format!("{} ({tile:?} tiling)", self.file().file_name()),
            None => self.file().file_name().to_string(),
        }
    }

    /// The staged tiling whose `linear.wgsl` module a product is compiled from: its own, or the 64×64 one for
    /// `matmul_reg` (which uses none of its constants).
    fn module_tile(self) -> Option<Tile> {
        match self {
            Self::Matmul(tile) => Some(tile),
            Self::MatmulReg(..) => Some(Tile::Big),
            _ => None,
        }
    }

    /// The kernel's pipeline-overridable constants on a device with `limits`: how `matmul_reg` reads its
    /// operands and its workgroup's shape; the f32 values of `fused_forward_backward`'s workgroup array
    /// (`ACT_CAP`).
    pub fn overrides(self, limits: &wgpu::Limits) -> Vec<(&'static str, f64)> {
        match self {
            Self::MatmulReg(shape, a, b) => vec![
                ("A_LOAD", f64::from(a as u32)),
                ("B_LOAD", f64::from(b as u32)),
                ("REG_WIDTH", shape.width() as f64),
            ],
            Self::FusedForwardBackward => vec![("ACT_CAP", fused_act_capacity(limits) as f64)],
            _ => Vec::new(),
        }
    }

    /// The kernel's uniform struct.
    pub fn uniform(self) -> Twin {
        match self.bindings().first() {
            Some((0, Slot::Uniform(twin))) => *twin,
            other => unreachable!("{self:?}: binding 0 is not a uniform ({other:?})"),
        }
    }
}
