//! How a process finds the launcher that started it, and which GPU each rank of a node takes; a build
//! without the `mpi` feature, started as one of several ranks, refuses to run (never N independent runs
//! racing on one --out), while one rank alone runs as usual.

use backprop::distributed::launch::{detect_in, gpu_index};

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

#[test]
fn launchers_are_recognised_and_ranks_take_their_own_gpu() {
    let ompi = [("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")];
    let ompi = detect_in(env(&ompi)).expect("Open MPI");
    assert_eq!((ompi.launcher, ompi.rank, ompi.size, ompi.local_rank), ("Open MPI", 3, 4, Some(1)));
    let hydra = detect_in(env(&[("PMI_SIZE", "2"), ("PMI_RANK", "1"), ("MPI_LOCALRANKID", "0")])).expect("MPICH");
    assert_eq!((hydra.launcher, hydra.rank, hydra.size, hydra.local_rank), ("MPICH/PMI", 1, 2, Some(0)));
    // srun sets PMIX_RANK and the step's SLURM variables; a batch script alone has SLURM_NTASKS only.
    let srun = [("SLURM_STEP_NUM_TASKS", "16"), ("SLURM_PROCID", "9"), ("SLURM_LOCALID", "1"), ("PMIX_RANK", "9")];
    let srun = detect_in(env(&srun)).expect("srun");
    assert_eq!((srun.launcher, srun.rank, srun.size, srun.local_rank), ("SLURM srun", 9, 16, Some(1)));
    assert_eq!(detect_in(env(&[("SLURM_NTASKS", "4"), ("SLURM_PROCID", "0")])), None);
    assert_eq!(detect_in(env(&[])), None);
    assert_eq!(
        [gpu_index(0, 8), gpu_index(5, 8), gpu_index(9, 8), gpu_index(2, 1), gpu_index(1, 0)],
        [Some(0), Some(5), Some(1), Some(0), None]
    );
}

#[cfg(not(feature = "mpi"))]
mod without_mpi {
    use crate::common::cli::{cmd, stderr, stdout};

    /// Runs `backprop train` (one quick epoch) with the launcher's variables `env`.
    fn launched(env: &[(&str, &str)]) -> std::process::Output {
        let mut c = cmd();
        c.args(["train", "--backend", "cpu", "--epochs", "1", "--quiet"]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("the binary runs")
    }

    #[test]
    fn several_ranks_without_mpi_are_refused_by_rank_0_alone() {
        let launchers = [
            ("Open MPI", [("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "0")]),
            ("MPICH/PMI", [("PMI_SIZE", "3"), ("PMI_RANK", "0")]),
            ("SLURM srun", [("SLURM_STEP_NUM_TASKS", "4"), ("SLURM_PROCID", "0")]),
        ];
        for (name, env) in launchers {
            let o = launched(&env);
            assert!(!o.status.success(), "{name}: ran anyway: {}", stdout(&o));
            let e = stderr(&o);
            assert!(e.starts_with(&format!("error: started by {name} as rank 0 of ")), "{name}: {e}");
            assert!(e.contains("built without MPI") && e.contains("--features mpi"), "{name}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let o = launched(&[("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "1")]);
        assert!(!o.status.success());
        assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()), "rank 1 stays silent");
    }

    #[test]
    fn one_rank_runs_as_one_process() {
        let o = launched(&[("OMPI_COMM_WORLD_SIZE", "1"), ("OMPI_COMM_WORLD_RANK", "0")]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("trained 1 epoch"), "{}", stdout(&o));
    }
}
