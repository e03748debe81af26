//! Every kernel's pipeline, built once per device at its first use, so a model compiles only the kernels it
//! runs (the register-blocked tilings alone are 27 pipelines): one module per distinct source (a file's
//! kernels share it, each staged tiling has its own), the bind group layout from `Kernel::bindings`, and the
//! overridable constants the kernel and the device's limits set (`Kernel::overrides`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::gpu::shaders::{Kernel, Reductions, Slot};

/// A compiled kernel and the layout its bind groups must follow.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Every kernel's pipeline, built once per device at its first use.
pub(crate) struct Pipelines {
    device: wgpu::Device,
    /// Whether the kernels sum across a workgroup with subgroup operations.
    reductions: Reductions,
    /// One module per distinct source: a file's kernels share it, each staged tiling has its own.
    modules: Mutex<HashMap<String, wgpu::ShaderModule>>,
    pipelines: Vec<OnceLock<Pipeline>>,
}

impl Pipelines {
    /// Pipelines for `device`, compiled when first asked for with `reductions` (the subgroup ones only on a
    /// device with `Features::SUBGROUP`).
    pub fn new(device: &wgpu::Device, reductions: Reductions) -> Self {
        let pipelines = Kernel::ALL.iter().map(|_| OnceLock::new()).collect();
        Self { device: device.clone(), reductions, modules: Mutex::default(), pipelines }
    }

    pub fn get(&self, k: Kernel) -> &Pipeline {
        self.pipelines[k.index()].get_or_init(|| {
            // A panic while the lock was held left nothing half-made: the map holds whole modules.
            let mut modules = self.modules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let module = modules.entry(k.module_label()).or_insert_with(|| {
                self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&k.module_label()),
                    source: wgpu::ShaderSource::Wgsl(k.source(self.reductions).into()),
                })
            });
            Self::build(&self.device, k, module)
        })
    }

    fn build(device: &wgpu::Device, k: Kernel, module: &wgpu::ShaderModule) -> Pipeline {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = k
            .bindings()
            .iter()
            .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match slot {
                        Slot::Uniform(_) => wgpu::BufferBindingType::Uniform,
                        Slot::Array { write, .. } | Slot::Struct { write, .. } => {
                            wgpu::BufferBindingType::Storage { read_only: !write }
                        }
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
        let constants = k.overrides(&device.limits());
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry_point()),
            layout: Some(&pl),
            module,
            entry_point: Some(k.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
            cache: None,
        });
        Pipeline { pipeline, layout }
    }
}
