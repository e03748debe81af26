//! The binary under Open MPI's `mpirun` (built with `--features mpi`; scripts/test-mpi runs this binary):
//! training on 2 and 3 ranks matches one process and reruns byte for byte (training), and a job that fails
//! on any rank, or loses one, ends with one error and an intact checkpoint (failures). One binary; a module
//! per topic. The README's `mpirun` examples run here too (tests/cli/readme.rs, included).

#[path = "../common/mod.rs"]
mod common;

mod failures;
#[path = "../cli/readme.rs"]
mod readme;
mod run;
mod training;
