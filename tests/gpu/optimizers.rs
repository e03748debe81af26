//! Optimizers against numbers worked out by hand with PyTorch's formulas, on the CPU (`optim::update` in
//! f64 and f32) and on the GPU (`ops::optimizer`).

use backprop::gpu::structs::StepState;
use backprop::gpu::{GpuContext, buffer, ops};
use backprop::model::Real;
use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars};

use crate::common::gpu;

const ADAM: OptimizerKind = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const MOMENTUM: OptimizerKind = OptimizerKind::Momentum { momentum: 0.9 };

/// The gradient sequence every single-parameter test uses.
const GRADS: [f64; 3] = [0.5, -0.25, 1.0];

/// What one step leaves: θ and the state vectors (m: momentum buffer or first moment; v: second moment).
#[derive(Clone, Copy, Debug)]
struct After {
    theta: f64,
    m: f64,
    v: f64,
}

/// Runs `optim::update` in `T` (f64 or f32) on one parameter over `grads` and returns the state after each
/// step.
fn cpu_run<T: Real>(cfg: &OptimConfig, theta0: f64, grads: &[f64], lr: f64) -> Vec<After> {
    let c = |x: f64| T::from_f64(x).expect("a finite value");
    let (mut p, mut m, mut v) = ([c(theta0)], [T::zero()], [T::zero()]);
    let k = cfg.state_vectors();
    let mut out = Vec::new();
    for (t, &g) in grads.iter().enumerate() {
        let s = StepScalars::new(cfg, lr, t as u64 + 1);
        let (ms, vs): (&mut [T], &mut [T]) = match k {
            0 => (&mut [], &mut []),
            1 => (&mut m, &mut []),
            _ => (&mut m, &mut v),
        };
        optim::update(cfg, &mut p, &[c(g)], ms, vs, s);
        let f = |x: T| x.to_f64().expect("a float");
        out.push(After { theta: f(p[0]), m: f(m[0]), v: f(v[0]) });
    }
    out
}

fn read(ctx: &GpuContext, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    buffer::read(ctx, b, 0, n).unwrap()
}

/// Runs the GPU kernel on `theta0` (one or more parameters) with one gradient vector per step; returns
/// (θ, m, v) after each step. Unused state buffers hold NaN and must stay NaN.
fn gpu_run(cfg: &OptimConfig, theta0: &[f32], grads: &[Vec<f32>], lr: f64) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let ctx = gpu();
    let n = theta0.len();
    let k = cfg.state_vectors();
    let pb = buffer::storage_init(&ctx, "params", theta0).unwrap();
    let state = |used: bool| if used { vec![0.0f32; n] } else { vec![f32::NAN] };
    let mb = buffer::storage_init(&ctx, "m", &state(k >= 1)).unwrap();
    let vb = buffer::storage_init(&ctx, "v", &state(k >= 2)).unwrap();
    // The step count and Adam's bias corrections live on the GPU.
    let sc = buffer::storage_struct(&ctx, "step state", &StepState::START).unwrap();
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        assert_eq!(g.len(), n);
        let gb = buffer::storage_init(&ctx, "grads", g).unwrap();
        let _ = t;
        let loss = buffer::storage_init(&ctx, "loss", &[0.0, 0.0]).unwrap();
        let partials = buffer::storage(&ctx, "partials", 1).unwrap();
        let state = ops::OptimBuffers { m: Some(&mb), v: Some(&vb), step: &sc, loss: &loss, partials: &partials };
        let d = ops::optimizer(&ctx, cfg, n, lr as f32, None, &gb, &pb, state).unwrap();
        ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
        let m = if k >= 1 { read(&ctx, &mb, n) } else { Vec::new() };
        let v = if k >= 2 { read(&ctx, &vb, n) } else { Vec::new() };
        if k < 1 {
            assert!(read(&ctx, &mb, 1)[0].is_nan(), "{}: the spare m buffer was written", cfg.kind.name());
        }
        if k < 2 {
            assert!(read(&ctx, &vb, 1)[0].is_nan(), "{}: the spare v buffer was written", cfg.kind.name());
        }
        out.push((read(&ctx, &pb, n), m, v));
    }
    out
}

fn gpu_single(cfg: &OptimConfig, theta0: f64, grads: &[f64], lr: f64) -> Vec<After> {
    let g: Vec<Vec<f32>> = grads.iter().map(|&g| vec![g as f32]).collect();
    gpu_run(cfg, &[theta0 as f32], &g, lr)
        .into_iter()
        .map(|(p, m, v)| After {
            theta: p[0] as f64,
            m: m.first().map_or(0.0, |&x| x as f64),
            v: v.first().map_or(0.0, |&x| x as f64),
        })
        .collect()
}

/// Compares every step of `got` with the hand-computed `want` (θ, m, v) within `tol` (absolute, plus the
/// same relative to the value).
fn check(what: &str, got: &[After], want: &[(f64, f64, f64)], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: step count");
    for (t, (g, &(theta, m, v))) in got.iter().zip(want).enumerate() {
        let close = |a: f64, b: f64| (a - b).abs() <= tol * (1.0 + b.abs());
        assert!(close(g.theta, theta), "{what}: step {}: θ = {} but by hand {theta}", t + 1, g.theta);
        assert!(close(g.m, m), "{what}: step {}: m = {} but by hand {m}", t + 1, g.m);
        assert!(close(g.v, v), "{what}: step {}: v = {} but by hand {v}", t + 1, g.v);
    }
}

/// Checks the hand values against the f64 and f32 CPU update and the GPU kernel.
fn check_all(what: &str, cfg: OptimConfig, theta0: f64, lr: f64, want: &[(f64, f64, f64)]) {
    check(&format!("{what} (cpu f64)"), &cpu_run::<f64>(&cfg, theta0, &GRADS, lr), want, 1e-12);
    check(&format!("{what} (cpu f32)"), &cpu_run::<f32>(&cfg, theta0, &GRADS, lr), want, 1e-6);
    check(&format!("{what} (gpu)"), &gpu_single(&cfg, theta0, &GRADS, lr), want, 1e-6);
}

// ---------------------------------------------------------------------------------------------------------
// Hand-computed steps
// ---------------------------------------------------------------------------------------------------------

#[test]
fn momentum_by_hand_without_weight_decay() {
    // μ = 0.9, lr = 0.1, θ0 = 1; g = 0.5, -0.25, 1.0.  b ← μ·b + g;  θ ← θ − lr·b.
    // step 1: b = 0.9·0 + 0.5 = 0.5;           θ = 1 − 0.1·0.5 = 0.95
    // step 2: b = 0.9·0.5 − 0.25 = 0.2;        θ = 0.95 − 0.1·0.2 = 0.93
    // step 3: b = 0.9·0.2 + 1.0 = 1.18;        θ = 0.93 − 0.1·1.18 = 0.812
    let want = [(0.95, 0.5, 0.0), (0.93, 0.2, 0.0), (0.812, 1.18, 0.0)];
    check_all("momentum wd=0", OptimConfig { kind: MOMENTUM, weight_decay: 0.0 }, 1.0, 0.1, &want);
}

#[test]
fn momentum_by_hand_with_weight_decay() {
    // As above with weight_decay 0.1: g' = g + 0.1·θ (θ before the step).
    // step 1: g' = 0.5 + 0.1·1 = 0.6;            b = 0.6;                       θ = 1 − 0.06 = 0.94
    // step 2: g' = −0.25 + 0.1·0.94 = −0.156;    b = 0.9·0.6 − 0.156 = 0.384;   θ = 0.94 − 0.0384 = 0.9016
    // step 3: g' = 1 + 0.1·0.9016 = 1.09016;     b = 0.9·0.384 + 1.09016 = 1.43576;
    //                                            θ = 0.9016 − 0.143576 = 0.758024
    let want = [(0.94, 0.6, 0.0), (0.9016, 0.384, 0.0), (0.758024, 1.43576, 0.0)];
    check_all("momentum wd=0.1", OptimConfig { kind: MOMENTUM, weight_decay: 0.1 }, 1.0, 0.1, &want);
}

#[test]
fn sgd_by_hand_with_and_without_weight_decay() {
    // lr = 0.1, θ0 = 2; wd = 0: θ = 2 − 0.05 = 1.95; 1.95 + 0.025 = 1.975; 1.975 − 0.1 = 1.875.
    let want = [(1.95, 0.0, 0.0), (1.975, 0.0, 0.0), (1.875, 0.0, 0.0)];
    check_all("sgd wd=0", OptimConfig::sgd(), 2.0, 0.1, &want);
    // wd = 0.01: g' = g + 0.01·θ.
    // step 1: g' = 0.5 + 0.02 = 0.52;           θ = 2 − 0.052 = 1.948
    // step 2: g' = −0.25 + 0.01948 = −0.23052;  θ = 1.948 + 0.023052 = 1.971052
    // step 3: g' = 1 + 0.01971052 = 1.01971052; θ = 1.971052 − 0.101971052 = 1.869080948
    let want = [(1.948, 0.0, 0.0), (1.971052, 0.0, 0.0), (1.869080948, 0.0, 0.0)];
    check_all("sgd wd=0.01", OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.01 }, 2.0, 0.1, &want);
}

#[test]
fn adam_first_step_moves_each_parameter_by_lr_times_the_sign_of_its_gradient() {
    // At t = 1: m̂ = m/(1−β1) = g and sqrt(v̂) = sqrt((1−β2) g² / (1−β2)) = |g|, so the step is
    // lr·g/(|g| + eps) ≈ lr·sign(g), whatever the gradient's size; a zero gradient does not move.
    let lr = 0.01;
    let cfg = OptimConfig { kind: ADAM, weight_decay: 0.0 };
    let theta0 = [1.0f32, -2.0, 0.5, 3.0, 0.0, -0.25, 7.0];
    let g = [0.5f32, -3.0, 1e-3, -1e-4, 123.0, 0.0, -1e-6];
    let hand = |t: f32, g: f32| t as f64 - lr * g as f64 / ((g as f64).abs() + 1e-8);
    let sign_step = |t: f32, g: f32| t as f64 - lr * (g as f64).signum() * (g != 0.0) as i32 as f64;

    let mut p: Vec<f64> = theta0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0; 7], vec![0.0; 7]);
    let gd: Vec<f64> = g.iter().map(|&v| v as f64).collect();
    optim::update(&cfg, &mut p, &gd, &mut m, &mut v, StepScalars::new(&cfg, lr, 1));
    let on_gpu = gpu_run(&cfg, &theta0, &[g.to_vec()], lr);
    for i in 0..7 {
        let want = hand(theta0[i], g[i]);
        assert!((p[i] - want).abs() < 1e-12, "cpu param {i}: {} vs by hand {want}", p[i]);
        assert!(
            (p[i] - sign_step(theta0[i], g[i])).abs() <= lr * 1e-2,
            "param {i} with g = {}: moved by {} instead of about lr·sign(g)",
            g[i],
            p[i] - theta0[i] as f64
        );
        let got = on_gpu[0].0[i] as f64;
        assert!((got - want).abs() < 2e-7 * (1.0 + want.abs()), "gpu param {i}: {got} vs by hand {want}");
        // Hand values of the moments: m = 0.1·g, v = 0.001·g².
        let (hm, hv) = (0.1 * gd[i], 0.001 * gd[i] * gd[i]);
        assert!((m[i] - hm).abs() <= 1e-15 * (1.0 + hm.abs()), "m[{i}] = {} vs by hand {hm}", m[i]);
        assert!((v[i] - hv).abs() <= 1e-15 * (1.0 + hv.abs()), "v[{i}] = {} vs by hand {hv}", v[i]);
    }
    // A gradient of 0.5 moves a parameter by 0.01·0.5/(0.5 + 1e-8) = 0.0099999998.
    assert!((p[0] - 0.9900000002).abs() < 1e-12, "{}", p[0]);
}

#[test]
fn adam_three_steps_by_hand_with_pytorch_formulas() {
    // β1 = 0.9, β2 = 0.999, eps = 1e-8, lr = 0.01, θ0 = 1; g = 0.5, -0.25, 1.0.
    // m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  bc1 = 1−β1^t;  denom = sqrt(v)/sqrt(1−β2^t) + eps;
    // θ ← θ − lr/bc1 · m/denom.
    let step = |theta: f64, m: f64, v: f64, bc1: f64, bc2: f64| theta - 0.01 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
    // step 1: m = 0.05, v = 0.00025, bc1 = 0.1, bc2 = 0.001: denom = 0.5 + 1e-8, step = 0.1·0.05/0.50000001
    let m1 = 0.1 * 0.5;
    let v1 = 0.001 * 0.25;
    let t1 = step(1.0, m1, v1, 0.1, 0.001);
    // step 2: m = 0.045 − 0.025 = 0.02, v = 0.000249750 + 0.0000625 = 0.00031225, bc1 = 0.19, bc2 = 0.001999
    let m2 = 0.9 * m1 + 0.1 * -0.25;
    let v2 = 0.999 * v1 + 0.001 * 0.0625;
    let t2 = step(t1, m2, v2, 0.19, 0.001999);
    // step 3: m = 0.018 + 0.1 = 0.118, v = 0.00031193775 + 0.001 = 0.00131193775, bc1 = 0.271,
    //         bc2 = 1 − 0.997002999 = 0.002997001
    let m3 = 0.9 * m2 + 0.1 * 1.0;
    let v3 = 0.999 * v2 + 0.001 * 1.0;
    let t3 = step(t2, m3, v3, 0.271, 0.002997001);
    // The same numbers written out as decimals.
    let decimals = [
        (0.9900000002, 0.05, 0.00025),
        (0.9873366298707846, 0.02, 0.00031225),
        (0.980755513967709, 0.118, 0.00131193775),
    ];
    let by_hand = [(t1, m1, v1), (t2, m2, v2), (t3, m3, v3)];
    for (a, b) in by_hand.iter().zip(&decimals) {
        assert!((a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-15 && (a.2 - b.2).abs() < 1e-15, "{a:?} {b:?}");
    }
    check_all("adam wd=0", OptimConfig { kind: ADAM, weight_decay: 0.0 }, 1.0, 0.01, &by_hand);
}

#[test]
fn adam_three_steps_by_hand_with_weight_decay() {
    // As above with weight_decay 0.1 (coupled: g' = g + 0.1·θ before the moments).
    let step = |theta: f64, m: f64, v: f64, bc1: f64, bc2: f64| theta - 0.01 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
    let g1 = 0.5 + 0.1 * 1.0; // 0.6
    let (m1, v1) = (0.1 * g1, 0.001 * g1 * g1); // 0.06, 0.00036
    let t1 = step(1.0, m1, v1, 0.1, 0.001); // 1 − 0.1·0.06/(0.6 + 1e-8) = 0.99000000016667
    let g2 = -0.25 + 0.1 * t1;
    let (m2, v2) = (0.9 * m1 + 0.1 * g2, 0.999 * v1 + 0.001 * g2 * g2);
    let t2 = step(t1, m2, v2, 0.19, 0.001999);
    let g3 = 1.0 + 0.1 * t2;
    let (m3, v3) = (0.9 * m2 + 0.1 * g3, 0.999 * v2 + 0.001 * g3 * g3);
    let t3 = step(t2, m3, v3, 0.271, 0.002997001);
    assert!((t1 - 0.9900000001666667).abs() < 1e-12);
    assert!((t2 - 0.9853191993058599).abs() < 1e-12);
    assert!((t3 - 0.9779775547639225).abs() < 1e-12);
    let by_hand = [(t1, m1, v1), (t2, m2, v2), (t3, m3, v3)];
    check_all("adam wd=0.1", OptimConfig { kind: ADAM, weight_decay: 0.1 }, 1.0, 0.01, &by_hand);
}
