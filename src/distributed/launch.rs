//! Whether this process is one rank of a job started by `mpirun`/`mpiexec` (Open MPI, MPICH's Hydra) or
//! `srun` (SLURM), read from the variables those launchers set, before MPI itself is started.

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
/// are set by `srun` only (not in a batch script itself, where `backprop` runs as one process).
const LAUNCHERS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "Open MPI",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("MPICH/PMI", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM srun", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"),
];

/// The launch this process is part of, or `None` when it was started on its own.
pub fn detect() -> Option<Launch> {
    detect_in(|name| std::env::var(name).ok())
}

/// `detect` with the variables read through `get`.
pub fn detect_in(get: impl Fn(&str) -> Option<String>) -> Option<Launch> {
    let var = |name: &str| get(name)?.trim().parse::<usize>().ok();
    LAUNCHERS.iter().find_map(|&(launcher, size, rank, local, local_size)| {
        let (size, rank) = (var(size)?, var(rank).unwrap_or(0));
        Some(Launch { rank, size, local_rank: var(local), local_size: var(local_size), launcher })
    })
}

/// Which of `discrete` discrete GPUs this process opens by default, when it is one of several ranks and the
/// launcher says its rank on the node (`gpu_index`).
pub fn node_gpu(discrete: usize) -> Option<usize> {
    let l = detect().filter(|l| l.size > 1)?;
    gpu_index(l.local_rank?, discrete)
}

/// Which of `discrete` discrete GPUs rank `local_rank` of a node opens by default: its own, round robin
/// where there are more ranks than GPUs. `None` where there is no discrete GPU (then every rank takes the
/// best adapter there is, shared).
pub fn gpu_index(local_rank: usize, discrete: usize) -> Option<usize> {
    (discrete > 0).then(|| local_rank % discrete)
}
