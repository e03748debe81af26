//! Picks the wgpu adapter as `backprop` does (`src/gpu/context.rs`): the APIs of `WGPU_BACKEND` (all when
//! unset), the names containing `WGPU_ADAPTER_NAME`, then discrete, integrated, virtual, CPU; and opens
//! Burn's wgpu runtime on that same adapter, so both programs measure one device.

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};

/// The adapter chosen and the Burn device opened on it.
pub struct Chosen {
    /// As `backprop bench` names it: "name (api, device type)".
    pub label: String,
    pub device: Device,
}

fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete_gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated_gpu",
        wgpu::DeviceType::VirtualGpu => "virtual_gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Burn's name for a graphics API; `None` for one its wgpu runtime cannot pin.
fn burn_api(b: wgpu::Backend) -> Option<WgpuBackend> {
    match b {
        wgpu::Backend::Vulkan => Some(WgpuBackend::Vulkan),
        wgpu::Backend::Metal => Some(WgpuBackend::Metal),
        wgpu::Backend::Dx12 => Some(WgpuBackend::Dx12),
        wgpu::Backend::Gl => Some(WgpuBackend::Gl),
        _ => None,
    }
}

/// Burn selects an adapter by API, device type and index among the adapters of that type on that API, in
/// enumeration order; the CPU kind has no index (the first CPU adapter).
fn burn_kind(info: &wgpu::AdapterInfo, same_api: &[wgpu::AdapterInfo]) -> Result<DeviceKind, String> {
    let index = same_api
        .iter()
        .filter(|a| a.device_type == info.device_type)
        .position(|a| a.name == info.name && a.device == info.device && a.vendor == info.vendor)
        .ok_or_else(|| format!("adapter '{}' is not listed on its own API", info.name))?;
    Ok(match info.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(index),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(index),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(index),
        wgpu::DeviceType::Cpu if index == 0 => DeviceKind::Cpu,
        wgpu::DeviceType::Cpu => return Err(format!("Burn reaches only the first CPU adapter, not '{}'", info.name)),
        wgpu::DeviceType::Other => return Err(format!("Burn cannot select the adapter '{}' (type other)", info.name)),
    })
}

/// The adapters on `backends`, or on those of `WGPU_BACKEND` (all when unset) for `None`.
fn enumerate(backends: Option<wgpu::Backends>) -> Vec<wgpu::AdapterInfo> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    let apis = desc.backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(apis)).iter().map(wgpu::Adapter::get_info).collect()
}

/// The adapter `backprop` would pick, and Burn's autodiff device on it.
pub fn choose() -> Result<Chosen, String> {
    let filter = std::env::var("WGPU_ADAPTER_NAME").ok().filter(|s| !s.trim().is_empty());
    let all = enumerate(None);
    let names: Vec<String> = all.iter().map(|a| format!("{} ({})", a.name, a.backend.to_str())).collect();
    let mut candidates: Vec<&wgpu::AdapterInfo> = all
        .iter()
        .filter(|a| filter.as_ref().is_none_or(|f| a.name.to_lowercase().contains(&f.to_lowercase())))
        .collect();
    candidates.sort_by_key(|a| preference(a.device_type));
    let info = candidates.first().ok_or_else(|| format!("no wgpu adapter matches; found: [{}]", names.join(", ")))?;
    let api = burn_api(info.backend).ok_or_else(|| format!("Burn cannot open an adapter on {}", info.backend))?;
    let kind = burn_kind(info, &enumerate(Some(info.backend.into())))?;
    let device = Device::wgpu_options()
        .device_kind(kind)
        .graphics_api(api)
        .init()
        .map_err(|e| format!("Burn could not open '{}': {e}", info.name))?;
    let label = format!("{} ({}, {})", info.name, info.backend.to_str(), type_name(info.device_type));
    Ok(Chosen { label, device: device.autodiff() })
}
