//! The `Backend` trait that the CPU and the GPU implementations share, and the CPU implementation.

use ndarray::{Array2, ArrayView2};

use crate::cpu::{self, Trace};
use crate::error::Result;
use crate::model::{MlpSpec, Params};

/// A place where an MLP trains: the same calls on the CPU and on the GPU.
pub trait Backend {
    /// A one-line description, e.g. `cpu` or `gpu (NVIDIA H100, vulkan)`.
    fn name(&self) -> String;
    fn spec(&self) -> &MlpSpec;
    /// The current parameters (a read-back on the GPU).
    fn params(&mut self) -> Result<Params<f32>>;
    /// Replaces the parameters.
    fn set_params(&mut self, p: &Params<f32>) -> Result<()>;
    /// One SGD step on X (B, I_0), Y (B, O_L). Returns the batch loss (before the update) if asked for.
    fn step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
        want_loss: bool,
    ) -> Result<Option<f32>>;
    /// One SGD step that also returns every intermediate tensor of it.
    fn traced_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
    ) -> Result<Trace<f32>>;
    /// The network's output for X (B, I_0).
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>>;
}

/// The CPU backend: the f32 reference.
#[derive(Clone, Debug)]
pub struct CpuBackend {
    spec: MlpSpec,
    params: Params<f32>,
}

impl CpuBackend {
    pub fn new(spec: MlpSpec, params: Params<f32>) -> Result<Self> {
        params.check(&spec)?;
        Ok(Self { spec, params })
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }
    fn spec(&self) -> &MlpSpec {
        &self.spec
    }
    fn params(&mut self) -> Result<Params<f32>> {
        Ok(self.params.clone())
    }
    fn set_params(&mut self, p: &Params<f32>) -> Result<()> {
        p.check(&self.spec)?;
        self.params = p.clone();
        Ok(())
    }
    fn step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
        want_loss: bool,
    ) -> Result<Option<f32>> {
        let trace = cpu::sgd_step(&self.spec, &mut self.params, x, y, lr)?;
        Ok(want_loss.then_some(trace.loss))
    }
    fn traced_step(
        &mut self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        lr: f32,
    ) -> Result<Trace<f32>> {
        cpu::sgd_step(&self.spec, &mut self.params, x, y, lr)
    }
    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let (_, mut post) = cpu::forward(&self.spec, &self.params, x)?;
        post.pop()
            .ok_or_else(|| crate::error::Error::Model("network has no layers".into()))
    }
}

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
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => crate::gpu::context::parse_api(other)
                .map(Self::Api)
                .ok_or_else(|| {
                    crate::error::Error::Invalid(format!(
                        "unknown backend '{s}' (expected auto, cpu, gpu, vulkan, metal, dx12 or gl)"
                    ))
                }),
        }
    }
}

impl BackendChoice {
    /// The adapter request for this choice, or `None` for the CPU.
    pub fn adapter_request(self, name: Option<String>) -> Option<crate::gpu::AdapterRequest> {
        match self {
            Self::Cpu => None,
            Self::Auto | Self::Gpu => Some(crate::gpu::AdapterRequest {
                backends: None,
                name,
            }),
            Self::Api(b) => Some(crate::gpu::AdapterRequest {
                backends: Some(b),
                name,
            }),
        }
    }
}
