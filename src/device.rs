//! Where to run, as the command line names it: `auto`, `cpu`, `gpu`, or a GPU through one graphics API,
//! and the adapter request each choice makes.

use crate::error::{Error, Result};
use crate::gpu::adapter::{AdapterRequest, parse_api};

/// Where the user asked to run: `auto`, `cpu`, `gpu` (any adapter), or a GPU through one graphics API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Cpu,
    Gpu,
    /// A GPU through one API (`vulkan`, `metal`, `dx12`, `gl`).
    Api(wgpu::Backends),
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => parse_api(other).map(Self::Api).ok_or_else(|| {
                Error::Invalid(format!("unknown backend '{s}' (expected auto, cpu, gpu, vulkan, metal, dx12 or gl)"))
            }),
        }
    }
}

impl BackendChoice {
    /// The adapter request for this choice, or `None` for the CPU.
    pub fn adapter_request(self, name: Option<String>) -> Option<AdapterRequest> {
        match self {
            Self::Cpu => None,
            Self::Auto | Self::Gpu => Some(AdapterRequest { name, ..Default::default() }),
            Self::Api(b) => Some(AdapterRequest { backends: Some(b), name, ..Default::default() }),
        }
    }
}
