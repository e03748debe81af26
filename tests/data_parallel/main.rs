//! Data-parallel training without MPI: the fixed-order sum and the row shares, ranks as threads training
//! like one process with the same global batch (CPU; the GPU's are in tests/gpu), and how a process finds
//! the launcher that started it (a build without the `mpi` feature refuses to run as one of several
//! ranks). The runs under `mpirun` are in tests/mpi (`--features mpi`). One binary; a module per topic.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/ranks.rs"]
mod ranks;

mod exchange;
mod launch;
mod training;
