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
//! Training a classifier from Rust: a model builder ([`MlpSpec`], [`Params::init`]), a backend (the same
//! [`Backend`] trait on the CPU and the GPU), and the trainer ([`train::train`]):
//!
//! ```
//! use backprop::data::{self, Normalization, Normalizer};
//! use backprop::model::{Activation, Loss, MlpSpec, Output, Params};
//! use backprop::optim::{OptimConfig, OptimizerKind, Schedule};
//! use backprop::train::{self, TrainConfig};
//! use backprop::{Backend, CpuBackend};
//!
//! let digits = data::digits()?; // bundled: 1,797 8x8 images, 10 classes
//! let (mut train_set, test_set) = data::split(&digits, 0.2, 42)?;
//! let mut test_set = test_set.expect("20% held out");
//! let norm = Normalizer::fit(Normalization::Standard, &train_set.x);
//! norm.apply(&mut train_set.x)?;
//! norm.apply(&mut test_set.x)?;
//!
//! let spec = MlpSpec::with_output(vec![64, 64, 10], Activation::Relu, Output::Softmax, Loss::CrossEntropy)?;
//! let mut backend = CpuBackend::new(spec.clone(), Params::init(&spec, 42))?;
//! let adam = OptimConfig { kind: OptimizerKind::default_for("adam")?, weight_decay: 0.0 };
//! backend.set_optimizer(adam)?;
//! let cfg = TrainConfig {
//!     epochs: 10, batch_size: 32, lr: 1e-3, schedule: Schedule::Constant, optimizer: adam,
//!     shuffle: true, seed: 42, verify: None,
//! };
//! let history = train::train(&mut backend, &train_set, Some(&test_set), &cfg, 0, &mut train::Silent)?;
//! let eval = train::evaluate(&mut backend, &test_set, 256)?;
//! assert_eq!(history.len(), 10);
//! assert!(eval.accuracy.unwrap() > 0.9);
//! # Ok::<(), backprop::Error>(())
//! ```
//!
//! On a GPU the same code runs with [`GpuMlp`] in place of [`CpuBackend`]:
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
//!
//! Checkpoints ([`checkpoint`]) are safetensors files in PyTorch's `nn.Linear` layout.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod cpu;
pub mod cpu_fast;
pub mod data;
pub mod device;
pub mod error;
pub mod fsutil;
pub mod gpu;
pub mod model;
pub mod optim;
pub mod report;
pub mod train;
pub mod worked_example;

pub use backend::Backend;
pub use cpu_fast::CpuBackend;
pub use error::{Error, Result};
pub use gpu::{AdapterRequest, GpuContext, GpuMlp};
pub use model::{Activation, Loss, MlpSpec, Params};
