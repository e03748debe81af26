//! The engine's GPU suite in one test binary (as wgpu's own `tests/tests/wgpu-gpu/main.rs`): the device and
//! its pipelines are made once (`common::gpu`) and shared by every module. No adapter is a failure, never a
//! skip: on a machine without a GPU, lavapipe (scripts/test installs it) runs every kernel on the CPU.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/ranks.rs"]
mod ranks;

mod adapters;
mod data_parallel;
mod divergence;
mod fused_choice;
mod fused_training;
mod kernels;
mod limits;
mod optimizer_state;
mod optimizers;
mod properties;
mod reductions;
mod resume;
mod shaders;
mod training;
