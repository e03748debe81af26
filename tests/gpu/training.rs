//! Whole training runs: the GPU model against the CPU reference from the same initial weights, on the
//! unfused step and on the fused one.

use backprop::cpu;
use backprop::gpu::GpuPath;
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;

use crate::common::reference::Reference;
use crate::common::{BOTH_PATHS, assert_close, f32_exact, gpu, gpu_model, random, rng, to_f64};

/// `steps` SGD steps on GPU and on the f64 reference from the same start; losses and parameters agree.
fn train_and_compare(sizes: &[usize], acts: &[Activation], batch: usize, steps: usize, lr: f64, seed: u64) {
    let spec = MlpSpec::new(sizes.to_vec(), acts.to_vec(), Loss::Mse).unwrap();
    compare_runs(&spec, OptimConfig::sgd(), batch, steps, lr, seed);
}

/// Targets for `spec`: one-hot rows for cross-entropy, values in (0, 1) for MSE.
fn targets(spec: &MlpSpec, r: &mut rand_chacha::ChaCha8Rng, batch: usize) -> Array2<f64> {
    let o = spec.output_width();
    match spec.loss() {
        Loss::Mse => random(r, batch, o, 1.0).mapv(|v| (v as f32 * 0.5 + 0.5) as f64),
        Loss::CrossEntropy => Array2::from_shape_fn((batch, o), |(b, j)| if (b * 7 + 3) % o == j { 1.0 } else { 0.0 }),
    }
}

/// `steps` optimizer steps on the GPU and on the f64 reference from the same start, on the same batch:
/// every loss, the final parameters, both optimizer state vectors and the loss summed on the GPU agree.
/// On each GPU step.
fn compare_runs(spec: &MlpSpec, cfg: OptimConfig, batch: usize, steps: usize, lr: f64, seed: u64) {
    for path in BOTH_PATHS {
        compare_run(spec, cfg, (batch, steps, lr, seed), path);
    }
}

fn compare_run(spec: &MlpSpec, cfg: OptimConfig, (batch, steps, lr, seed): (usize, usize, f64, u64), path: GpuPath) {
    let sizes = spec.sizes().to_vec();
    let init = Params::init(spec, seed);
    let mut r = rng(seed);
    let x = f32_exact(&random(&mut r, batch, sizes[0], 1.0));
    let y = targets(spec, &mut r, batch);
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut reference = Reference::new(spec, &init, cfg, None);
    let mut model = gpu_model(spec, &init, path);
    model.set_optimizer(cfg).unwrap();
    let mut loss_sum = 0.0;
    for step in 0..steps {
        let t = reference.step(x.view(), y.view(), lr);
        loss_sum += t.loss * batch as f64;
        let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().expect("asked for the loss");
        let what = format!("{path:?} {sizes:?} {} loss at step {step}", cfg.kind.name());
        assert_close(&what, &[got], &[t.loss], 1e-6, 1e-4);
    }
    assert_eq!(model.path_for(batch), Some(path));
    let name = format!("{path:?} {sizes:?} {} {}", spec.loss().name(), cfg.kind.name());
    let params = model.params().unwrap();
    assert_close(&format!("{name}: parameters after {steps} steps"), &params.to_flat(), &reference.flat, 1e-5, 1e-3);
    let state = model.optimizer_state().unwrap();
    assert_eq!(state.step, steps as u64);
    if cfg.state_vectors() >= 1 {
        assert_close(&format!("{name}: first state vector"), &state.m, &reference.m, 1e-6, 1e-3);
    }
    if cfg.state_vectors() >= 2 {
        assert_close(&format!("{name}: second state vector"), &state.v, &reference.v, 1e-9, 1e-3);
    }
    // The loss summed on the GPU over the run is the sum of the per-step losses times the batch.
    let got_sum = model.take_loss_sum().unwrap();
    assert_close(&format!("{name}: loss summed on the GPU"), &[got_sum as f32], &[loss_sum], 1e-5, 1e-4);
    assert_eq!(model.take_loss_sum().unwrap(), 0.0, "take_loss_sum resets the sum");
}

#[test]
fn cross_entropy_with_adam_momentum_and_weight_decay() {
    let adam = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 };
    let momentum = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 };
    let spec = MlpSpec::with_output(vec![9, 17, 5, 10], Activation::Relu, Output::Softmax, Loss::CrossEntropy).unwrap();
    compare_runs(&spec, adam, 13, 20, 0.01, 11);
    compare_runs(&spec, momentum, 33, 20, 0.05, 12);
    let spec = MlpSpec::with_output(vec![3, 5, 1], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    compare_runs(&spec, OptimConfig::sgd(), 1, 20, 0.1, 13);
}

#[test]
fn mse_with_every_optimizer_and_a_sigmoid_output() {
    let spec = MlpSpec::with_output(vec![6, 31, 7, 2], Activation::Sigmoid, Output::Sigmoid, Loss::Mse).unwrap();
    for kind in ["sgd", "momentum", "adam"] {
        let cfg = OptimConfig { kind: OptimizerKind::default_for(kind).unwrap(), weight_decay: 0.001 };
        compare_runs(&spec, cfg, 37, 20, 0.02, 14);
    }
}

#[test]
fn twenty_five_steps_of_a_four_layer_sigmoid_network() {
    train_and_compare(&[7, 13, 5, 3, 2], &[Activation::Sigmoid; 4], 11, 25, 0.5, 1);
}

#[test]
fn mixed_activations_and_a_batch_past_the_tile() {
    let acts = [Activation::Tanh, Activation::Relu, Activation::Identity, Activation::Sigmoid];
    train_and_compare(&[33, 31, 17, 65, 1], &acts, 37, 20, 0.1, 2);
}

#[test]
fn widths_and_batch_of_one() {
    train_and_compare(&[1, 1, 1, 1], &[Activation::Tanh, Activation::Sigmoid, Activation::Identity], 1, 20, 0.3, 3);
}

#[test]
fn loss_is_only_read_when_asked_and_steps_without_it_still_train() {
    let spec = MlpSpec::uniform(vec![4, 6, 3], Activation::Sigmoid, Loss::Mse).unwrap();
    let init = Params::init(&spec, 9);
    let mut r = rng(9);
    let x = random(&mut r, 5, 4, 1.0).mapv(|v| v as f32);
    let y = random(&mut r, 5, 3, 1.0).mapv(|v| v as f32);
    let mut g = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    let mut c = CpuBackend::new(spec, init).unwrap();
    for _ in 0..20 {
        assert_eq!(g.step(x.view(), y.view(), 0.2, false).unwrap(), None);
        c.step(x.view(), y.view(), 0.2, false).unwrap();
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    assert_close("params after 20 silent steps", &gp.to_flat(), &to_f64(&cp.to_flat()), 1e-5, 1e-4);
    // Predictions agree too, at a batch size the model has not seen yet.
    let x2 = random(&mut r, 3, 4, 1.0).mapv(|v| v as f32);
    let (pg, pc) = (g.predict(x2.view()).unwrap(), c.predict(x2.view()).unwrap());
    assert_close("predictions", pg.as_slice().unwrap(), &pc.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-6, 1e-5);
}

#[test]
fn traced_step_matches_the_reference_tensor_by_tensor() {
    let spec = MlpSpec::new(vec![5, 9, 3], vec![Activation::Relu, Activation::Sigmoid], Loss::Mse).unwrap();
    let init = Params::init(&spec, 4);
    let mut r = rng(4);
    let x = f32_exact(&random(&mut r, 6, 5, 1.0));
    let y = f32_exact(&random(&mut r, 6, 3, 1.0));
    let mut reference = init.to_f64();
    let want = cpu::sgd_step(&spec, &mut reference, x.view(), y.view(), 0.1).unwrap();
    // The unfused step's trace (the fused step's: tests/gpu/fused_training.rs).
    let mut model = gpu_model(&spec, &init, GpuPath::Unfused);
    let got = model.traced_step(x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view(), 0.1).unwrap();
    let v = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();
    for l in 0..2 {
        assert_close(&format!("Z{l}"), got.pre[l].as_slice().unwrap(), &v(&want.pre[l]), 1e-5, 1e-4);
        assert_close(&format!("A{l}"), got.post[l].as_slice().unwrap(), &v(&want.post[l]), 1e-5, 1e-4);
        assert_close(&format!("delta{l}"), got.delta[l].as_slice().unwrap(), &v(&want.delta[l]), 1e-6, 1e-4);
    }
    assert_close("grads", &got.grads.to_flat(), &want.grads.to_flat(), 1e-6, 1e-4);
    assert_close("loss", &[got.loss], &[want.loss], 1e-7, 1e-5);
}

#[test]
fn wrong_shapes_are_errors_on_the_gpu_too() {
    let spec = MlpSpec::uniform(vec![3, 2], Activation::Sigmoid, Loss::Mse).unwrap();
    let mut g = GpuMlp::new(gpu(), spec.clone(), &Params::init(&spec, 1)).unwrap();
    let x = Array2::<f32>::zeros((4, 5));
    let y = Array2::<f32>::zeros((4, 2));
    let e = g.step(x.view(), y.view(), 0.1, true).unwrap_err();
    assert!(matches!(e, backprop::Error::Shape { .. }), "{e}");
    let x = Array2::<f32>::zeros((0, 3));
    assert!(g.predict(x.view()).is_err());
    let other = MlpSpec::uniform(vec![3, 4], Activation::Sigmoid, Loss::Mse).unwrap();
    assert!(GpuMlp::new(gpu(), spec, &Params::init(&other, 1)).is_err());
}

#[test]
fn resident_data_and_many_steps_per_submit_match_the_cpu_backend() {
    // 53 rows in batches of 8: six full batches and a partial one per call, rows in a shuffled order.
    let spec = MlpSpec::with_output(vec![6, 19, 4], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let init = Params::init(&spec, 21);
    let mut r = rng(21);
    let x = random(&mut r, 53, 6, 1.0).mapv(|v| v as f32);
    let y = Array2::from_shape_fn((53, 4), |(i, j)| if (i * 5) % 4 == j { 1.0f32 } else { 0.0 });
    let adam = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 };
    for path in BOTH_PATHS {
        resident_adam(&spec, &init, (&x, &y), adam, path);
    }
}

/// Two calls of `run_steps` with Adam on the `path` step against the CPU backend.
fn resident_adam(
    spec: &MlpSpec,
    init: &Params<f32>,
    (x, y): (&Array2<f32>, &Array2<f32>),
    adam: OptimConfig,
    path: GpuPath,
) {
    let mut g = gpu_model(spec, init, path);
    let mut c = CpuBackend::new(spec.clone(), init.clone()).unwrap();
    let order: Vec<usize> = (0..53).map(|i| (i * 17) % 53).collect();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        b.set_optimizer(adam).unwrap();
        b.set_data(x.view(), y.view()).unwrap();
        for lr in [0.01, 0.005] {
            b.run_steps(&order, 8, lr).unwrap();
        }
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    assert_close(
        &format!("{path:?}: params after 14 resident steps"),
        &gp.to_flat(),
        &to_f64(&cp.to_flat()),
        1e-5,
        1e-4,
    );
    assert_eq!(g.optimizer_state().unwrap().step, 14);
    assert_eq!((g.path_for(8), g.path_for(5)), (Some(path), Some(path)));
    let (gl, cl) = (g.take_loss_sum().unwrap(), c.take_loss_sum().unwrap());
    assert_close(&format!("{path:?}: loss summed over the steps"), &[gl as f32], &[cl], 1e-5, 1e-4);
    // A row index past the data is an error, not a GPU fault.
    assert!(g.run_steps(&[53], 8, 0.01).is_err());
}

/// Plain SGD runs fused into the backward pass on both backends; with resident data, a partial last batch
/// (a second batch size, so a second plan) and the learning rate changing between calls.
#[test]
fn resident_data_with_fused_sgd_matches_the_cpu_backend() {
    let spec = MlpSpec::with_output(vec![6, 19, 7, 3], Activation::Sigmoid, Output::Sigmoid, Loss::Mse).unwrap();
    let init = Params::init(&spec, 22);
    let mut r = rng(22);
    let x = random(&mut r, 29, 6, 1.0).mapv(|v| v as f32);
    let y = random(&mut r, 29, 3, 1.0).mapv(|v| (v as f32).abs());
    let mut g = gpu_model(&spec, &init, GpuPath::Unfused); // SGD fused into the unfused step's backward pass
    let mut c = CpuBackend::new(spec, init).unwrap();
    let order: Vec<usize> = (0..29).map(|i| (i * 11) % 29).collect();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        b.set_data(x.view(), y.view()).unwrap();
        for lr in [0.5, 0.5, 0.25, 1.0] {
            b.run_steps(&order, 8, lr).unwrap();
        }
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    assert_close("params after 16 fused SGD steps", &gp.to_flat(), &to_f64(&cp.to_flat()), 1e-5, 1e-4);
    assert_eq!(g.optimizer_state().unwrap().step, 16);
    let (gl, cl) = (g.take_loss_sum().unwrap(), c.take_loss_sum().unwrap());
    assert_close("loss summed over the fused steps", &[gl as f32], &[cl], 1e-5, 1e-4);
}

/// The checks of `run_steps` are shared: a batch of 0 rows is an error on both backends (it used to train
/// one-row batches on the CPU and do nothing on the GPU), as are rows past the data and too many rows.
#[test]
fn run_steps_refuses_the_same_arguments_on_both_backends() {
    let spec = MlpSpec::uniform(vec![3, 4, 2], Activation::Tanh, Loss::Mse).unwrap();
    let init = Params::init(&spec, 1);
    let x = Array2::<f32>::zeros((5, 3));
    let y = Array2::<f32>::zeros((5, 2));
    let mut g = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    let mut c = CpuBackend::new(spec, init.clone()).unwrap();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        let e = b.run_steps(&[0, 1], 1, 0.1).unwrap_err().to_string();
        assert!(e.contains("set_data"), "{}: {e}", b.name());
        b.set_data(x.view(), y.view()).unwrap();
        let e = b.run_steps(&[0, 1, 2], 0, 0.1).unwrap_err().to_string();
        assert!(e.contains("batch size must be at least 1"), "{}: {e}", b.name());
        assert!(b.run_steps(&[5], 2, 0.1).is_err(), "{}: a row past the data", b.name());
        assert!(b.run_steps(&[0; 6], 2, 0.1).is_err(), "{}: more rows than the data has", b.name());
        b.run_steps(&[], 2, 0.1).unwrap();
        assert_eq!(b.optimizer_state().unwrap().step, 0, "{}: nothing ran", b.name());
        assert_eq!(b.params().unwrap(), init, "{}: nothing ran", b.name());
    }
}

/// The step counter stops at the same place on both backends: `optim::MAX_STEPS` (the GPU counts in 32
/// bits). A state at the limit is taken; a step past it, or a state beyond it, is an error that names it.
#[test]
fn the_step_counter_has_the_same_limit_on_both_backends() {
    use backprop::optim::{MAX_STEPS, OptimState};
    let spec = MlpSpec::uniform(vec![3, 2], Activation::Sigmoid, Loss::Mse).unwrap();
    let init = Params::init(&spec, 2);
    let (x, y) = (Array2::<f32>::zeros((2, 3)), Array2::<f32>::zeros((2, 2)));
    let mut g = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    let mut c = CpuBackend::new(spec, init).unwrap();
    for b in [&mut g as &mut dyn Backend, &mut c] {
        let name = b.name();
        let beyond = OptimState { m: vec![], v: vec![], step: MAX_STEPS + 1 };
        let e = b.set_optimizer_state(&beyond).unwrap_err().to_string();
        assert!(e.contains(&MAX_STEPS.to_string()), "{name}: {e}");
        b.set_optimizer_state(&OptimState { m: vec![], v: vec![], step: MAX_STEPS - 1 }).unwrap();
        b.step(x.view(), y.view(), 0.1, false).unwrap();
        assert_eq!(b.optimizer_state().unwrap().step, MAX_STEPS, "{name}");
        let before = b.params().unwrap();
        let e = b.step(x.view(), y.view(), 0.1, false).unwrap_err().to_string();
        assert!(e.contains(&MAX_STEPS.to_string()), "{name}: {e}");
        b.set_data(x.view(), y.view()).unwrap();
        assert!(b.run_steps(&[0, 1], 1, 0.1).is_err(), "{name}: run_steps past the limit");
        assert_eq!(b.params().unwrap(), before, "{name}: nothing ran past the limit");
        assert_eq!(b.optimizer_state().unwrap().step, MAX_STEPS, "{name}");
    }
}
