//! Determinism: the same command gives the same bytes, on the CPU (whatever the thread count) and on the GPU
//! (whatever the matmul tiling), and `GpuMlp::run_steps` gives the same bits every time and in any number
//! of calls.

use std::path::Path;

use backprop::gpu::shaders::Tile;
use backprop::model::Output as OutputLayer;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Backend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;

use super::common::cli::{cmd, ok_with, s};
use super::common::{self, assert_bits_eq};

/// Runs `train` with `args` plus `--out <dir>/<name> --quiet` (in `env`), and returns the file's bytes.
fn train_bytes(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let out = dir.join(name);
    let mut c = cmd();
    c.envs(env.iter().copied());
    ok_with(c, &[&["train"][..], args, &["--out", &s(&out), "--quiet"]].concat());
    std::fs::read(&out).unwrap()
}

fn assert_same_bytes(what: &str, a: &[u8], b: &[u8]) {
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!("{what}: the files differ ({} vs {} bytes, first difference at byte {at})", a.len(), b.len());
    }
}

#[test]
fn the_same_cpu_run_twice_gives_byte_identical_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "cpu", "--epochs", "3"];
    let x1 = train_bytes(dir.path(), "x1.safetensors", &args, &[]);
    let x2 = train_bytes(dir.path(), "x2.safetensors", &args, &[]);
    assert_same_bytes("cpu, digits, 3 epochs, run twice", &x1, &x2);
}

#[test]
fn cpu_checkpoints_do_not_depend_on_the_thread_count() {
    // Products of at least 2^23 multiply-adds run on every core (the 512x512 gradient over a batch of 256
    // is 67M): the result must not depend on how many there are.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "cpu", "--epochs", "1", "--layers", "64,512,512,10", "--batch-size", "256"];
    let one = train_bytes(dir.path(), "t1.safetensors", &args, &[("RAYON_NUM_THREADS", "1")]);
    let four = train_bytes(dir.path(), "t4.safetensors", &args, &[("RAYON_NUM_THREADS", "4")]);
    assert_same_bytes("cpu with 1 thread vs 4 threads", &one, &four);
}

#[test]
fn the_same_gpu_run_twice_gives_byte_identical_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "gpu", "--epochs", "2", "--layers", "64,16,10"];
    let y1 = train_bytes(dir.path(), "y1.safetensors", &args, &[]);
    let y2 = train_bytes(dir.path(), "y2.safetensors", &args, &[]);
    assert_same_bytes("gpu, digits 64-16-10, 2 epochs, run twice", &y1, &y2);
}

#[test]
fn gpu_checkpoints_do_not_depend_on_the_matmul_tiling() {
    // Products are timed with each tiling once per adapter and the fastest kept: unless every tiling gives
    // the same bits, the same command could give different results from run to run. The unfused step is
    // forced: the fused one (the default for this narrow network) runs no matmul kernel.
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "gpu", "--epochs", "1", "--layers", "64,128,10", "--batch-size", "64"];
    let env = |tile| [("BACKPROP_GPU_PATH", "unfused"), ("BACKPROP_MATMUL_TILE", tile)];
    let small = train_bytes(dir.path(), "small.safetensors", &args, &env("small"));
    for tile in Tile::ALL.into_iter().filter(|&t| t != Tile::Small) {
        let name = tile.name();
        let other = train_bytes(dir.path(), &format!("{name}.safetensors"), &args, &env(name));
        assert_same_bytes(&format!("gpu with the small tiling vs {name}"), &small, &other);
    }
}

#[test]
fn gpu_mlp_run_steps_gives_the_same_bits_every_time() {
    let ctx = common::gpu();
    let spec =
        MlpSpec::with_output(vec![8, 16, 4], Activation::Relu, OutputLayer::Softmax, Loss::CrossEntropy).unwrap();
    let init = Params::init(&spec, 3);
    let mut r = common::rng(9);
    let x = common::random(&mut r, 40, 8, 1.0).mapv(|v| v as f32);
    let mut y = Array2::<f32>::zeros((40, 4));
    for i in 0..40 {
        y[[i, (i * 7 + i / 5) % 4]] = 1.0;
    }
    // 10 batches of 4 rows: every row once, in a fixed scrambled order (a call takes at most N rows).
    let rows: Vec<usize> = (0..40).map(|i| (i * 17 + 3) % 40).collect();
    let adam = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 };
    let run = |calls: &[&[usize]]| -> (Params<f32>, OptimState, f64) {
        let mut g = GpuMlp::new(ctx.clone(), spec.clone(), &init).unwrap();
        g.set_optimizer(adam).unwrap();
        g.set_data(x.view(), y.view()).unwrap();
        for rows in calls {
            g.run_steps(rows, 4, 0.01).unwrap();
        }
        (g.params().unwrap(), g.optimizer_state().unwrap(), g.take_loss_sum().unwrap())
    };
    let (p1, s1, l1) = run(&[&rows]);
    let (p2, s2, l2) = run(&[&rows]);
    assert_eq!((s1.step, s2.step), (10, 10), "10 steps");
    let moved = p1.to_flat().iter().zip(init.to_flat()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "10 Adam steps moved no parameter by more than {moved}");
    assert!(l1.is_finite() && l1 > 0.0, "loss sum {l1}");
    assert_bits_eq("run twice: parameters", &p1.to_flat(), &p2.to_flat());
    assert_bits_eq("run twice: adam m", &s1.m, &s2.m);
    assert_bits_eq("run twice: adam v", &s1.v, &s2.v);
    assert_eq!(l1.to_bits(), l2.to_bits(), "run twice: loss sum {l1} vs {l2}");

    // The same 10 steps in two calls (two submits) give the same bits as one call.
    let (p3, s3, l3) = run(&[&rows[..20], &rows[20..]]);
    assert_eq!(s3.step, 10);
    assert_bits_eq("5 + 5 steps vs 10: parameters", &p3.to_flat(), &p1.to_flat());
    assert_bits_eq("5 + 5 steps vs 10: adam m", &s3.m, &s1.m);
    assert_bits_eq("5 + 5 steps vs 10: adam v", &s3.v, &s1.v);
    assert_eq!(l3.to_bits(), l1.to_bits(), "5 + 5 steps vs 10: loss sum {l3} vs {l1}");
}
