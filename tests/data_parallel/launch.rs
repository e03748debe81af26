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
    let ompi = detect_in(env(&ompi)).unwrap().expect("Open MPI");
    assert_eq!((ompi.launcher, ompi.rank, ompi.size, ompi.local_rank), ("Open MPI", 3, 4, Some(1)));
    let hydra = [("PMI_SIZE", "2"), ("PMI_RANK", "1"), ("MPI_LOCALRANKID", "0")];
    let hydra = detect_in(env(&hydra)).unwrap().expect("MPICH");
    assert_eq!((hydra.launcher, hydra.rank, hydra.size, hydra.local_rank), ("MPICH/PMI", 1, 2, Some(0)));
    // srun sets PMIX_RANK and the step's SLURM variables; a batch script alone has SLURM_NTASKS only.
    let srun = [("SLURM_STEP_NUM_TASKS", "16"), ("SLURM_PROCID", "9"), ("SLURM_LOCALID", "1"), ("PMIX_RANK", "9")];
    let srun = detect_in(env(&srun)).unwrap().expect("srun");
    assert_eq!((srun.launcher, srun.rank, srun.size, srun.local_rank), ("SLURM srun", 9, 16, Some(1)));
    assert_eq!(detect_in(env(&[("SLURM_NTASKS", "4"), ("SLURM_PROCID", "0")])).unwrap(), None);
    assert_eq!(detect_in(env(&[])).unwrap(), None);
    assert_eq!(
        [gpu_index(0, 8), gpu_index(5, 8), gpu_index(9, 8), gpu_index(2, 1), gpu_index(1, 0)],
        [Some(0), Some(5), Some(1), Some(0), None]
    );
}

#[test]
fn mvapich_is_recognised_and_empty_variables_are_unset() {
    let mv2 = [("MV2_COMM_WORLD_SIZE", "3"), ("MV2_COMM_WORLD_RANK", "2"), ("MV2_COMM_WORLD_LOCAL_RANK", "0")];
    let mv2 = detect_in(env(&mv2)).unwrap().expect("MVAPICH");
    assert_eq!((mv2.launcher, mv2.rank, mv2.size, mv2.local_rank), ("MVAPICH", 2, 3, Some(0)));
    assert_eq!(detect_in(env(&[("OMPI_COMM_WORLD_SIZE", ""), ("PMI_SIZE", " ")])).unwrap(), None);
}

/// A launcher that says one rank does not hide another that says several (whichever is read first).
#[test]
fn any_launcher_that_says_several_ranks_counts() {
    let nested = [("OMPI_COMM_WORLD_SIZE", "1"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "1")];
    let l = detect_in(env(&nested)).unwrap().expect("a launch");
    assert_eq!((l.launcher, l.rank, l.size), ("SLURM srun", 1, 2));
    // mpirun inside an allocation: one daemon a node, started by srun, then the ranks.
    let both = [
        ("OMPI_COMM_WORLD_SIZE", "4"),
        ("OMPI_COMM_WORLD_RANK", "3"),
        ("SLURM_STEP_NUM_TASKS", "2"),
        ("SLURM_PROCID", "1"),
    ];
    let l = detect_in(env(&both)).unwrap().expect("a launch");
    assert_eq!((l.launcher, l.rank, l.size), ("Open MPI", 3, 4), "the most specific of several");
    let alone = detect_in(env(&[("OMPI_COMM_WORLD_SIZE", "1"), ("PMI_SIZE", "1")])).unwrap().expect("one rank");
    assert_eq!((alone.launcher, alone.size), ("Open MPI", 1));
}

/// SLURM lists tasks per node ("2(x3),1"): this node's count is its entry.
#[test]
fn slurm_s_tasks_per_node_are_read_for_this_node() {
    let srun = |list: &'static str, node: &'static str| {
        let vars = [
            ("SLURM_STEP_NUM_TASKS", "7"),
            ("SLURM_PROCID", "6"),
            ("SLURM_STEP_TASKS_PER_NODE", list),
            ("SLURM_NODEID", node),
        ];
        detect_in(env(&vars)).map(|l| l.expect("srun").local_size).map_err(|e| e.to_string())
    };
    assert_eq!(srun("2(x3),1", "3"), Ok(Some(1)));
    assert_eq!(srun("2(x3),1", "2"), Ok(Some(2)));
    assert_eq!(srun("4(x2)", ""), Ok(Some(4)), "the same on every node");
    assert_eq!(srun("2(x3),1", ""), Ok(None), "not known without the node");
    assert!(srun("2(x3),1", "4").unwrap_err().contains("names no node 4"));
    assert!(srun("2(x", "0").unwrap_err().contains("SLURM_STEP_TASKS_PER_NODE is '2(x'"));
}

/// Variables that make no sense are errors that name them, never a silent "not launched".
#[test]
fn launcher_variables_that_make_no_sense_are_errors_naming_them() {
    let error = |vars: &[(&str, &str)]| detect_in(env(vars)).unwrap_err().to_string();
    let e = error(&[("OMPI_COMM_WORLD_SIZE", "abc")]);
    assert_eq!(e, "OMPI_COMM_WORLD_SIZE is 'abc'; it may be a whole number (or unset)");
    let e = error(&[("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "5")]);
    assert!(e.contains("rank 5 of 2") && e.contains("OMPI_COMM_WORLD_RANK=5"), "{e}");
    let e = error(&[("PMI_SIZE", "2"), ("PMI_RANK", "-1")]);
    assert!(e.starts_with("PMI_RANK is '-1'"), "{e}");
    let e = error(&[("MV2_COMM_WORLD_SIZE", "2")]);
    assert!(e.contains("MV2_COMM_WORLD_RANK is unset"), "{e}");
    let e = error(&[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "x")]);
    assert!(e.starts_with("SLURM_LOCALID is 'x'"), "{e}");
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

    /// Every process reports an impossible launch itself (rank 5 of 2 has no rank 0 to speak for it).
    #[test]
    fn launcher_variables_that_make_no_sense_are_reported_by_each_process() {
        let cases = [
            (vec![("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "5")], "rank 5 of 2"),
            (vec![("OMPI_COMM_WORLD_SIZE", "abc")], "OMPI_COMM_WORLD_SIZE is 'abc'"),
        ];
        for (env, needle) in cases {
            let o = launched(&env);
            assert!(!o.status.success(), "{env:?}: ran anyway: {}", stdout(&o));
            let e = stderr(&o);
            assert!(e.starts_with("error: ") && e.contains(needle), "{env:?}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        // MVAPICH's job of two, and SLURM's behind a launcher of one, are refused as any other.
        for env in [
            vec![("MV2_COMM_WORLD_SIZE", "2"), ("MV2_COMM_WORLD_RANK", "0")],
            vec![("OMPI_COMM_WORLD_SIZE", "1"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "0")],
        ] {
            let o = launched(&env);
            assert!(!o.status.success() && stderr(&o).contains("built without MPI"), "{env:?}: {}", stderr(&o));
        }
    }

    #[test]
    fn one_rank_runs_as_one_process() {
        let o = launched(&[("OMPI_COMM_WORLD_SIZE", "1"), ("OMPI_COMM_WORLD_RANK", "0")]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("trained 1 epoch"), "{}", stdout(&o));
    }
}
