//! The fast CPU backend (GEMM, threads, derivative from the output) against the f64 reference, at sizes
//! that take both its single-threaded and its multi-threaded paths.

use backprop::cpu;
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, Loss, MlpSpec, Params};

use super::common::reference::Reference;
use super::common::{assert_close, f32_exact, flat, random, rng};

/// `steps` steps on the backend and on the reference. `traced` steps through `traced_step`, which keeps the
/// gradients and checks them and the layers' values too; otherwise through `step`, where plain SGD runs fused
/// into the backward pass.
fn compare_steps(spec: &MlpSpec, cfg: OptimConfig, batch: usize, steps: usize, lr: f64, traced: bool) {
    let init = Params::init(spec, 5);
    let mut r = rng(5);
    let x = f32_exact(&random(&mut r, batch, spec.input_width(), 1.0));
    let o = spec.output_width();
    let y = match spec.loss() {
        Loss::Mse => f32_exact(&random(&mut r, batch, o, 1.0)),
        Loss::CrossEntropy => ndarray::Array2::from_shape_fn((batch, o), |(b, j)| if b % o == j { 1.0 } else { 0.0 }),
    };
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut backend = CpuBackend::new(spec.clone(), init.clone()).unwrap();
    backend.set_optimizer(cfg).unwrap();
    let mut reference = Reference::new(spec, &init, cfg, None);
    let name = format!(
        "{:?} {:?} {} batch {batch}{}",
        spec.sizes(),
        spec.activations()[0],
        cfg.kind.name(),
        if traced { " traced" } else { "" }
    );
    for step in 0..steps {
        let want = reference.step(x.view(), y.view(), lr);
        if !traced {
            let loss = backend.step(x32.view(), y32.view(), lr as f32, true).unwrap().expect("asked for the loss");
            assert_close(&format!("{name}: loss at step {step}"), &[loss], &[want.loss], 1e-6, 1e-4);
            continue;
        }
        let got = backend.traced_step(x32.view(), y32.view(), lr as f32).unwrap();
        assert_close(&format!("{name}: loss at step {step}"), &[got.loss], &[want.loss], 1e-6, 1e-4);
        if step == 0 {
            for l in 0..spec.layers() {
                let (a, d) = (got.post[l].as_slice().unwrap(), got.delta[l].as_slice().unwrap());
                assert_close(&format!("{name}: A{l}"), a, &flat(&want.post[l]), 1e-5, 1e-4);
                assert_close(&format!("{name}: delta{l}"), d, &flat(&want.delta[l]), 1e-6, 1e-3);
            }
            assert_close(&format!("{name}: gradients"), &got.grads.to_flat(), &want.grads.to_flat(), 1e-5, 1e-3);
        }
    }
    assert_close(&format!("{name}: parameters"), &backend.params().unwrap().to_flat(), &reference.flat, 1e-5, 1e-3);
    let pred = backend.predict(x32.view()).unwrap();
    let (_, post) = cpu::forward(spec, &reference.params(), x.view()).unwrap();
    let want: Vec<f64> = post[spec.layers() - 1].iter().copied().collect();
    assert_close(&format!("{name}: predictions"), pred.as_slice().unwrap(), &want, 1e-5, 1e-3);
}

fn compare(spec: &MlpSpec, cfg: OptimConfig, batch: usize, steps: usize, lr: f64) {
    compare_steps(spec, cfg, batch, steps, lr, true);
}

#[test]
fn small_shapes_on_one_thread_every_activation() {
    for act in Activation::ALL {
        let spec = MlpSpec::with_output(vec![7, 13, 5, 3], act, Output::Sigmoid, Loss::Mse).unwrap();
        compare(&spec, OptimConfig::sgd(), 11, 5, 0.1);
    }
    let spec = MlpSpec::with_output(vec![1, 1, 1], Activation::Tanh, Output::Identity, Loss::Mse).unwrap();
    compare(&spec, OptimConfig::sgd(), 1, 5, 0.1);
}

#[test]
fn large_shapes_take_the_threaded_paths() {
    // 300·257 activations pass the elementwise threshold; 300·257·129 passes the GEMM one.
    let adam = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 };
    let spec =
        MlpSpec::with_output(vec![129, 257, 131, 10], Activation::Relu, Output::Softmax, Loss::CrossEntropy).unwrap();
    compare(&spec, adam, 300, 3, 0.001);
    let momentum = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 };
    let spec = MlpSpec::with_output(vec![129, 257, 7], Activation::Sigmoid, Output::Identity, Loss::Mse).unwrap();
    compare(&spec, momentum, 300, 3, 0.01);
}

#[test]
fn plain_sgd_fused_into_the_backward_pass_matches_the_reference() {
    // `step` with plain SGD adds −lr·A_prevᵀ·δ into W in the GEMM and never writes the weight gradients.
    let spec = MlpSpec::with_output(vec![7, 13, 5, 3], Activation::Sigmoid, Output::Sigmoid, Loss::Mse).unwrap();
    compare_steps(&spec, OptimConfig::sgd(), 11, 5, 0.1, false);
    let spec = MlpSpec::with_output(vec![1, 1, 1], Activation::Tanh, Output::Identity, Loss::Mse).unwrap();
    compare_steps(&spec, OptimConfig::sgd(), 1, 5, 0.1, false);
    // threaded GEMM, softmax output
    let spec =
        MlpSpec::with_output(vec![129, 257, 131, 10], Activation::Relu, Output::Softmax, Loss::CrossEntropy).unwrap();
    compare_steps(&spec, OptimConfig::sgd(), 300, 3, 0.05, false);
    // weight decay and momentum keep the separate optimizer pass, through `step` as well
    let wd = OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.01 };
    let spec = MlpSpec::with_output(vec![129, 257, 7], Activation::Sigmoid, Output::Identity, Loss::Mse).unwrap();
    compare_steps(&spec, wd, 300, 3, 0.05, false);
    let momentum = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 };
    compare_steps(&spec, momentum, 300, 3, 0.05, false);
}

#[test]
fn the_cpu_backend_is_deterministic() {
    let spec = MlpSpec::with_output(vec![129, 257, 10], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let run = || {
        let mut b = CpuBackend::new(spec.clone(), Params::init(&spec, 3)).unwrap();
        let mut r = rng(3);
        let x = random(&mut r, 300, 129, 1.0).mapv(|v| v as f32);
        let y = ndarray::Array2::from_shape_fn((300, 10), |(i, j)| if i % 10 == j { 1.0f32 } else { 0.0 });
        for _ in 0..3 {
            b.step(x.view(), y.view(), 0.05, false).unwrap();
        }
        b.params().unwrap().to_flat()
    };
    let (a, b) = (run(), run());
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "two identical runs differ");
}

#[test]
fn fast_exp_is_within_a_few_ulp_of_exp() {
    let mut worst = 0.0f64;
    let mut x = -104.0f32;
    while x < 89.0 {
        let got = backprop::cpu_fast::fast_exp(x) as f64;
        let want = (x as f64).exp();
        if (-87.3..=88.7).contains(&x) {
            worst = worst.max(((got - want) / want).abs());
        }
        x += 0.001_37;
    }
    assert!(worst < 4.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
    assert_eq!(backprop::cpu_fast::fast_exp(-200.0), 0.0);
    assert_eq!(backprop::cpu_fast::fast_exp(0.0), 1.0);
    assert!(backprop::cpu_fast::fast_exp(200.0).is_infinite() || backprop::cpu_fast::fast_exp(200.0) > 1e38);
    assert!(backprop::cpu_fast::fast_exp(f32::NAN).is_nan(), "NaN must survive, or divergence would go unseen");
    assert_eq!(backprop::cpu_fast::fast_exp(f32::INFINITY), f32::INFINITY);
    assert_eq!(backprop::cpu_fast::fast_exp(f32::NEG_INFINITY), 0.0);
}
