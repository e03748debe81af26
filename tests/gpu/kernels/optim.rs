//! The optimizer kernels against their twins in `optim`: each update rule over several steps with and
//! without weight decay, `optim_prepare`'s step state (counting, the first bad step, Adam's bias
//! corrections, their replay after a restore), and the gradient norm's pieces and clip coefficient.

use backprop::gpu::shaders::Kernel;
use backprop::gpu::structs::StepState;
use backprop::gpu::{GpuContext, buffer, ops};
use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars};
use backprop::{Activation, Loss, MlpSpec, Params, cpu};

use super::{nan_buffer, read};
use crate::common::{assert_close, f32_exact, gpu, random, rng, small_device, to_f32, to_f64};

/// The buffers an optimizer update binds, for `n` parameters.
struct State {
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    step: wgpu::Buffer,
    loss: wgpu::Buffer,
    partials: wgpu::Buffer,
}

impl State {
    /// Zeroed state vectors where `cfg` keeps them (NaN where it keeps none: they must stay so).
    fn new(ctx: &GpuContext, cfg: &OptimConfig, n: usize) -> Self {
        let vector = |k: usize| if cfg.state_vectors() > k { vec![0.0f32; n] } else { vec![f32::NAN] };
        Self {
            m: buffer::storage_init(ctx, "m", &vector(0)).unwrap(),
            v: buffer::storage_init(ctx, "v", &vector(1)).unwrap(),
            step: buffer::storage_struct(ctx, "step state", &StepState::START).unwrap(),
            loss: buffer::storage_init(ctx, "loss", &[0.0, 0.0]).unwrap(),
            partials: nan_buffer(ctx, ops::update_pieces(ctx, n).unwrap()),
        }
    }

    fn buffers(&self) -> ops::OptimBuffers<'_> {
        ops::OptimBuffers {
            m: Some(&self.m),
            v: Some(&self.v),
            step: &self.step,
            loss: &self.loss,
            partials: &self.partials,
        }
    }
}

/// `sgd`, `momentum` or `adam`: four steps over 1, 257 and 1031 parameters against `optim::update` (which
/// runs the twin), with and without weight decay; the state vectors the rule keeps, and no other.
pub(super) fn update_rule(kernel: Kernel) {
    let (ctx, mut r) = (gpu(), rng(8));
    let configs = [
        OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.01 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.5 }, weight_decay: 0.1 },
        OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Adam { beta1: 0.8, beta2: 0.99, eps: 1e-6 }, weight_decay: 0.05 },
    ];
    let rule = |cfg: &OptimConfig| match cfg.kind {
        OptimizerKind::Sgd => Kernel::Sgd,
        OptimizerKind::Momentum { .. } => Kernel::Momentum,
        OptimizerKind::Adam { .. } => Kernel::Adam,
    };
    for n in [1usize, 257, 1031] {
        for cfg in configs.into_iter().filter(|c| rule(c) == kernel) {
            let mut p = to_f64(&to_f32(&random(&mut r, 1, n, 1.0)));
            let pb = buffer::storage_init(
                &ctx,
                "params",
                &to_f32(&ndarray::Array2::from_shape_vec((1, n), p.clone()).unwrap()),
            )
            .unwrap();
            let state = State::new(&ctx, &cfg, n);
            let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
            for t in 1..=4u64 {
                let g = f32_exact(&random(&mut r, 1, n, 1.0));
                let gb = buffer::storage_init(&ctx, "grads", &to_f32(&g)).unwrap();
                let d = ops::optimizer(&ctx, &cfg, n, 0.01, None, &gb, &pb, state.buffers()).unwrap();
                ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
                optim::update(&cfg, &mut p, g.as_slice().unwrap(), &mut m, &mut v, StepScalars::new(&cfg, 0.01, t));
            }
            let name = format!("{} wd={} n={n}", cfg.kind.name(), cfg.weight_decay);
            assert_close(&format!("{name} params"), &read(&ctx, &pb, 0, n), &p, 1e-6, 1e-5);
            let keeps = cfg.state_vectors();
            if keeps >= 1 {
                assert_close(&format!("{name} m"), &read(&ctx, &state.m, 0, n), &m, 1e-6, 1e-5);
            } else {
                assert!(read(&ctx, &state.m, 0, 1)[0].is_nan(), "{name}: the rule keeps no m");
            }
            if keeps >= 2 {
                assert_close(&format!("{name} v"), &read(&ctx, &state.v, 0, n), &v, 1e-7, 1e-5);
            } else {
                assert!(read(&ctx, &state.v, 0, 1)[0].is_nan(), "{name}: the rule keeps no v");
            }
        }
    }
    if kernel == Kernel::Sgd {
        sgd_over_a_model_s_flat_parameters();
    }
}

/// Plain SGD over the flat buffer of a model's parameters against `cpu::sgd_update` on its layers.
fn sgd_over_a_model_s_flat_parameters() {
    let (ctx, mut r) = (gpu(), rng(7));
    let spec = MlpSpec::uniform(vec![13, 7, 1], Activation::Sigmoid, Loss::Mse).unwrap();
    let (mut p, mut g) = (Params::<f64>::zeros(&spec), Params::<f64>::zeros(&spec));
    for l in 0..spec.layers() {
        let (i, o) = spec.layer_shape(l);
        p.weights[l] = f32_exact(&random(&mut r, i, o, 1.0));
        g.weights[l] = f32_exact(&random(&mut r, i, o, 1.0));
        p.biases[l] = f32_exact(&random(&mut r, 1, o, 1.0)).row(0).to_owned();
        g.biases[l] = f32_exact(&random(&mut r, 1, o, 1.0)).row(0).to_owned();
    }
    let n = spec.param_layout().len;
    let pb = buffer::storage_init(&ctx, "params", &p.to_f32().to_flat()).unwrap();
    let gb = buffer::storage_init(&ctx, "grads", &g.to_f32().to_flat()).unwrap();
    let cfg = OptimConfig::sgd();
    let d = ops::optimizer(&ctx, &cfg, n, 0.25, None, &gb, &pb, State::new(&ctx, &cfg, n).buffers()).unwrap();
    ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
    cpu::sgd_update(&mut p, &g, 0.25);
    assert_close("sgd params", &read(&ctx, &pb, 0, n), &p.to_flat(), 1e-7, 1e-6);
}

/// `optim_prepare` against `optim::optim_prepare`: 40 steps, one whose loss is NaN, then a restore at
/// step 1000 and a step, for Adam (whose bias corrections reach their fixed point at β = 0.5 and not at
/// β2 = 0.999) and for the rules without corrections.
pub(super) fn optim_prepare() {
    let ctx = gpu();
    let adam = |beta1, beta2| OptimConfig { kind: OptimizerKind::Adam { beta1, beta2, eps: 1e-8 }, weight_decay: 0.0 };
    for cfg in [
        adam(0.9, 0.999),
        adam(0.5, 0.9),
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 },
        OptimConfig::sgd(),
    ] {
        let (betas, one_minus) = match cfg.kind {
            OptimizerKind::Adam { beta1, beta2, .. } => {
                ((beta1 as f32, beta2 as f32), ((1.0 - beta1) as f32, (1.0 - beta2) as f32))
            }
            _ => ((0.0, 0.0), (0.0, 0.0)),
        };
        let state = State::new(&ctx, &cfg, 1);
        let (p, g) = (buffer::storage(&ctx, "θ", 1).unwrap(), buffer::storage(&ctx, "g", 1).unwrap());
        let prepare = ops::optimizer(&ctx, &cfg, 1, 0.0, None, &g, &p, state.buffers()).unwrap().remove(0);
        assert_eq!(prepare.kernel(), Kernel::OptimPrepare);
        let mut twin = StepState::START;
        for (steps, loss, restore) in [(40, 0.5f32, None), (1, f32::NAN, None), (1, 0.5, Some(1000u32))] {
            if let Some(t) = restore {
                twin = StepState::resumed(t);
                ctx.queue.write_buffer(&state.step, 0, bytemuck::bytes_of(&twin));
            }
            ctx.queue.write_buffer(&state.loss, 0, bytemuck::cast_slice(&[loss, 0.0]));
            ops::run(&ctx, &vec![&prepare; steps]).unwrap();
            (0..steps).for_each(|_| optim::optim_prepare(&mut twin, loss, betas, one_minus));
            let got: StepState = buffer::read_struct(&ctx, &state.step, 0).unwrap();
            let name = format!("{} after {} steps", cfg.kind.name(), twin.t);
            assert_eq!(
                (got.t, got.bias_step, got.first_bad_step),
                (twin.t, twin.bias_step, twin.first_bad_step),
                "{name}"
            );
            // WGSL may round fma's product before the sum (lavapipe does), so the two recurrences drift apart
            // by up to about an ulp a step; 1000 steps of replay stay within 1e-4.
            let corrections = |s: &StepState| [s.bias_correction1, s.bias_correction2, s.bias_correction2_sqrt];
            let (got_c, want_c) = (corrections(&got), to_f64(&corrections(&twin)));
            assert_close(&format!("{name}: bias corrections"), &got_c, &want_c, 0.0, 1e-4);
            if loss.is_nan() {
                assert_eq!(got.first_bad_step, 41, "{name}: the NaN loss was step 41");
            }
        }
    }
}

/// Runs the dispatches of `kernel` from an update with clipping over `grads`, on `ctx`; returns the state.
fn clip_pieces(ctx: &GpuContext, grads: &[f32], max_norm: f32, kernels: &[Kernel]) -> State {
    let (cfg, n) = (OptimConfig::sgd(), grads.len());
    let state = State::new(ctx, &cfg, n);
    let (p, g) = (buffer::storage(ctx, "θ", n).unwrap(), buffer::storage_init(ctx, "g", grads).unwrap());
    let all = ops::optimizer(ctx, &cfg, n, 0.0, Some(max_norm), &g, &p, state.buffers()).unwrap();
    ops::run(ctx, &all.iter().filter(|d| kernels.contains(&d.kernel())).collect::<Vec<_>>()).unwrap();
    state
}

/// `grad_norm` against `optim::grad_norm`: each piece's sum of squares, in one piece and in nine (on a
/// device whose bindings hold 128 values).
pub(super) fn grad_norm() {
    let mut r = rng(30);
    for (ctx, pieces) in [(gpu(), 1usize), (small_device(512), 9)] {
        let g = to_f32(&f32_exact(&random(&mut r, 1, 1031, 1.0)));
        let state = clip_pieces(&ctx, &g, 0.5, &[Kernel::GradNorm]);
        let want: Vec<f64> = g.chunks(ops::aligned_rows_per_binding(&ctx, 1)).map(optim::grad_norm).collect();
        assert_eq!(want.len(), pieces);
        assert_close(
            &format!("partial sums of squares ({pieces} pieces)"),
            &read(&ctx, &state.partials, 0, pieces),
            &want,
            0.0,
            1e-5,
        );
    }
}

/// `grad_norm_finish` against `optim::grad_norm_finish` on the pieces' sums: a clip below 1, and 1 where
/// the norm is within the bound.
pub(super) fn grad_norm_finish() {
    let mut r = rng(31);
    for (ctx, max_norm) in [(gpu(), 0.5f32), (small_device(512), 0.5), (gpu(), 1e6)] {
        let g = to_f32(&f32_exact(&random(&mut r, 1, 1031, 1.0)));
        let state = clip_pieces(&ctx, &g, max_norm, &[Kernel::GradNorm, Kernel::GradNormFinish]);
        let pieces = ops::update_pieces(&ctx, 1031).unwrap();
        let partials = to_f64(&read(&ctx, &state.partials, 0, pieces));
        let got: StepState = buffer::read_struct(&ctx, &state.step, 0).unwrap();
        let want = optim::grad_norm_finish(&partials, max_norm);
        assert_close(&format!("clip coefficient (max {max_norm}, {pieces} pieces)"), &[got.clip], &[want], 0.0, 1e-6);
        assert_eq!(want == 1.0, max_norm > 1.0, "a clip below 1 only for the small bound");
    }
}
