//! The gradient exchange over MPI (the `mpi` crate, any MPI library: Open MPI, MPICH): MPI only moves the
//! data (`MPI_Alltoallv`, `MPI_Allgatherv`, `MPI_Allgather`), so no sum depends on which algorithm the
//! library picks; `GradientExchange::sum` adds in rank order. Also starting, ending and aborting MPI.

use std::sync::Mutex;

use mpi::Count;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::exchange::{GradientExchange, check_counts};
use crate::error::{Error, Result};

/// MPI, once started; dropping it ends MPI (`MPI_Finalize`).
static UNIVERSE: Mutex<Option<mpi::environment::Universe>> = Mutex::new(None);

/// Starts MPI (once; later calls do nothing).
pub fn init() -> Result<()> {
    let mut u = UNIVERSE.lock().map_err(|_| Error::Invalid("MPI state poisoned".into()))?;
    if u.is_none() && !mpi::environment::is_initialized() {
        *u = Some(mpi::initialize().ok_or_else(|| Error::Invalid("MPI could not be started".into()))?);
    }
    Ok(())
}

/// Ends MPI, if this process started it (every rank must call it).
pub fn finalize() {
    if let Ok(mut u) = UNIVERSE.lock() {
        u.take();
    }
}

/// Ends every rank of the job at once with exit status `code` (`MPI_Abort`).
pub fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

/// The MPI library's name and version, e.g. `Open MPI v4.1.4`.
pub fn library() -> String {
    let v = mpi::environment::library_version().unwrap_or_default();
    let first = v.split([',', '\n']).next().unwrap_or("").trim();
    first.strip_prefix("MPICH Version:").map(|r| format!("MPICH {}", r.trim())).unwrap_or_else(|| first.to_string())
}

/// The exchange among all ranks of `MPI_COMM_WORLD`.
pub struct MpiExchange {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
}

impl MpiExchange {
    /// The world communicator; MPI must have been started (`init`).
    pub fn world() -> Result<Self> {
        if !mpi::environment::is_initialized() || mpi::environment::is_finalized() {
            return Err(Error::Invalid(
                "MPI is not running: distributed::job::start starts it, under mpirun or srun".into(),
            ));
        }
        let world = SimpleCommunicator::world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Self { world, rank, size })
    }
}

fn counts_and_displs(counts: &[usize]) -> Result<(Vec<Count>, Vec<Count>)> {
    let mut displs = Vec::with_capacity(counts.len());
    let mut at: usize = 0;
    for &c in counts {
        displs.push(at);
        at += c;
    }
    let too_big = || Error::Invalid(format!("an MPI message of {at} values exceeds MPI's {} count limit", Count::MAX));
    let cast = |v: &[usize]| v.iter().map(|&x| Count::try_from(x).map_err(|_| too_big())).collect::<Result<Vec<_>>>();
    Ok((cast(counts)?, cast(&displs)?))
}

impl GradientExchange for MpiExchange {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn describe(&self) -> String {
        format!("mpi, {}", library())
    }

    fn all_to_all_v(
        &mut self,
        send: &[f32],
        send_counts: &[usize],
        recv: &mut [f32],
        recv_counts: &[usize],
    ) -> Result<()> {
        check_counts("send", send_counts, self.size, send.len())?;
        check_counts("receive", recv_counts, self.size, recv.len())?;
        let (sc, sd) = counts_and_displs(send_counts)?;
        let (rc, rd) = counts_and_displs(recv_counts)?;
        let out = Partition::new(send, sc, sd);
        let mut into = PartitionMut::new(recv, rc, rd);
        self.world.all_to_all_varcount_into(&out, &mut into);
        Ok(())
    }

    fn all_gather_v(&mut self, mine: &[f32], counts: &[usize], out: &mut [f32]) -> Result<()> {
        check_counts("gather", counts, self.size, out.len())?;
        if counts[self.rank] != mine.len() {
            return Err(Error::shape("values this rank gathers", counts[self.rank], mine.len()));
        }
        let (c, d) = counts_and_displs(counts)?;
        let mut into = PartitionMut::new(out, c, d);
        self.world.all_gather_varcount_into(mine, &mut into);
        Ok(())
    }

    fn all_gather_u64(&mut self, mine: &[u64], out: &mut [u64]) -> Result<()> {
        if out.len() != mine.len() * self.size {
            return Err(Error::shape("gathered values", mine.len() * self.size, out.len()));
        }
        self.world.all_gather_into(mine, out);
        Ok(())
    }
}

/// The name of this node, as MPI knows it.
pub fn host() -> String {
    mpi::environment::processor_name().unwrap_or_else(|_| "?".into())
}
