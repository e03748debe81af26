//! Data-parallel training: the same model on every rank (a process under `mpirun`/`srun`, or a thread),
//! each rank computing the gradient of its share of every batch, the gradients summed in a fixed order,
//! and every rank applying the same update.
//!
//! [`DataParallel`] wraps any backend that can take its step apart ([`GradientBackend`]: the CPU backend
//! and the GPU backend) and any way to move data between ranks ([`GradientExchange`]: MPI with the `mpi`
//! cargo feature, threads, or one process), and is a [`Backend`](crate::Backend) itself, so the training
//! loop is the same code. Two ranks as threads, each with a CPU backend, train like one process with the
//! same global batch:
//!
//! ```
//! use backprop::distributed::{DataParallel, ThreadExchange};
//! use backprop::train::{self, TrainConfig};
//! use backprop::optim::{OptimConfig, Schedule};
//! use backprop::{data, Activation, Backend, CpuBackend, Loss, MlpSpec, Params};
//!
//! let spirals = data::spirals(200, 7)?;
//! let spec = MlpSpec::uniform(vec![2, 16, 2], Activation::Tanh, Loss::Mse)?;
//! let cfg = TrainConfig {
//!     epochs: 3, batch_size: 25, lr: 0.1, schedule: Schedule::Constant, optimizer: OptimConfig::sgd(),
//!     shuffle: true, seed: 7, verify: None,
//! };
//! let ranks: Vec<_> = ThreadExchange::group(2).into_iter().map(|exchange| {
//!     let (spec, spirals, cfg) = (spec.clone(), spirals.clone(), cfg.clone());
//!     std::thread::spawn(move || -> backprop::Result<Params<f32>> {
//!         let cpu = CpuBackend::new(spec.clone(), Params::init(&spec, 7))?;
//!         let mut dp = DataParallel::new(cpu, exchange)?; // checks every rank starts equal
//!         train::train(&mut dp, &spirals, None, &cfg, 0, &mut train::Silent)?;
//!         dp.params()
//!     })
//! }).collect();
//! let params: Vec<_> = ranks.into_iter().map(|t| t.join().expect("no panic")).collect::<Result<_, _>>()?;
//! assert_eq!(params[0], params[1]); // bit for bit
//!
//! let mut one = CpuBackend::new(spec.clone(), Params::init(&spec, 7))?;
//! train::train(&mut one, &spirals, None, &cfg, 0, &mut train::Silent)?;
//! let (a, b) = (one.params()?.to_flat(), params[0].to_flat());
//! assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-4 * x.abs()));
//! # Ok::<(), backprop::Error>(())
//! ```

pub mod bench;
mod exchange;
mod gradients;
pub mod job;
pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
mod parallel;
mod threads;

pub use exchange::{GradientExchange, Solo, share};
pub use gradients::{BucketReady, GradientBackend, layer_buckets};
pub use parallel::{DataParallel, Fault, StepTimes};
pub use threads::ThreadExchange;
