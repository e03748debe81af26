//! Finding an adapter: the graphics APIs a request (or `WGPU_BACKEND`) names, checked against those this
//! build of wgpu reaches on this system; the adapters found, best first; and, where none fits, an error
//! that says what was searched and what there is instead. The only place that touches `wgpu::Instance`.

#[cfg(not(target_arch = "wasm32"))]
use crate::distributed::launch;
use crate::environment;
use crate::error::{Error, Result};
use crate::gpu::wait;

/// How to install a driver when no adapter is found; shown in every "no adapter" error.
pub const NO_ADAPTER_HINT: &str = "install a Vulkan, Metal or DX12 driver for your GPU; on Debian or Ubuntu without a GPU, \
`apt-get install mesa-vulkan-drivers` provides lavapipe, a Vulkan driver that runs on the CPU \
(scripts/test installs it); or use --backend cpu";

/// Which adapter to use. Empty fields mean "any".
#[derive(Clone, Debug, Default)]
pub struct AdapterRequest {
    /// Graphics APIs to consider. `None` honours `WGPU_BACKEND` (for example `vulkan`, `metal`, `dx12`, `gl`).
    pub backends: Option<wgpu::Backends>,
    /// A case-insensitive substring of the adapter's name. `None` honours `WGPU_ADAPTER_NAME`.
    pub name: Option<String>,
    /// Lowers the device's storage-binding limit below the adapter's (to test large-model handling on a
    /// small device); `None` uses the adapter's own limit.
    pub max_storage_binding: Option<u64>,
    /// Opens the device without subgroup operations even where the adapter has them, so the kernels sum
    /// through workgroup memory (to test and compare that fallback). `BACKPROP_NO_SUBGROUPS=1` does the same.
    pub no_subgroups: bool,
}

impl AdapterRequest {
    /// The name filter in force: the request's own, else `WGPU_ADAPTER_NAME` (unset or blank: none).
    pub fn name_filter(&self) -> Option<String> {
        self.name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).filter(|s| !s.trim().is_empty())
    }

    /// Whether the name filter in force is `WGPU_ADAPTER_NAME`'s (the request names none itself).
    pub fn name_from_env(&self) -> bool {
        self.name.is_none() && self.name_filter().is_some()
    }

    /// Whether subgroup operations are declined: by the request, by the switch `BACKPROP_NO_SUBGROUPS`
    /// (`environment::switch`), or on the web, where the browser's WGSL compiler wants an `enable subgroups;`
    /// directive that naga, which the native backends compile through, rejects (the page sums through
    /// workgroup memory).
    pub(crate) fn subgroups_declined(&self) -> Result<bool> {
        let asked = environment::switch("BACKPROP_NO_SUBGROUPS")?;
        Ok(cfg!(target_arch = "wasm32") || self.no_subgroups || asked)
    }
}

/// Parses a graphics API name as `--backend` and `WGPU_BACKEND` spell it.
pub fn parse_api(s: &str) -> Option<wgpu::Backends> {
    match s.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Some(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Some(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Some(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Some(wgpu::Backends::GL),
        _ => None,
    }
}

/// What one adapter is and the limits that matter for training.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    /// The graphics API's name, as `--backend` spells it.
    pub backend: String,
    /// The graphics API itself (what the choice of training step reads: `gpu::tune::PathKey`).
    pub api: wgpu::Backend,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub limits: wgpu::Limits,
    pub timestamp_queries: bool,
}

impl AdapterSummary {
    pub(crate) fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        Self {
            name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            api: info.backend,
            device_type: device_type_name(info.device_type).to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            limits: adapter.limits(),
            timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }

    /// The summary as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.limits;
        serde_json::json!({
            "name": self.name,
            "backend": self.backend,
            "device_type": self.device_type,
            "driver": self.driver,
            "driver_info": self.driver_info,
            "timestamp_queries": self.timestamp_queries,
            "limits": {
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
                "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            }
        })
    }
}

/// A short lower-case name for a device type.
pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete_gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated_gpu",
        wgpu::DeviceType::VirtualGpu => "virtual_gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
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

/// Every API `parse_api` knows, for messages.
const APIS: [(wgpu::Backends, &str); 4] = [
    (wgpu::Backends::VULKAN, "vulkan"),
    (wgpu::Backends::METAL, "metal"),
    (wgpu::Backends::DX12, "dx12"),
    (wgpu::Backends::GL, "gl"),
];

/// The names of the APIs in `b`, as `--backend` spells them ("vulkan, gl").
pub fn api_names(b: wgpu::Backends) -> String {
    APIS.iter().filter(|(api, _)| b.contains(*api)).map(|(_, name)| *name).collect::<Vec<_>>().join(", ")
}

/// The APIs of a comma-separated list as `WGPU_BACKEND` holds them ("vulkan,gl"); an error that names the
/// variable for a name that is not an API.
pub fn parse_api_list(list: &str) -> Result<wgpu::Backends> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).try_fold(wgpu::Backends::empty(), |all, name| {
        parse_api(name).map(|b| all | b).ok_or_else(|| {
            Error::Invalid(format!(
                "WGPU_BACKEND names '{name}', which is not a graphics API (it takes a comma-separated list of \
                 vulkan, metal, dx12, gl)"
            ))
        })
    })
}

/// The APIs a request searches: its own, else those `WGPU_BACKEND` names, else every one this build
/// reaches. Asking only for APIs this build of wgpu cannot reach on this system (DX12 on Linux, say) is an
/// error that says which it can.
fn searched(req: &AdapterRequest) -> Result<wgpu::Backends> {
    let reachable = wgpu::Instance::enabled_backend_features();
    let (asked, by) = match (req.backends, std::env::var("WGPU_BACKEND")) {
        (Some(b), _) => (b, "--backend "),
        (None, Ok(list)) if !list.trim().is_empty() => (parse_api_list(&list)?, "WGPU_BACKEND="),
        _ => return Ok(reachable),
    };
    if asked.intersects(reachable) || asked.is_empty() {
        return Ok(asked);
    }
    Err(Error::Invalid(format!(
        "{by}{} cannot be used on {}: this build of backprop reaches {} there (or use --backend cpu)",
        api_names(asked),
        std::env::consts::OS,
        api_names(reachable)
    )))
}

/// Every adapter wgpu finds through `backends` (the debug flags of the environment honoured). A future: the
/// browser answers asynchronously.
async fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc).enumerate_adapters(backends).await
}

/// Every adapter wgpu finds for the request's APIs, best first.
pub fn list_adapters(req: &AdapterRequest) -> Result<Vec<AdapterSummary>> {
    let found = wait::block_on("list_adapters", async { Ok(enumerate(searched(req)?).await) })?;
    let mut all: Vec<AdapterSummary> = found.iter().map(AdapterSummary::of).collect();
    all.sort_by_key(|a| preference_of_name(&a.device_type));
    Ok(all)
}

/// The best adapter that matches `req` (discrete, then integrated, virtual, CPU); where none does, an error
/// that names what was searched and what there is instead: the adapters that did not match the name, or
/// how to install a driver and the adapters found through other APIs.
pub(crate) async fn choose(req: &AdapterRequest) -> Result<wgpu::Adapter> {
    let (backends, filter) = (searched(req)?, req.name_filter());
    let all = enumerate(backends).await;
    let names = |adapters: &[wgpu::Adapter]| {
        adapters
            .iter()
            .map(|a| format!("{} ({})", a.get_info().name, a.get_info().backend.to_str()))
            .collect::<Vec<_>>()
    };
    let found = names(&all);
    let matches = |a: &wgpu::Adapter| {
        filter.as_ref().is_none_or(|f| a.get_info().name.to_lowercase().contains(&f.to_lowercase()))
    };
    let mut fits: Vec<wgpu::Adapter> = all.into_iter().filter(matches).collect();
    fits.sort_by_key(|a| preference(a.get_info().device_type));
    #[cfg(not(target_arch = "wasm32"))]
    if filter.is_none() {
        own_gpu_first(&mut fits);
    }
    if let Some(best) = fits.into_iter().next() {
        return Ok(best);
    }
    let from = if req.name_from_env() { " (WGPU_ADAPTER_NAME)" } else { "" };
    let mut what = filter.map(|f| format!(" whose name contains '{f}'{from}")).unwrap_or_default();
    let everywhere = wgpu::Instance::enabled_backend_features();
    if backends != everywhere {
        what.push_str(&format!(" through {}", api_names(backends)));
    }
    let elsewhere = if backends == everywhere { Vec::new() } else { names(&enumerate(everywhere - backends).await) };
    let hint = match (found.is_empty(), elsewhere.is_empty()) {
        (false, _) => format!("the adapters found are: {}", found.join(", ")),
        (true, false) => format!("{NO_ADAPTER_HINT}; through other APIs there are: {}", elsewhere.join(", ")),
        (true, true) => NO_ADAPTER_HINT.to_string(),
    };
    Err(Error::NoAdapter { filter: what, hint })
}

/// One of several ranks of a job on a node (`distributed::launch`) takes its own discrete GPU by default:
/// the node-local rank's, round robin where the ranks outnumber them. `adapters` are sorted best first; the
/// GPUs counted are those the first one's API lists (the same GPU may be listed again through another).
#[cfg(not(target_arch = "wasm32"))]
fn own_gpu_first(adapters: &mut [wgpu::Adapter]) {
    let api = adapters.first().map(|a| a.get_info().backend);
    let own = |a: &&wgpu::Adapter| {
        let info = a.get_info();
        info.device_type == wgpu::DeviceType::DiscreteGpu && Some(info.backend) == api
    };
    let discrete = adapters.iter().take_while(own).count();
    if let Some(i) = launch::node_gpu(discrete) {
        adapters[..discrete].rotate_left(i);
    }
}

fn preference_of_name(t: &str) -> u8 {
    match t {
        "discrete_gpu" => 0,
        "integrated_gpu" => 1,
        "virtual_gpu" => 2,
        "cpu" => 3,
        _ => 4,
    }
}
