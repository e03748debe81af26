//! Training with the fused GPU step (forced): whole runs against the f64 reference for every optimizer,
//! loss and output, with clipping and weight decay, at depths 1 to 6 and 64 and widths up to the bound; the
//! traced step (what `--verify` compares) tensor by tensor; resident data on both reductions, the same bits
//! run to run.

use std::sync::Arc;

use backprop::gpu::{GpuContext, GpuPath, PathStrategy};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params, cpu};
use ndarray::Array2;

use crate::common::reference::Reference;
use crate::common::{assert_bits_eq, assert_close, both_reductions, f32_exact, gpu, random, rng, to_f64};

fn fused_model(ctx: Arc<GpuContext>, spec: &MlpSpec, init: &Params<f32>) -> GpuMlp {
    let mut model = GpuMlp::new(ctx, spec.clone(), init).unwrap();
    model.set_path_strategy(PathStrategy::Fixed(GpuPath::Fused)).unwrap();
    model
}

/// Targets for `spec`: one-hot rows for cross-entropy, values in (0, 1) for MSE.
fn targets(spec: &MlpSpec, r: &mut rand_chacha::ChaCha8Rng, batch: usize) -> Array2<f64> {
    let o = spec.output_width();
    match spec.loss() {
        Loss::Mse => f32_exact(&random(r, batch, o, 0.5).mapv(|v| v + 0.5)),
        Loss::CrossEntropy => Array2::from_shape_fn((batch, o), |(b, j)| if (b * 7 + 3) % o == j { 1.0 } else { 0.0 }),
    }
}

/// `steps` fused steps and the f64 reference from the same start on one batch: every loss, the final
/// parameters and state, the step count, the launches a step and the loss summed on the GPU agree.
fn compare_runs(spec: &MlpSpec, cfg: OptimConfig, clip: Option<f32>, batch: usize, steps: usize, lr: f64) {
    let init = Params::init(spec, batch as u64);
    let mut r = rng(batch as u64);
    let x = f32_exact(&random(&mut r, batch, spec.input_width(), 1.0));
    let y = targets(spec, &mut r, batch);
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut reference = Reference::new(spec, &init, cfg, clip);
    let mut model = fused_model(gpu(), spec, &init);
    model.set_optimizer(cfg).unwrap();
    model.set_grad_clip(clip).unwrap();
    let name = format!("{:?} {} {} clip {clip:?} batch {batch}", spec.sizes(), spec.loss().name(), cfg.kind.name());
    let mut loss_sum = 0.0;
    for step in 1..=steps {
        let t = reference.step(x.view(), y.view(), lr);
        loss_sum += t.loss * batch as f64;
        let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().unwrap();
        assert_close(&format!("{name}: loss at step {step}"), &[got], &[t.loss], 1e-6, 1e-4);
    }
    assert_eq!(model.path_for(batch), Some(GpuPath::Fused), "{name}");
    assert_eq!(model.dispatches_per_step(batch), Some(if clip.is_some() { 3 } else { 2 }), "{name}");
    assert_close(&format!("{name}: parameters"), &model.params().unwrap().to_flat(), &reference.flat, 1e-5, 1e-3);
    let state = model.optimizer_state().unwrap();
    assert_eq!(state.step, steps as u64, "{name}");
    if cfg.state_vectors() >= 1 {
        assert_close(&format!("{name}: first state vector"), &state.m, &reference.m, 1e-6, 1e-3);
    }
    let sum = model.take_loss_sum().unwrap();
    assert_close(&format!("{name}: loss summed on the GPU"), &[sum as f32], &[loss_sum], 1e-5, 1e-4);
}

#[test]
fn every_optimizer_loss_and_output_trains_like_the_reference() {
    let xent = MlpSpec::with_output(vec![9, 17, 5, 10], Activation::Relu, Output::Softmax, Loss::CrossEntropy).unwrap();
    let sigmoid_out = MlpSpec::with_output(vec![6, 31, 7, 2], Activation::Sigmoid, Output::Sigmoid, Loss::Mse).unwrap();
    let tanh = MlpSpec::with_output(vec![3, 5, 1], Activation::Tanh, Output::Identity, Loss::Mse).unwrap();
    let kinds = [OptimizerKind::Sgd, OptimizerKind::Momentum { momentum: 0.9 }, OptimizerKind::adam()];
    for (i, kind) in kinds.into_iter().enumerate() {
        let lr = if kind == OptimizerKind::adam() { 0.01 } else { 0.05 };
        for wd in [0.0, 0.01] {
            let cfg = OptimConfig { kind, weight_decay: wd };
            compare_runs(&xent, cfg, None, 13 + i, 10, lr);
            compare_runs(&sigmoid_out, cfg, Some(0.05), 37, 10, lr);
        }
        compare_runs(&tanh, OptimConfig { kind, weight_decay: 0.0 }, None, 1, 10, lr);
    }
}

#[test]
fn depths_one_to_six_and_64_and_widths_up_to_the_bound_train_like_the_reference() {
    let deepest = [3; 65];
    let nets: [&[usize]; 7] = [
        &[3, 1],
        &[2, 65, 2],
        &[5, 63, 17, 3],
        &[7, 64, 2, 3, 4],
        &[3, 128, 3, 128, 3, 2],
        &[2, 3, 5, 7, 11, 13, 1],
        &deepest,
    ];
    for (k, sizes) in nets.into_iter().enumerate() {
        let act = Activation::ALL[k % 4];
        let spec = MlpSpec::with_output(sizes.to_vec(), act, Output::Sigmoid, Loss::Mse).unwrap();
        compare_runs(&spec, OptimConfig::sgd(), None, [1, 2, 67, 3, 71, 41, 5][k], 6, 0.1);
    }
}

/// The traced step (what `--verify` reads) on the fused step: Z, A and δ of every layer, the loss and the
/// gradients of one step, and the updated parameters, against the reference.
#[test]
fn the_traced_fused_step_matches_the_reference_tensor_by_tensor() {
    for (spec, lr) in [
        (MlpSpec::new(vec![5, 9, 3], vec![Activation::Relu, Activation::Sigmoid], Loss::Mse).unwrap(), 0.1),
        (MlpSpec::with_output(vec![4, 7, 6, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap(), 0.1),
    ] {
        let init = Params::init(&spec, 4);
        let mut r = rng(4);
        let x = f32_exact(&random(&mut r, 37, spec.input_width(), 1.0));
        let y = targets(&spec, &mut r, 37);
        let mut reference = init.to_f64();
        let want = cpu::sgd_step(&spec, &mut reference, x.view(), y.view(), lr).unwrap();
        let mut model = fused_model(gpu(), &spec, &init);
        let got = model.traced_step(x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view(), lr as f32).unwrap();
        assert_eq!(model.path_for(37), Some(GpuPath::Fused));
        let v = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();
        for l in 0..spec.layers() {
            assert_close(&format!("Z{l}"), got.pre[l].as_slice().unwrap(), &v(&want.pre[l]), 1e-5, 1e-4);
            assert_close(&format!("A{l}"), got.post[l].as_slice().unwrap(), &v(&want.post[l]), 1e-5, 1e-4);
            assert_close(&format!("delta{l}"), got.delta[l].as_slice().unwrap(), &v(&want.delta[l]), 1e-6, 1e-4);
        }
        assert_close("grads", &got.grads.to_flat(), &want.grads.to_flat(), 1e-6, 1e-4);
        assert_close("loss", &[got.loss], &[want.loss], 1e-7, 1e-5);
        assert_close("updated", &model.params().unwrap().to_flat(), &reference.to_flat(), 1e-6, 1e-4);
    }
}

/// Resident data, batches of 8 with a partial last one, Adam and then SGD with the learning rate changing:
/// the fused step on both reductions ends where the CPU backend does, and twice over with the same bits.
#[test]
fn resident_data_on_both_reductions_matches_the_cpu_backend_bit_for_bit_run_to_run() {
    let spec = MlpSpec::with_output(vec![6, 19, 4], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let init = Params::init(&spec, 21);
    let mut r = rng(21);
    let x = random(&mut r, 53, 6, 1.0).mapv(|v| v as f32);
    let y = Array2::from_shape_fn((53, 4), |(i, j)| if (i * 5) % 4 == j { 1.0f32 } else { 0.0 });
    let order: Vec<usize> = (0..53).map(|i| (i * 17) % 53).collect();
    let train = |b: &mut dyn Backend| {
        b.set_data(x.view(), y.view()).unwrap();
        for (cfg, lr) in [(OptimConfig::new(OptimizerKind::adam()), 0.01), (OptimConfig::sgd(), 0.5)] {
            b.set_optimizer(cfg).unwrap();
            b.run_steps(&order, 8, lr).unwrap();
            b.run_steps(&order, 8, lr / 2.0).unwrap();
        }
        (b.params().unwrap().to_flat(), b.take_loss_sum().unwrap())
    };
    let (want, want_loss) = train(&mut CpuBackend::new(spec.clone(), init.clone()).unwrap());
    for ctx in both_reductions() {
        let runs: Vec<_> = (0..2).map(|_| train(&mut fused_model(ctx.clone(), &spec, &init))).collect();
        let name = format!("{:?}", ctx.reductions());
        assert_close(&format!("{name}: params after 28 resident steps"), &runs[0].0, &to_f64(&want), 1e-5, 1e-4);
        assert_close(&format!("{name}: loss sum"), &[runs[0].1 as f32], &[want_loss], 1e-5, 1e-4);
        assert_bits_eq(&format!("{name}: two runs"), &runs[1].0, &runs[0].0);
        assert_eq!(runs[0].1.to_bits(), runs[1].1.to_bits(), "{name}: the same loss sum");
    }
}
