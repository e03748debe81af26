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
//! Training from Rust goes through one builder, [`Trainer`], with the command line's defaults
//! (normalisation fitted on the training rows, a seeded 80/20 split, Adam at PyTorch's defaults), each
//! setting given once:
//!
//! ```
//! use backprop::{Device, Trainer, data};
//!
//! let digits = data::digits()?; // bundled: 1,797 8x8 images, 10 classes
//! let mut trained = Trainer::new(digits.clone()).layers([64, 64, 10]).epochs(10).fit(Device::Cpu)?;
//! let last = trained.history.last().expect("one row per epoch");
//! assert_eq!(last.epoch, 10);
//! assert!(last.test_accuracy.expect("20% held out") > 0.9);
//! // Raw data is normalised as in training; these rows include the training rows.
//! assert!(trained.evaluate(&digits)?.accuracy.expect("labels") > 0.95);
//! # Ok::<(), backprop::Error>(())
//! ```
//!
//! The same run on a GPU takes [`Device::Gpu`] (here whatever adapter wgpu finds; the test suite runs this
//! example on lavapipe). Optimizers are typed ([`OptimizerKind`]), and the learning rate defaults to the
//! optimizer's own:
//!
//! ```
//! use std::sync::Arc;
//! use backprop::model::{Activation, Output};
//! use backprop::{AdapterRequest, Device, GpuContext, OptimConfig, OptimizerKind, Trainer, data};
//!
//! let gpu = Arc::new(GpuContext::new(&AdapterRequest::default())?);
//! let trained = Trainer::new(data::xor())
//!     .layers([2, 8, 1])
//!     .activation(Activation::Tanh)
//!     .output(Output::Sigmoid)
//!     .optimizer(OptimConfig::new(OptimizerKind::momentum(0.9)))
//!     .lr(0.5)
//!     .batch_size(4)
//!     .test_split(0.0)
//!     .epochs(300)
//!     .fit(Device::Gpu(gpu))?;
//! let last = trained.history.last().expect("one row per epoch");
//! assert!(last.train_loss < 0.01, "xor not learnt: {last:?}");
//! # Ok::<(), backprop::Error>(())
//! ```
//!
//! Underneath are a model ([`MlpSpec`], [`Params::init`]), a backend (the same [`Backend`] trait on the
//! CPU and the GPU: [`CpuBackend`], [`GpuMlp`]) and the loop ([`train::train`]); [`train::Run`] is the
//! prepared run between them, for choosing the backend and watching the epochs yourself.
//!
//! Checkpoints ([`checkpoint`]) are safetensors files in PyTorch's `nn.Linear` layout.
//!
//! Data-parallel training on several GPUs or machines is a wrapper over the same trait:
//! [`distributed::DataParallel`] is a [`Backend`] made of one backend per rank and a gradient exchange (MPI with
//! the `mpi` cargo feature, or threads); its module docs train two ranks as threads.

pub mod backend;
// Native only: the CPU backend (threads and the gemm crate), files and data-parallel training (MPI,
// threads, blocking read-backs). The rest builds for
// wasm32-unknown-unknown too, for the web page (web/), with checkpoints as bytes, the report as metrics
// only and the bench without the CPU backend.
pub mod bench;
pub mod checkpoint;
pub mod cpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod cpu_fast;
pub mod data;
pub mod device;
#[cfg(not(target_arch = "wasm32"))]
pub mod distributed;
pub mod environment;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod fsutil;
pub mod gpu;
pub mod model;
pub mod optim;
pub mod reference;
pub mod report;
pub mod train;
pub mod worked_example;

pub use backend::Backend;
#[cfg(not(target_arch = "wasm32"))]
pub use cpu_fast::CpuBackend;
pub use error::{Error, Result};
pub use gpu::{AdapterRequest, GpuContext, GpuMlp};
pub use model::{Activation, Loss, MlpSpec, Params};
pub use optim::{OptimConfig, OptimizerKind};
pub use reference::ReferenceBackend;
pub use train::{Device, Network, Trainer};
