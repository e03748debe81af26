//! # backprop
//!
//! Train multilayer perceptrons with explicit backpropagation on any GPU that wgpu reaches (Vulkan, Metal,
//! DX12, GL), through hand-written WGSL compute shaders, and check every GPU result against a CPU
//! reference written with ndarray.
//!
//! The math follows one convention (see `DESIGN.md`): row-major, batch-major; `W` is (I, O) with
//! `W[i][j]` from input `i` to output `j`; `Z = A_prev · W + b`, `A = f(Z)`; MSE is the mean over all
//! B·O elements.
//!
//! ```
//! use backprop::{cpu, Activation, Loss, MlpSpec, Params};
//! use ndarray::array;
//!
//! // The seed's 2-2-1 sigmoid network, one SGD step on the CPU reference in f64.
//! let spec = MlpSpec::uniform(vec![2, 2, 1], Activation::Sigmoid, Loss::Mse)?;
//! let mut params = Params {
//!     weights: vec![array![[0.5, 0.3], [0.2, 0.4]], array![[0.6], [0.7]]],
//!     biases: vec![array![0.1, 0.2], array![0.3]],
//! };
//! let trace = cpu::sgd_step(&spec, &mut params, array![[0.5, 0.3]].view(), array![[0.8]].view(), 0.1)?;
//! assert!((trace.pre[0][[0, 0]] - 0.41_f64).abs() < 1e-12); // the seed prints 0.31
//! # Ok::<(), backprop::Error>(())
//! ```
//!
//! On a GPU, the same step runs through [`GpuMlp`], which implements the same [`Backend`] trait as
//! [`CpuBackend`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use backprop::{Activation, AdapterRequest, Backend, GpuContext, GpuMlp, Loss, MlpSpec, Params};
//!
//! let ctx = Arc::new(GpuContext::new(&AdapterRequest::default())?);
//! let spec = MlpSpec::uniform(vec![784, 256, 10], Activation::Sigmoid, Loss::Mse)?;
//! let params = Params::init(&spec, 42);
//! let mut gpu = GpuMlp::new(ctx, spec, &params)?;
//! let x = ndarray::Array2::<f32>::zeros((64, 784));
//! let y = ndarray::Array2::<f32>::zeros((64, 10));
//! let loss = gpu.step(x.view(), y.view(), 0.1, true)?;
//! # Ok::<(), backprop::Error>(())
//! ```

pub mod backend;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod error;
pub mod fsutil;
pub mod gpu;
pub mod model;
pub mod optim;
pub mod report;
pub mod train;
pub mod worked_example;

pub use backend::{Backend, CpuBackend};
pub use error::{Error, Result};
pub use gpu::{AdapterRequest, GpuContext, GpuMlp};
pub use model::{Activation, Loss, MlpSpec, Params};
