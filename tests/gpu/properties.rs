//! Property tests in CI: the GPU backend against the f64 reference on 500 random cases (depth, widths,
//! batch, activations, loss, optimizer, weight decay, clipping), two steps each, sized for lavapipe, with
//! the unfused step and 500 more with the fused one; and 150 more on a device whose storage bindings are
//! capped at 128 values, so that batches, weight matrices and the optimizer update are split into pieces
//! in every way (the unfused step's splitting).

use std::sync::Arc;

use backprop::gpu::{GpuContext, GpuPath, PathStrategy};
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::common::reference::Reference;
use crate::common::{assert_close, f32_exact, gpu, random, rng, small_device};

const CASES: usize = 500;

#[test]
fn gpu_matches_the_reference_on_500_random_cases() {
    run_cases((gpu(), GpuPath::Unfused), 2026, CASES, 9, 9);
}

/// The fused step, widths and batches up to 40 (a block holds at most 32 rows, so some batches take two).
#[test]
fn the_fused_step_matches_the_reference_on_500_random_cases() {
    run_cases((gpu(), GpuPath::Fused), 2027, CASES, 40, 40);
}

#[test]
fn split_work_matches_the_reference_on_150_random_cases() {
    run_cases((small_device(512), GpuPath::Unfused), 77, 150, 16, 40);
}

/// One random case: a network, its optimizer and clip, a learning rate and a batch.
struct Case {
    spec: MlpSpec,
    cfg: OptimConfig,
    clip: Option<f32>,
    lr: f64,
    x: Array2<f64>,
    y: Array2<f64>,
}

/// Case number `case`: depth 1 to 3, widths up to `max_width`, batches up to `max_batch`, every
/// activation, loss and optimizer, weight decay 30% and clipping 20% of the time.
fn random_case(r: &mut ChaCha8Rng, case: usize, max_width: usize, max_batch: usize) -> Case {
    let layers = r.random_range(1..=3usize);
    let sizes: Vec<usize> = (0..=layers).map(|_| r.random_range(1..=max_width)).collect();
    let mut acts: Vec<Activation> = (0..layers).map(|_| Activation::ALL[r.random_range(0..4usize)]).collect();
    let loss = if r.random_bool(0.5) { Loss::Mse } else { Loss::CrossEntropy };
    if loss == Loss::CrossEntropy {
        acts[layers - 1] = Activation::Identity;
    }
    let spec = MlpSpec::new(sizes.clone(), acts, loss).unwrap();
    let kind = match r.random_range(0..3u32) {
        0 => OptimizerKind::Sgd,
        1 => OptimizerKind::Momentum { momentum: 0.9 },
        _ => OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
    };
    let cfg = OptimConfig { kind, weight_decay: if r.random_bool(0.3) { 0.01 } else { 0.0 } };
    let clip = r.random_bool(0.2).then_some(0.5f32);
    let lr = match kind {
        OptimizerKind::Adam { .. } => 0.01,
        _ => 0.1,
    };
    let batch = r.random_range(1..=max_batch);
    let x = f32_exact(&random(r, batch, sizes[0], 1.0));
    let o = sizes[layers];
    let y = match loss {
        Loss::Mse => f32_exact(&random(r, batch, o, 1.0)),
        Loss::CrossEntropy => Array2::from_shape_fn((batch, o), |(b, j)| if (b + case) % o == j { 1.0 } else { 0.0 }),
    };
    Case { spec, cfg, clip, lr, x, y }
}

/// `cases` random cases with widths up to `max_width` and batches up to `max_batch`, two steps each on the
/// GPU's `path` step and on the reference: the losses and the parameters agree.
fn run_cases((ctx, path): (Arc<GpuContext>, GpuPath), seed: u64, cases: usize, max_width: usize, max_batch: usize) {
    let mut r = rng(seed);
    for case in 0..cases {
        let Case { spec, cfg, clip, lr, x, y } = random_case(&mut r, case, max_width, max_batch);
        let init = Params::init(&spec, case as u64);
        let mut model = GpuMlp::new(ctx.clone(), spec.clone(), &init).unwrap();
        model.set_path_strategy(PathStrategy::Fixed(path)).unwrap();
        model.set_optimizer(cfg).unwrap();
        model.set_grad_clip(clip).unwrap();
        let mut reference = Reference::new(&spec, &init, cfg, clip);
        let name = format!(
            "{path:?} case {case}: {:?} {:?} {} {} wd {} clip {clip:?} batch {}",
            spec.sizes(),
            spec.activations(),
            spec.loss().name(),
            cfg.kind.name(),
            cfg.weight_decay,
            x.nrows()
        );
        let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
        for step in 1..=2u64 {
            let t = reference.step(x.view(), y.view(), lr);
            let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().unwrap();
            assert_close(&format!("{name}: loss at step {step}"), &[got], &[t.loss], 1e-5, 1e-4);
        }
        assert_close(&format!("{name}: parameters"), &model.params().unwrap().to_flat(), &reference.flat, 2e-5, 1e-3);
    }
}
