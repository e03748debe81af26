//! The GPU backend: hand-written WGSL kernels run through wgpu.

pub mod adapter;
pub mod buffer;
pub mod context;
pub mod fused;
pub mod memory;
pub mod mlp;
pub mod ops;
pub mod pipelines;
pub mod shaders;
pub mod structs;
pub mod tiling;
pub mod tune;
pub mod wait;

pub use adapter::{AdapterRequest, AdapterSummary, list_adapters};
pub use context::GpuContext;
pub use mlp::{GpuMlp, StepTiming};
pub use tune::{GpuPath, PathStrategy};
