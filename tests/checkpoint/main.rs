//! Checkpoints: bitwise round trips, the documented safetensors layout read with the `safetensors` crate
//! itself, bare PyTorch-style weights for `--init`, corrupt files (never a panic), predictions after a
//! reload on the CPU and the GPU, resuming from a checkpoint, and atomic writes. One binary: the fixtures
//! and the comparisons here, a module per topic.

#[path = "../common/mod.rs"]
mod common;

mod corrupt;
mod init;
mod layout;
mod metadata;
mod predict;
mod reading;
mod round_trip;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{Normalization, Normalizer, Task};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Loss, MlpSpec, Params};
use rand::RngExt;

use common::rng;

fn adam() -> OptimConfig {
    OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 }
}

fn momentum() -> OptimConfig {
    OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.1 }
}

/// 5-7-3, tanh hidden, softmax + cross-entropy. Biases are non-zero and a few awkward f32 values (negative
/// zero, a subnormal, the largest finite value, a value that is not a short decimal) are planted.
fn ce_model() -> Model {
    let spec = MlpSpec::with_output(vec![5, 7, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let mut params = Params::init(&spec, 21);
    let mut r = rng(22);
    for b in params.biases.iter_mut() {
        b.iter_mut().for_each(|v| *v = r.random_range(-1.0f32..1.0));
    }
    params.weights[0][[0, 0]] = -0.0;
    params.weights[0][[4, 6]] = f32::from_bits(1); // smallest subnormal
    params.weights[1][[6, 2]] = f32::MAX;
    params.biases[1][1] = 1.0 / 3.0;
    let normalizer = Normalizer {
        kind: Normalization::Standard,
        offset: vec![0.1, -2.5, 1.0 / 3.0, -0.0, 1e-30],
        scale: vec![1.0, 0.3, 7.25, f32::from_bits(0x3f80_0001), 123456.79],
    };
    Model { spec, params, normalizer: Some(normalizer), task: Some(Task::Classification { classes: 3 }) }
}

/// 4-6-5-2, relu hidden, sigmoid output, MSE; min-max normalisation; regression over 2 targets.
fn mse_model() -> Model {
    let spec = MlpSpec::with_output(vec![4, 6, 5, 2], Activation::Relu, Output::Sigmoid, Loss::Mse).unwrap();
    let mut params = Params::init(&spec, 31);
    let mut r = rng(32);
    for b in params.biases.iter_mut() {
        b.iter_mut().for_each(|v| *v = r.random_range(-0.5f32..0.5));
    }
    let normalizer =
        Normalizer { kind: Normalization::MinMax, offset: vec![-1.0, 0.0, 2.0, 1e-7], scale: vec![0.5, 1.0, 0.1, 3.0] };
    Model { spec, params, normalizer: Some(normalizer), task: Some(Task::Regression { targets: 2 }) }
}

/// An optimizer state with non-zero moments (v > 0), as after 17 steps.
fn state_for(cfg: &OptimConfig, n: usize, seed: u64) -> OptimState {
    let mut r = rng(seed);
    let mut s = OptimState::new(cfg, n);
    s.m.iter_mut().for_each(|v| *v = r.random_range(-0.1f32..0.1));
    s.v.iter_mut().for_each(|v| *v = r.random_range(1e-8f32..1e-2));
    if let Some(first) = s.m.first_mut() {
        *first = -0.0;
    }
    s.step = 17;
    s
}

fn training(model: &Model, cfg: OptimConfig) -> TrainingState {
    let n = model.spec.param_layout().len;
    TrainingState { optimizer: cfg, state: state_for(&cfg, n, 40), epoch: 3, seed: 9 }
}

fn save_load(dir: &Path, name: &str, ck: &Checkpoint) -> Checkpoint {
    let path = dir.join(name);
    checkpoint::save(&path, ck).unwrap_or_else(|e| panic!("saving {name}: {e}"));
    checkpoint::load(&path).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

fn valid_bytes() -> Vec<u8> {
    let m = ce_model();
    let t = training(&m, adam());
    checkpoint::to_bytes(&Checkpoint { model: m, training: Some(t) }).unwrap()
}

/// Runs `f`, turning a panic into a test failure that says what was being loaded.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked instead of returning an error: {msg}");
        }
    }
}

/// `load` of `path` must be an error whose message names the file.
fn assert_load_err(path: &Path, what: &str) -> String {
    let r = no_panic(what, || checkpoint::load(path));
    let e = match r {
        Ok(_) => panic!("{what}: load succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
    e
}
