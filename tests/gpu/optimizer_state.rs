//! Optimizers on whole backends: the CPU and the GPU agree step by step, resuming from a saved optimizer
//! state is the same as never stopping, and `set_optimizer` / `set_optimizer_state` reset and check.

use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;

use crate::common::{BOTH_PATHS, assert_close, bits, gpu, gpu_model, random, rng, to_f64};

const ADAM: OptimizerKind = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const MOMENTUM: OptimizerKind = OptimizerKind::Momentum { momentum: 0.9 };

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

fn spec_5_11_3(loss: Loss) -> MlpSpec {
    match loss {
        Loss::CrossEntropy => {
            MlpSpec::with_output(vec![5, 11, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap()
        }
        Loss::Mse => MlpSpec::with_output(vec![5, 11, 3], Activation::Tanh, Output::Sigmoid, Loss::Mse).unwrap(),
    }
}

/// A batch of 7 for `spec`.
fn batch7(spec: &MlpSpec, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut r = rng(seed);
    let x = random(&mut r, 7, spec.input_width(), 1.0).mapv(|v| v as f32);
    let o = spec.output_width();
    let y = match spec.loss() {
        Loss::CrossEntropy => Array2::from_shape_fn((7, o), |(b, j)| if (b * 2 + 1) % o == j { 1.0 } else { 0.0 }),
        Loss::Mse => random(&mut r, 7, o, 1.0).mapv(|v| (v * 0.4 + 0.5) as f32),
    };
    (x, y)
}

#[test]
fn cpu_and_gpu_backends_agree_for_adam_and_momentum() {
    let cases = [
        (Loss::CrossEntropy, OptimConfig { kind: ADAM, weight_decay: 0.0 }, 0.01f32),
        (Loss::CrossEntropy, OptimConfig { kind: MOMENTUM, weight_decay: 0.0 }, 0.1),
        (Loss::Mse, OptimConfig { kind: ADAM, weight_decay: 0.01 }, 0.01),
        (Loss::Mse, OptimConfig { kind: MOMENTUM, weight_decay: 0.1 }, 0.1),
    ];
    for ((loss, cfg, lr), path) in cases.into_iter().flat_map(|c| BOTH_PATHS.map(|p| (c, p))) {
        let spec = spec_5_11_3(loss);
        let init = Params::init(&spec, 77);
        let (x, y) = batch7(&spec, 78);
        let mut cpu = CpuBackend::new(spec.clone(), init.clone()).unwrap();
        let mut gpu_b = gpu_model(&spec, &init, path);
        cpu.set_optimizer(cfg).unwrap();
        gpu_b.set_optimizer(cfg).unwrap();
        assert_eq!(gpu_b.optimizer(), cfg);
        let name = format!("{} {} wd={} ({path:?})", loss.name(), cfg.kind.name(), cfg.weight_decay);
        for step in 0..10 {
            let lc = cpu.step(x.view(), y.view(), lr, true).unwrap().unwrap();
            let lg = gpu_b.step(x.view(), y.view(), lr, true).unwrap().unwrap();
            assert_close(&format!("{name}: loss at step {step}"), &[lg], &[lc as f64], ATOL, RTOL);
        }
        let (pc, pg) = (cpu.params().unwrap(), gpu_b.params().unwrap());
        assert_close(&format!("{name}: parameters"), &pg.to_flat(), &to_f64(&pc.to_flat()), ATOL, RTOL);
        // The parameters really moved.
        let moved = pc.to_flat().iter().zip(init.to_flat()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "{name}: the parameters barely moved ({moved})");

        let (sc, sg) = (cpu.optimizer_state().unwrap(), gpu_b.optimizer_state().unwrap());
        assert_eq!((sc.step, sg.step), (10, 10), "{name}: step counts");
        let n = spec.param_layout().len;
        assert_eq!(sc.m.len(), n);
        assert_eq!(sg.m.len(), n);
        assert_close(&format!("{name}: m"), &sg.m, &to_f64(&sc.m), ATOL, RTOL);
        if cfg.state_vectors() == 2 {
            assert_eq!(sg.v.len(), n);
            assert_close(&format!("{name}: v"), &sg.v, &to_f64(&sc.v), 1e-9, 1e-3);
        } else {
            assert!(sc.v.is_empty() && sg.v.is_empty(), "{name}: momentum keeps no v");
        }
    }
}

/// 10 steps straight, or 4 steps, a state save, a fresh backend (params + optimizer + state), 6 steps.
fn straight_and_resumed<B: Backend>(
    spec: &MlpSpec,
    make: &dyn Fn(&Params<f32>) -> B,
    cfg: OptimConfig,
    x: &Array2<f32>,
    y: &Array2<f32>,
    lr: f32,
) -> [(Params<f32>, OptimState); 3] {
    let init = Params::init(spec, 91);
    let mut a = make(&init);
    a.set_optimizer(cfg).unwrap();
    for _ in 0..10 {
        a.step(x.view(), y.view(), lr, false).unwrap();
    }
    let mut b = make(&init);
    b.set_optimizer(cfg).unwrap();
    for _ in 0..4 {
        b.step(x.view(), y.view(), lr, false).unwrap();
    }
    let (params, state) = (b.params().unwrap(), b.optimizer_state().unwrap());
    assert_eq!(state.step, 4);
    let mut c = make(&params);
    c.set_optimizer(cfg).unwrap();
    c.set_optimizer_state(&state).unwrap();
    assert_eq!(c.optimizer_state().unwrap(), state, "set_optimizer_state then optimizer_state");
    for _ in 0..6 {
        c.step(x.view(), y.view(), lr, false).unwrap();
    }
    // Without restoring the state, resuming is not the same (the check above is sensitive to it).
    let mut d = make(&params);
    d.set_optimizer(cfg).unwrap();
    for _ in 0..6 {
        d.step(x.view(), y.view(), lr, false).unwrap();
    }
    [
        (a.params().unwrap(), a.optimizer_state().unwrap()),
        (c.params().unwrap(), c.optimizer_state().unwrap()),
        (d.params().unwrap(), d.optimizer_state().unwrap()),
    ]
}

#[test]
fn resuming_from_the_optimizer_state_is_exact_on_the_cpu() {
    let spec = spec_5_11_3(Loss::CrossEntropy);
    let (x, y) = batch7(&spec, 92);
    for (cfg, lr) in [
        (OptimConfig { kind: ADAM, weight_decay: 0.0 }, 0.01f32),
        (OptimConfig { kind: MOMENTUM, weight_decay: 0.01 }, 0.1),
    ] {
        let make = |p: &Params<f32>| CpuBackend::new(spec.clone(), p.clone()).unwrap();
        let [straight, resumed, fresh] = straight_and_resumed(&spec, &make, cfg, &x, &y, lr);
        let name = cfg.kind.name();
        assert_eq!(bits(&resumed.0.to_flat()), bits(&straight.0.to_flat()), "{name}: resumed parameters");
        assert_eq!(bits(&resumed.1.m), bits(&straight.1.m), "{name}: resumed m");
        assert_eq!(bits(&resumed.1.v), bits(&straight.1.v), "{name}: resumed v");
        assert_eq!(resumed.1.step, 10);
        assert_ne!(bits(&fresh.0.to_flat()), bits(&straight.0.to_flat()), "{name}: a reset optimizer differs");
    }
}

#[test]
fn resuming_from_the_optimizer_state_on_the_gpu_is_exact() {
    let spec = spec_5_11_3(Loss::CrossEntropy);
    let (x, y) = batch7(&spec, 93);
    let cases = [
        (OptimConfig { kind: ADAM, weight_decay: 0.0 }, 0.01f32),
        (OptimConfig { kind: MOMENTUM, weight_decay: 0.01 }, 0.1),
    ];
    for ((cfg, lr), path) in cases.into_iter().flat_map(|c| BOTH_PATHS.map(|p| (c, p))) {
        let make = |p: &Params<f32>| gpu_model(&spec, p, path);
        let [straight, resumed, fresh] = straight_and_resumed(&spec, &make, cfg, &x, &y, lr);
        let name = format!("gpu {} ({path:?})", cfg.kind.name());
        assert_eq!(bits(&resumed.0.to_flat()), bits(&straight.0.to_flat()), "{name}: resumed parameters");
        assert_eq!(bits(&resumed.1.m), bits(&straight.1.m), "{name}: resumed m");
        assert_eq!(bits(&resumed.1.v), bits(&straight.1.v), "{name}: resumed v");
        assert_eq!(resumed.1.step, 10);
        let differs = fresh.0.to_flat().iter().zip(straight.0.to_flat()).any(|(a, b)| (a - b).abs() > 1e-4);
        assert!(differs, "{name}: a reset optimizer should differ");
    }
}

#[test]
fn set_optimizer_resets_the_state_and_set_optimizer_state_checks_lengths() {
    let spec = spec_5_11_3(Loss::Mse);
    let init = Params::init(&spec, 5);
    let (x, y) = batch7(&spec, 6);
    let n = spec.param_layout().len;
    let adam = OptimConfig { kind: ADAM, weight_decay: 0.0 };
    let mut backends: Vec<Box<dyn Backend>> = vec![
        Box::new(CpuBackend::new(spec.clone(), init.clone()).unwrap()),
        Box::new(GpuMlp::new(gpu(), spec.clone(), &init).unwrap()),
    ];
    for b in backends.iter_mut() {
        let name = b.name();
        // SGD until told otherwise: no state vectors.
        assert_eq!(b.optimizer(), OptimConfig::sgd());
        let s = b.optimizer_state().unwrap();
        assert!(s.m.is_empty() && s.v.is_empty() && s.step == 0, "{name}: {s:?}");
        b.set_optimizer(adam).unwrap();
        for _ in 0..3 {
            b.step(x.view(), y.view(), 0.01, false).unwrap();
        }
        let s = b.optimizer_state().unwrap();
        assert_eq!(s.step, 3);
        assert!(s.m.iter().any(|&v| v != 0.0) && s.v.iter().any(|&v| v > 0.0), "{name}: moments after 3 steps");
        // set_optimizer resets.
        b.set_optimizer(adam).unwrap();
        let s = b.optimizer_state().unwrap();
        assert_eq!(s, OptimState { m: vec![0.0; n], v: vec![0.0; n], step: 0 }, "{name}: after set_optimizer");
        // Wrong lengths are rejected.
        for bad in [
            OptimState { m: vec![0.0; n - 1], v: vec![0.0; n], step: 1 },
            OptimState { m: vec![0.0; n], v: vec![], step: 1 },
            OptimState { m: vec![], v: vec![], step: 1 },
        ] {
            assert!(b.set_optimizer_state(&bad).is_err(), "{name}: {} / {} accepted", bad.m.len(), bad.v.len());
        }
        b.set_optimizer(OptimConfig { kind: MOMENTUM, weight_decay: 0.0 }).unwrap();
        assert!(b.set_optimizer_state(&OptimState { m: vec![0.0; n], v: vec![0.0; n], step: 1 }).is_err());
        b.set_optimizer_state(&OptimState { m: vec![0.5; n], v: vec![], step: 8 }).unwrap();
        assert_eq!(b.optimizer_state().unwrap(), OptimState { m: vec![0.5; n], v: vec![], step: 8 }, "{name}");
    }
}
