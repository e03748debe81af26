//! The fused step's kernels against their twins (`cpu::fused_forward_backward`, `cpu::fused_update`,
//! `cpu::fused_reduce`, `cpu::fused_apply`), launch by launch, on both reductions: each workgroup's partial
//! gradients and loss sum of the first launch on awkward widths (1, 2, 3, 17, 63, 64, 65 and the bound,
//! 128), depths 1 to 6, batch 1, primes, batches of many blocks and of several blocks a workgroup, every
//! activation, output and loss; the update launches for every rule, with and without weight decay and
//! clipping.

use backprop::cpu::{self, GroupPartial};
use backprop::gpu::fused::{FusedBuffers, FusedPlan};
use backprop::gpu::shaders::Kernel;
use backprop::gpu::structs::{LossTotals, StepState};
use backprop::gpu::{GpuContext, buffer, ops};
use backprop::model::Output;
use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars};
use backprop::{Activation, Loss, MlpSpec, Params};
use ndarray::Array2;
use rand::RngExt;

use super::read;
use crate::common::{assert_close, both_reductions, f32_exact, random, rng, to_f32, to_f64};

/// A model's buffers as `GpuMlp` keeps them, and an uploaded batch.
struct Bufs {
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    step: wgpu::Buffer,
    loss: wgpu::Buffer,
    x: wgpu::Buffer,
    y: wgpu::Buffer,
}

impl Bufs {
    fn new(ctx: &GpuContext, params: &[f32], x: &[f32], y: &[f32]) -> Self {
        let n = params.len();
        let store = |name: &str, v: &[f32]| buffer::storage_init(ctx, name, v).unwrap();
        Bufs {
            params: store("params", params),
            grads: store("grads", &vec![f32::NAN; n]),
            m: store("m", &vec![0.0; n]),
            v: store("v", &vec![0.0; n]),
            step: buffer::storage_struct(ctx, "step state", &StepState::START).unwrap(),
            loss: buffer::storage_struct(ctx, "loss", &LossTotals { last: f32::NAN, sum: 0.5 }).unwrap(),
            x: store("x", x),
            y: store("y", y),
        }
    }

    fn fused(&self) -> FusedBuffers<'_> {
        let (params, grads, step, loss) = (&self.params, &self.grads, &self.step, &self.loss);
        FusedBuffers { params, grads, m: Some(&self.m), v: Some(&self.v), step, loss }
    }

    fn plan(
        &self,
        ctx: &GpuContext,
        spec: &MlpSpec,
        shape: (usize, usize),
        cfg: &OptimConfig,
        clip: Option<f32>,
    ) -> FusedPlan {
        FusedPlan::new(ctx, spec, shape, (cfg, 0.05, clip), self.fused(), (&self.x, &self.y)).unwrap()
    }
}

/// Targets for `spec`: values in [0, 1] for MSE, one-hot rows for cross-entropy.
fn targets(spec: &MlpSpec, r: &mut rand_chacha::ChaCha8Rng, rows: usize) -> Array2<f64> {
    let o = spec.output_width();
    match spec.loss() {
        Loss::Mse => f32_exact(&random(r, rows, o, 0.5).mapv(|v| v + 0.5)),
        Loss::CrossEntropy => Array2::from_shape_fn((rows, o), |(b, j)| if (b * 7 + 3) % o == j { 1.0 } else { 0.0 }),
    }
}

/// (sizes, batch, rows per block).
const CASES: &[(&[usize], usize, usize)] = &[
    (&[1, 1], 1, 32),
    (&[2, 2, 1], 1, 32),
    (&[3, 17, 2], 7, 32),
    (&[5, 63, 3], 37, 8),
    (&[64, 64, 64, 1], 67, 32),
    (&[7, 65, 17, 3, 2], 13, 4),
    (&[3, 128, 128, 5], 11, 4),
    (&[2, 3, 2, 3, 2, 3, 1], 29, 5),
    (&[4, 2, 3], 300, 1),
];

/// Every case with every hidden activation, an MSE output through each activation, and cross-entropy.
fn specs() -> impl Iterator<Item = (MlpSpec, usize, usize)> {
    CASES.iter().flat_map(|&(sizes, batch, rows)| {
        Activation::ALL.into_iter().enumerate().flat_map(move |(k, hidden)| {
            let mut acts = vec![hidden; sizes.len() - 1];
            *acts.last_mut().unwrap() = Activation::ALL[(k + 1) % 4];
            let mse = MlpSpec::new(sizes.to_vec(), acts, Loss::Mse).unwrap();
            let xent = MlpSpec::with_output(sizes.to_vec(), hidden, Output::Softmax, Loss::CrossEntropy).unwrap();
            [(mse, batch, rows), (xent, batch, rows)]
        })
    })
}

/// `fused_forward_backward`, workgroup by workgroup: each group's partial gradients and loss sum; and the
/// step state advanced once, as `optim::optim_prepare` advances it.
pub(super) fn forward_backward() {
    let adam = OptimConfig::new(OptimizerKind::adam());
    for ctx in both_reductions() {
        let mut r = rng(31);
        for (case, (spec, batch, block_rows)) in specs().enumerate() {
            let init = Params::init(&spec, case as u64);
            let x = f32_exact(&random(&mut r, batch, spec.input_width(), 1.0));
            let y = targets(&spec, &mut r, batch);
            let bufs = Bufs::new(&ctx, &init.to_flat(), &to_f32(&x), &to_f32(&y));
            let plan = bufs.plan(&ctx, &spec, (batch, block_rows), &adam, None);
            ops::run(&ctx, &[plan.first()]).unwrap();
            let (p, blocking) = (init.to_flat().len(), plan.blocking());
            let name = format!(
                "{:?} {:?} {} batch {batch} R {block_rows}",
                ctx.reductions(),
                spec.sizes(),
                spec.loss().name()
            );
            assert_eq!(blocking.blocks, batch.div_ceil(block_rows), "{name}");
            for g in 0..blocking.groups {
                let rows = blocking.group_rows(g);
                let want = cpu::fused_forward_backward(&spec, &init.to_f64(), x.view(), y.view(), rows).unwrap();
                let got = read(&ctx, plan.work(), g * p, p);
                assert_close(&format!("{name}: group {g} gradients"), &got, &want.grads.to_flat(), 1e-6, 1e-4);
                let loss = read(&ctx, plan.work(), blocking.groups * p + g, 1);
                assert_close(&format!("{name}: group {g} loss"), &loss, &[want.loss_sum], 1e-5, 1e-4);
            }
            let mut want = StepState::START;
            optim::optim_prepare(&mut want, 0.0, (0.9, 0.999), ((1.0f64 - 0.9) as f32, (1.0f64 - 0.999) as f32));
            let got: StepState = buffer::read_struct(&ctx, &bufs.step, 0).unwrap();
            assert_eq!(got, want, "{name}: the step state after one step");
        }
    }
}

/// Random partial gradients of three groups and their loss sums (the last NaN where `diverge`).
fn partials(r: &mut rand_chacha::ChaCha8Rng, spec: &MlpSpec, diverge: bool) -> Vec<GroupPartial<f64>> {
    let n = spec.param_layout().len;
    (0..3)
        .map(|g| GroupPartial {
            grads: Params::from_flat(spec, &to_f64(&to_f32(&random(r, 1, n, 1.0)))).unwrap(),
            loss_sum: if diverge && g == 2 { f64::NAN } else { r.random_range(0.0..4.0f32) as f64 },
        })
        .collect()
}

/// `fused_update` (no clip), or with a clip `fused_reduce` alone and `fused_reduce` + `fused_apply`, on
/// given partials, for every rule with and without weight decay: the gradients, parameters, state, loss,
/// the divergence check and the clip coefficient as the twins compute them.
pub(super) fn update(kernel: Kernel) {
    let spec = MlpSpec::uniform(vec![3, 5, 2], Activation::Tanh, Loss::Mse).unwrap();
    let kinds = [OptimizerKind::Sgd, OptimizerKind::Momentum { momentum: 0.9 }, OptimizerKind::adam()];
    let clip = (kernel != Kernel::FusedUpdate).then_some(0.05f32);
    for ctx in both_reductions() {
        let mut r = rng(32);
        for (kind, wd) in kinds.into_iter().flat_map(|k| [(k, 0.0), (k, 0.01)]) {
            let cfg = OptimConfig { kind, weight_decay: wd };
            let (init, batch) = (Params::init(&spec, 3), 9);
            let bufs = Bufs::new(&ctx, &init.to_flat(), &[0.0; 27], &[0.0; 18]);
            let plan = bufs.plan(&ctx, &spec, (batch, 3), &cfg, clip);
            let diverge = wd > 0.0 && kernel != Kernel::FusedApply;
            let parts = partials(&mut r, &spec, diverge);
            let mut work: Vec<f32> = parts.iter().flat_map(|p| p.grads.to_flat()).map(|v| v as f32).collect();
            work.extend(parts.iter().map(|p| p.loss_sum as f32));
            ctx.queue.write_buffer(plan.work(), 0, bytemuck::cast_slice(&work));
            // The step state as the first launch leaves it at t = 1.
            let mut state = StepState::START;
            let (b1, b2) = match kind {
                OptimizerKind::Adam { beta1, beta2, .. } => (beta1, beta2),
                _ => (0.0, 0.0),
            };
            optim::optim_prepare(&mut state, 0.0, (b1 as f32, b2 as f32), ((1.0 - b1) as f32, (1.0 - b2) as f32));
            ctx.queue.write_buffer(&bufs.step, 0, bytemuck::bytes_of(&state));
            let launches: Vec<_> =
                plan.update().iter().filter(|d| d.kernel() == kernel || kernel == Kernel::FusedApply).collect();
            ops::run(&ctx, &launches).unwrap();
            let name = format!("{:?} {kernel:?} {} wd {wd}", ctx.reductions(), kind.name());
            check_update(&ctx, &bufs, (&spec, &cfg, clip, kernel), &init, &parts, state, &name);
        }
    }
}

/// What `update` compares after the launches ran.
fn check_update(
    ctx: &GpuContext,
    bufs: &Bufs,
    (spec, cfg, clip, kernel): (&MlpSpec, &OptimConfig, Option<f32>, Kernel),
    init: &Params<f32>,
    parts: &[GroupPartial<f64>],
    state: StepState,
    name: &str,
) {
    let n = init.to_flat().len();
    let g = cpu::fused_reduce(parts);
    assert_close(&format!("{name}: gradients"), &read(ctx, &bufs.grads, 0, n), &g, 1e-6, 1e-5);
    let got: StepState = buffer::read_struct(ctx, &bufs.step, 0).unwrap();
    if kernel != Kernel::FusedApply {
        let loss = cpu::fused_loss(spec, parts, 9);
        let totals: LossTotals = buffer::read_struct(ctx, &bufs.loss, 0).unwrap();
        let (last, sum) = (totals.last as f64, totals.sum as f64);
        if loss.is_nan() {
            assert!(last.is_nan() && got.first_bad_step == 1, "{name}: a NaN loss is step 1's divergence");
        } else {
            assert_close(&format!("{name}: loss"), &[totals.last, totals.sum], &[loss, 0.5 + 9.0 * loss], 1e-6, 1e-5);
            assert_eq!((last.is_nan(), sum.is_nan(), got.first_bad_step), (false, false, 0), "{name}");
        }
    }
    if kernel == Kernel::FusedReduce {
        return; // the rule runs in fused_apply
    }
    let mut flat = init.to_f64().to_flat();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let s = StepScalars {
        lr: 0.05,
        bias_correction1: state.bias_correction1 as f64,
        bias_correction2_sqrt: state.bias_correction2_sqrt as f64,
    };
    let s = if cfg.state_vectors() == 2 { s } else { StepScalars::new(cfg, 0.05, 1) };
    cpu::fused_apply(cfg, &mut flat, &g, (&mut m, &mut v), s, clip);
    assert_close(&format!("{name}: parameters"), &read(ctx, &bufs.params, 0, n), &flat, 1e-6, 1e-5);
    if cfg.state_vectors() >= 1 {
        assert_close(&format!("{name}: m"), &read(ctx, &bufs.m, 0, n), &m, 1e-6, 1e-5);
    }
    if cfg.state_vectors() >= 2 {
        assert_close(&format!("{name}: v"), &read(ctx, &bufs.v, 0, n), &v, 1e-7, 1e-5);
    }
    let c = clip.map_or(1.0, |max| optim::clip_coefficient(&g, max));
    assert_close(&format!("{name}: clip coefficient"), &[got.clip], &[c], 1e-7, 1e-5);
}
