//! Divergence is caught where the loss is computed and stops training with the step named; gradient
//! clipping matches PyTorch's clip_grad_norm_ on both backends.

use std::process::Command;

use backprop::gpu::GpuPath;
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, Loss, MlpSpec, Params};
use ndarray::Array2;

use crate::common::{BOTH_PATHS, assert_close, gpu_model, random, rng};

fn data() -> (Array2<f32>, Array2<f32>) {
    let mut r = rng(31);
    (random(&mut r, 23, 5, 3.0).mapv(|v| v as f32), random(&mut r, 23, 3, 3.0).mapv(|v| v as f32))
}

#[test]
fn a_diverging_run_reports_its_first_bad_step_on_both_backends() {
    for path in BOTH_PATHS {
        diverge(path);
    }
}

/// A diverging run on the CPU backend and on the GPU's `path` step.
fn diverge(path: GpuPath) {
    let spec = MlpSpec::with_output(vec![5, 9, 3], Activation::Relu, Output::Identity, Loss::Mse).unwrap();
    let init = Params::init(&spec, 1);
    let (x, y) = data();
    let mut g = gpu_model(&spec, &init, path);
    let mut c = CpuBackend::new(spec, init).unwrap();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        b.set_data(x.view(), y.view()).unwrap();
        let order: Vec<usize> = (0..23).collect();
        b.run_steps(&order, 23, 0.01).unwrap();
        assert_eq!(b.diverged_at().unwrap(), None, "{}: a sane step", b.name());
        let (sum, bad) = b.take_epoch_stats().unwrap();
        assert!(sum.is_finite() && sum > 0.0 && bad.is_none(), "{}: epoch stats {sum} {bad:?}", b.name());
        // An absurd learning rate overflows the parameters within a few steps.
        for _ in 0..10 {
            b.run_steps(&order, 23, 1e30).unwrap();
        }
        let at = b.diverged_at().unwrap().unwrap_or_else(|| panic!("{}: divergence not detected", b.name()));
        assert!((2..=11).contains(&at), "{}: first bad step {at}", b.name());
        // The epoch's read-back gives the same step, and a loss sum that is no longer finite.
        let (sum, bad) = b.take_epoch_stats().unwrap();
        assert_eq!(bad, Some(at), "{}", b.name());
        assert!(!sum.is_finite(), "{}: loss sum {sum}", b.name());
        assert_eq!(b.take_loss_sum().unwrap(), 0.0, "{}: the sum was reset", b.name());
    }
}

#[test]
fn clipping_the_gradient_norm_matches_between_backends_and_changes_the_result() {
    let spec = MlpSpec::with_output(vec![5, 9, 3], Activation::Tanh, Output::Identity, Loss::Mse).unwrap();
    let init = Params::init(&spec, 2);
    let (x, y) = data();
    let momentum = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.01 };
    let run = |b: &mut dyn Backend, clip: Option<f32>| {
        b.set_optimizer(momentum).unwrap();
        b.set_grad_clip(clip).unwrap();
        b.set_data(x.view(), y.view()).unwrap();
        let order: Vec<usize> = (0..23).collect();
        for _ in 0..5 {
            b.run_steps(&order, 7, 0.05).unwrap();
        }
        b.params().unwrap().to_flat()
    };
    let cpu_clipped = run(&mut CpuBackend::new(spec.clone(), init.clone()).unwrap(), Some(0.05));
    let cpu_free = run(&mut CpuBackend::new(spec.clone(), init.clone()).unwrap(), None);
    let want: Vec<f64> = cpu_clipped.iter().map(|&v| v as f64).collect();
    for path in BOTH_PATHS {
        let gpu_clipped = run(&mut gpu_model(&spec, &init, path), Some(0.05));
        assert_close(&format!("clipped parameters, GPU ({path:?}) vs CPU"), &gpu_clipped, &want, 1e-5, 1e-4);
    }
    let moved = cpu_clipped.iter().zip(&cpu_free).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "clipping at 0.05 should change this run (largest difference {moved})");
    assert!(CpuBackend::new(spec, init).unwrap().set_grad_clip(Some(-1.0)).is_err());
}

#[test]
fn the_cli_stops_a_diverging_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let ck = dir.path().join("ck.safetensors");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_backprop")).args(args).env("XDG_RUNTIME_DIR", &xdg).output().unwrap()
    };
    let good = run(&["--backend", "cpu", "--epochs", "2", "--quiet", "--out", ck.to_str().unwrap()]);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let before = std::fs::read(&ck).unwrap();
    let bad = run(&[
        "--backend",
        "cpu",
        "--epochs",
        "3",
        "--quiet",
        "--optimizer",
        "sgd",
        "--lr",
        "1e12",
        "--loss",
        "mse",
        "--output",
        "identity",
        "--out",
        ck.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("training diverged at step") && err.contains("epoch 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&ck).unwrap(), before, "the good checkpoint was replaced");
    backprop::checkpoint::load(&ck).unwrap();
    let clipped = run(&["--backend", "cpu", "--epochs", "1", "--quiet", "--max-grad-norm", "1.0"]);
    assert!(clipped.status.success(), "{}", String::from_utf8_lossy(&clipped.stderr));
    let bad_clip = run(&["--backend", "cpu", "--epochs", "1", "--max-grad-norm", "0"]);
    assert!(!bad_clip.status.success() && String::from_utf8_lossy(&bad_clip.stderr).contains("--max-grad-norm"));
}
