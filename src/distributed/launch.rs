//! Whether this process is one rank of a job started by `mpirun`/`mpiexec` (Open MPI, MVAPICH, MPICH's
//! Hydra) or `srun` (SLURM), read from the variables those launchers set, before MPI itself is started. A
//! variable that is set but makes no sense (not a number, a rank not below the size) is an error that names
//! it, never a silent "not launched".

use crate::environment;
use crate::error::{Error, Result};

/// This process's place in a job a launcher started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
    /// The rank among those on this node, when the launcher says.
    pub local_rank: Option<usize>,
    /// Ranks on this node, when the launcher says.
    pub local_size: Option<usize>,
    /// Which launcher's variables were found.
    pub launcher: &'static str,
}

/// (launcher, size, rank, local rank, local size) variables, most specific first. SLURM's step variables
/// are set by `srun` only (not in a batch script itself, where `backprop` runs as one process); its local
/// size is a list by node (`slurm_tasks_here`).
const LAUNCHERS: [(&str, &str, &str, &str, &str); 4] = [
    (
        "Open MPI",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("MVAPICH", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"),
    ("MPICH/PMI", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM srun", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"),
];

/// The launch this process is part of, or `None` when it was started on its own.
pub fn detect() -> Result<Option<Launch>> {
    detect_in(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

/// `detect` with the variables read through `get`. Every launcher whose size variable is set (and not
/// blank) is read and checked; the first, most specific, that says more than one rank is the launch (a
/// launcher of one rank may run inside another's job of several), else the first found.
pub fn detect_in(get: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
    let number = |name: &str| -> Result<Option<usize>> {
        let Some(v) = get(name) else { return Ok(None) };
        let Some(v) = environment::given(Some(&v)) else { return Ok(None) };
        v.parse().map(Some).map_err(|_| environment::invalid(name, v, &["a whole number"]))
    };
    let mut found = Vec::new();
    for (launcher, size_var, rank_var, local_var, local_size_var) in LAUNCHERS {
        let Some(size) = number(size_var)? else { continue };
        let rank = match number(rank_var)? {
            Some(rank) => rank,
            None if size <= 1 => 0,
            None => {
                return Err(Error::Invalid(format!(
                    "{launcher} says {size} ranks ({size_var}={size}) but not which this is ({rank_var} is unset)"
                )));
            }
        };
        if rank >= size {
            return Err(Error::Invalid(format!(
                "{launcher} says rank {rank} of {size} ({rank_var}={rank}, {size_var}={size}): a rank must be \
                 below the number of ranks"
            )));
        }
        let local_size = match launcher {
            "SLURM srun" => match get(local_size_var) {
                Some(list) => slurm_tasks_here(local_size_var, &list, number("SLURM_NODEID")?)?,
                None => None,
            },
            _ => number(local_size_var)?,
        };
        found.push(Launch { rank, size, local_rank: number(local_var)?, local_size, launcher });
    }
    Ok(found.iter().find(|l| l.size > 1).or(found.first()).copied())
}

/// This node's tasks in SLURM's list of tasks per node, `list` ("2(x3),1": two on each of the first three
/// nodes, then one), this node being `node` (`SLURM_NODEID`). Without the node, the count where every node
/// has the same, else `None` (not known); a list that does not parse, or too short for the node, is an error.
fn slurm_tasks_here(name: &str, list: &str, node: Option<usize>) -> Result<Option<usize>> {
    let Some(list) = environment::given(Some(list)) else { return Ok(None) };
    let bad = || environment::invalid(name, list, &["a list such as 2(x3),1"]);
    let mut counts = Vec::new();
    for entry in list.split(',') {
        let (count, times) = match entry.trim().split_once("(x") {
            Some((count, times)) => (count, times.strip_suffix(')').ok_or_else(bad)?),
            None => (entry.trim(), "1"),
        };
        let (count, times): (usize, usize) = (count.parse().map_err(|_| bad())?, times.parse().map_err(|_| bad())?);
        counts.push((count, times));
    }
    match node {
        None => Ok(counts.iter().all(|c| c.0 == counts[0].0).then_some(counts[0].0)),
        Some(node) => {
            let mut left = node;
            for (count, times) in counts {
                if left < times {
                    return Ok(Some(count));
                }
                left -= times;
            }
            Err(Error::Invalid(format!("{name} is '{list}', which names no node {node} (SLURM_NODEID)")))
        }
    }
}

/// Which of `discrete` discrete GPUs this process opens by default, when it is one of several ranks and the
/// launcher says its rank on the node (`gpu_index`).
pub fn node_gpu(discrete: usize) -> Option<usize> {
    let l = detect().ok().flatten().filter(|l| l.size > 1)?;
    gpu_index(l.local_rank?, discrete)
}

/// Which of `discrete` discrete GPUs rank `local_rank` of a node opens by default: its own, round robin
/// where there are more ranks than GPUs. `None` where there is no discrete GPU (then every rank takes the
/// best adapter there is, shared).
pub fn gpu_index(local_rank: usize, discrete: usize) -> Option<usize> {
    (discrete > 0).then(|| local_rank % discrete)
}
