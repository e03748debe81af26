//! Every WGSL file, compiled into the binary and looked up by an enum; pipelines built once per device.

/// The code every shader file begins with (activations, indexing helpers).
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// One WGSL file: an op family with its forward and backward entry points side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFile {
    Linear,
    Loss,
    Grad,
    Optim,
    Data,
}

impl ShaderFile {
    pub const ALL: [ShaderFile; 5] = [Self::Linear, Self::Loss, Self::Grad, Self::Optim, Self::Data];

    /// The file's name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Linear => "linear.wgsl",
            Self::Loss => "loss.wgsl",
            Self::Grad => "grad.wgsl",
            Self::Optim => "optim.wgsl",
            Self::Data => "data.wgsl",
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
        }
    }

    /// What is compiled: `common.wgsl` followed by the file.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }
}

/// How a kernel binds one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Uniform,
    Read,
    ReadWrite,
}

/// One compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    MatmulBig,
    MatmulHuge,
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
}

/// The binding layout of the elementwise kernels: parameters, two inputs, one output.
const ELEMENTWISE: &[Slot] = &[Slot::Uniform, Slot::Read, Slot::Read, Slot::ReadWrite];
/// The binding layout of the optimizers: parameters, gradients, θ, m, v updated in place, the step scalars,
/// the loss, and the gradient norm's partial sums.
const OPTIMIZER: &[Slot] = &[
    Slot::Uniform,
    Slot::Read,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::ReadWrite,
    Slot::Read,
    Slot::ReadWrite,
];

impl Kernel {
    pub const ALL: [Kernel; 15] = [
        Self::Matmul,
        Self::MatmulBig,
        Self::MatmulHuge,
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
    ];

    pub fn file(self) -> ShaderFile {
        match self {
            Self::Matmul | Self::MatmulBig | Self::MatmulHuge => ShaderFile::Linear,
            Self::LossGrad | Self::MseLoss | Self::XentLoss | Self::SoftmaxRows => ShaderFile::Loss,
            Self::BiasGrad => ShaderFile::Grad,
            Self::Sgd | Self::Momentum | Self::Adam | Self::OptimPrepare | Self::GradNorm | Self::GradNormFinish => {
                ShaderFile::Optim
            }
            Self::GatherRows => ShaderFile::Data,
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Self::Matmul => "matmul",
            Self::MatmulBig => "matmul_big",
            Self::MatmulHuge => "matmul_huge",
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
        }
    }

    /// The bindings of group 0, in binding order.
    pub fn slots(self) -> &'static [Slot] {
        match self {
            Self::Matmul | Self::MatmulBig | Self::MatmulHuge => {
                &[Slot::Uniform, Slot::Read, Slot::Read, Slot::Read, Slot::ReadWrite, Slot::ReadWrite]
            }
            Self::Sgd | Self::Momentum | Self::Adam | Self::OptimPrepare | Self::GradNorm | Self::GradNormFinish => {
                OPTIMIZER
            }
            _ => ELEMENTWISE,
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }
}

/// A compiled kernel and the layout its bind groups must follow.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel's pipeline, built once per device.
pub(crate) struct Pipelines {
    pipelines: Vec<Pipeline>,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device) -> Self {
        let modules: Vec<(ShaderFile, wgpu::ShaderModule)> = ShaderFile::ALL
            .iter()
            .map(|&f| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(f.file_name()),
                    source: wgpu::ShaderSource::Wgsl(f.source().into()),
                });
                (f, module)
            })
            .collect();
        let pipelines = Kernel::ALL
            .iter()
            .map(|&k| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = k
                    .slots()
                    .iter()
                    .enumerate()
                    .map(|(i, s)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: match s {
                                Slot::Uniform => wgpu::BufferBindingType::Uniform,
                                Slot::Read => wgpu::BufferBindingType::Storage { read_only: true },
                                Slot::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(k.entry_point()),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(k.entry_point()),
                    bind_group_layouts: &[Some(&layout)],
                    immediate_size: 0,
                });
                // Every kernel's file is in ShaderFile::ALL, so this finds its module.
                let module = &modules[ShaderFile::ALL.iter().position(|&f| f == k.file()).unwrap_or(0)].1;
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.entry_point()),
                    layout: Some(&pl),
                    module,
                    entry_point: Some(k.entry_point()),
                    compilation_options: Default::default(),
                    cache: None,
                });
                Pipeline { pipeline, layout }
            })
            .collect();
        Self { pipelines }
    }

    pub fn get(&self, k: Kernel) -> &Pipeline {
        &self.pipelines[k.index()]
    }
}
