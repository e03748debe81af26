//! Every kernel's pipeline, built once per device: one module per distinct source (a file's kernels share
//! it, each tiling has its own), the bind group layout from `Kernel::bindings`, and the overridable
//! constants the device's limits set (`Kernel::overrides`).

use std::collections::HashMap;

use crate::gpu::shaders::{Kernel, Reductions, Slot};

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
    /// Every kernel compiled with `reductions` (the subgroup ones only on a device with `Features::SUBGROUP`).
    pub fn new(device: &wgpu::Device, reductions: Reductions) -> Self {
        // One module per distinct source: a file's kernels share it, each tiling has its own.
        let mut modules: HashMap<String, wgpu::ShaderModule> = HashMap::new();
        let pipelines = Kernel::ALL
            .iter()
            .map(|&k| {
                let module = modules.entry(k.module_label()).or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&k.module_label()),
                        source: wgpu::ShaderSource::Wgsl(k.source(reductions).into()),
                    })
                });
                Self::build(device, k, module)
            })
            .collect();
        Self { pipelines }
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

    pub fn get(&self, k: Kernel) -> &Pipeline {
        &self.pipelines[k.index()]
    }
}
