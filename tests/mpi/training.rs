//! Training under `mpirun`: 2 and 3 ranks on the CPU backend and on lavapipe match one process with the
//! same global batch (not a multiple of the ranks), rerun byte for byte, resume with another rank count,
//! and `bench` splits the step on rank 0 alone.

use std::path::Path;
use std::process::Output;

use backprop::checkpoint;

use crate::common::cli::{backprop, s, stderr, stdout};
use crate::run::run;

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed ({:?}):\n{}\n{}", o.status, stdout(&o), stderr(&o));
    o
}

/// Flags of a short run on the bundled digits: 1,438 training rows, batch 50 (not a multiple of 3; the
/// last batch has 38 rows), momentum with clipping, on the CPU; `changes` replaces flags by name.
fn train_args(out: &Path, changes: &[(&str, &str)]) -> Vec<String> {
    let mut flags = vec![
        ("--backend", "cpu".to_string()),
        ("--layers", "64,24,10".into()),
        ("--epochs", "2".into()),
        ("--batch-size", "50".into()),
        ("--optimizer", "momentum".into()),
        ("--max-grad-norm", "1".into()),
        ("--out", s(out)),
    ];
    for &(k, v) in changes {
        match flags.iter_mut().find(|(f, _)| *f == k) {
            Some(f) => f.1 = v.to_string(),
            None => flags.push((k, v.to_string())),
        }
    }
    std::iter::once("train".to_string()).chain(flags.into_iter().flat_map(|(k, v)| [k.to_string(), v])).collect()
}

fn params(path: &Path) -> Vec<f32> {
    checkpoint::load(path).expect("the checkpoint loads").model.params.to_flat()
}

/// |Δ| ≤ 1e-5 + 1e-4·|θ|: ranks sum their shares' gradients, one process sums all rows in one product.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    crate::common::assert_close(what, got, &want, 1e-5, 1e-4);
}

#[test]
fn two_and_three_ranks_train_like_one_process_and_rerun_identically() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.safetensors");
    let o = backprop(&train_args(&one, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    for n in [2, 3] {
        let (a, b) = (dir.path().join(format!("{n}a.safetensors")), dir.path().join(format!("{n}b.safetensors")));
        let first = ok(run(n, &train_args(&a, &[]), &[]));
        assert_eq!(stdout(&first).matches("trained 2 epochs").count(), 1, "rank 0 alone reports:\n{}", stdout(&first));
        assert!(stderr(&first).contains(&format!("data-parallel over {n} ranks")), "{}", stderr(&first));
        assert_close(&format!("{n} ranks vs one process"), &params(&a), &params(&one));
        ok(run(n, &train_args(&b, &[]), &[]));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{n} ranks: reruns differ");
    }
}

#[test]
fn resuming_with_another_rank_count_continues_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (three, two, one) = (dir.path().join("3.st"), dir.path().join("3then2.st"), dir.path().join("1.st"));
    ok(run(3, &train_args(&three, &[]), &[]));
    ok(run(2, &train_args(&two, &[("--resume", &s(&three)), ("--epochs", "3")]), &[]));
    let o = backprop(&train_args(&one, &[("--epochs", "3")]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = checkpoint::load(&two).unwrap();
    assert_eq!(ck.training.unwrap().epoch, 3);
    assert_close("3 ranks, then 2 resumed, vs one process", &params(&two), &params(&one));
}

#[test]
fn lavapipe_ranks_train_like_one_gpu_process() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = [("--backend", "gpu"), ("--epochs", "1"), ("--optimizer", "adam")];
    let one = dir.path().join("one.st");
    let o = backprop(&train_args(&one, &gpu));
    assert!(o.status.success(), "{}", stderr(&o));
    for n in [2, 3] {
        let (a, b) = (dir.path().join(format!("{n}a.st")), dir.path().join(format!("{n}b.st")));
        for p in [&a, &b] {
            let o = ok(run(n, &train_args(p, &gpu), &[]));
            assert!(stderr(&o).contains("backend: gpu"), "{}", stderr(&o));
        }
        assert_close(&format!("{n} lavapipe ranks vs one"), &params(&a), &params(&one));
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{n} ranks: reruns differ");
    }
}

#[test]
fn bench_under_mpirun_splits_the_step_on_rank_0_alone() {
    let o = ok(run(2, &["bench", "--backend", "cpu", "--configs", "seed,small", "--steps", "3", "--json"], &[]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document, from rank 0 alone");
    let rows = v["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert_eq!(r["ranks"], 2, "{r}");
        for f in ["one_process_ms", "ms_per_step", "compute_ms", "copy_ms", "wait_ms", "allreduce_ms", "efficiency"] {
            assert!(r[f].as_f64().is_some_and(|x| x >= 0.0 && x.is_finite()), "{f} in {r}");
        }
    }
}
