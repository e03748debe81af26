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
//! use backprop::train::Silent;
//! use backprop::{Backend, CpuBackend, Device, Trainer, data};
//!
//! let run = Trainer::new(data::spirals(200, 7)?).layers([2, 16, 2]).epochs(3).batch_size(25).prepare()?;
//! let ranks: Vec<_> = ThreadExchange::group(2).into_iter().map(|exchange| {
//!     let run = run.clone();
//!     std::thread::spawn(move || -> backprop::Result<Vec<f32>> {
//!         let cpu = CpuBackend::new(run.model.spec.clone(), run.model.params.clone())?;
//!         let mut dp = DataParallel::new(cpu, exchange)?; // checks every rank starts equal
//!         run.train(&mut dp, &mut Silent)?;
//!         Ok(dp.params()?.to_flat())
//!     })
//! }).collect();
//! let params: Vec<_> = ranks.into_iter().map(|t| t.join().expect("no panic")).collect::<Result<_, _>>()?;
//! assert_eq!(params[0], params[1]); // bit for bit
//!
//! let mut one = run.backend(&Device::Cpu)?; // one process, the same global batch of 25
//! run.train(one.as_mut(), &mut Silent)?;
//! let one = one.params()?.to_flat();
//! assert!(one.iter().zip(&params[0]).all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-4 * x.abs()));
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
