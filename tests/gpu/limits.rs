//! Device limits. Work larger than the device's storage-binding limit is split into bindings that fit and
//! trains to the same numbers as the reference; only work that cannot be split at all (one aligned piece of
//! rows, or one row of a weight matrix, larger than a binding) is a typed error naming the limit and the
//! sizes, raised before anything runs. Tested on the real adapter with the limit lowered artificially.

use std::sync::Arc;

use backprop::gpu::{GpuContext, ops};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, CpuBackend, Error, GpuMlp, Loss, MlpSpec, Params, cpu};
use ndarray::Array2;

use crate::common::reference::Reference;
use crate::common::{assert_close, f32_exact, random, rng, small_device, to_f64};

/// The binding limit the splitting tests run under: 4 KiB, 1024 values.
const CAP: u64 = 4 << 10;

fn expect_limit(e: Error) -> (u64, u64) {
    let text = e.to_string();
    match e {
        Error::DeviceLimit { limit, requested, available, .. } => {
            assert_eq!(limit, "max_storage_buffer_binding_size", "{text}");
            assert!(text.contains(&requested.to_string()) && text.contains(&available.to_string()), "{text}");
            assert!(requested > available, "{text}");
            (requested, available)
        }
        other => panic!("expected a DeviceLimit error, got: {other}"),
    }
}

/// 13 → 97 → 29 → 5 under a 1024-value binding: 4350 parameters (5 optimizer pieces), W1 of 1261 values
/// (K split 10 + 3 rows), W2 of 2813 values (K split 35 + 35 + 27 rows: a middle piece too), and batches
/// taken 8 rows at a time (the widest layer has 97 values a row; lavapipe aligns offsets to 8 values).
fn split_spec(output: Output, loss: Loss) -> MlpSpec {
    MlpSpec::with_output(vec![13, 97, 29, 5], Activation::Tanh, output, loss).unwrap()
}

#[test]
fn the_device_is_opened_with_the_lowered_limit() {
    let ctx = small_device(CAP);
    assert_eq!(ctx.limits().max_storage_buffer_binding_size, CAP);
    // The shapes below split as their comments say only where offsets align to 8 values or fewer.
    assert!(ops::offset_alignment(&ctx) <= 8, "alignment {} values", ops::offset_alignment(&ctx));
    assert_eq!(ops::rows_per_binding(&ctx, 97), (1024 - (ops::offset_alignment(&ctx) - 1)) / 97);
    assert_eq!(ops::pieces(23, 8), vec![0..8, 8..16, 16..23]);
    assert_eq!(ops::pieces(0, 8), vec![0..0]);
}

#[test]
fn a_binding_beyond_the_limit_is_a_typed_error_not_a_crash() {
    let ctx = small_device(CAP);
    let n = 1025;
    let (a, b) =
        (backprop::gpu::buffer::storage(&ctx, "a", n).unwrap(), backprop::gpu::buffer::storage(&ctx, "b", n).unwrap());
    let (whole, identity) = (ops::Piece::whole(n), Activation::Identity);
    let e = ops::mse_delta(&ctx, (n, 1), whole, identity, &a, &a, &b).err().expect("too large");
    let (requested, available) = expect_limit(e);
    assert_eq!((requested, available), (n as u64 * 4, CAP));
    // One value fewer fits.
    ops::mse_delta(&ctx, (n - 1, 1), ops::Piece::whole(n - 1), identity, &a, &a, &b).unwrap();
}

/// SGD steps uploaded from the host, on a model and batch that both exceed a binding, against the f64
/// reference: every loss, the gradients of a traced step, and the final parameters agree.
#[test]
fn a_model_and_batch_larger_than_a_binding_train_like_the_reference() {
    let ctx = small_device(CAP);
    let spec = split_spec(Output::Sigmoid, Loss::Mse);
    let init = Params::init(&spec, 5);
    assert!(init.to_flat().len() > 1024 * 4, "the parameters span several bindings");
    let mut r = rng(5);
    let batch = 23; // 23 rows of 97 values = 2231 > 1024: pieces of 8, 8, 7 rows
    let x = f32_exact(&random(&mut r, batch, 13, 1.0));
    let y = f32_exact(&random(&mut r, batch, 5, 0.5));
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut model = GpuMlp::new(ctx, spec.clone(), &init).unwrap();
    let mut reference = Reference::new(&spec, &init, OptimConfig::sgd(), None);
    let lr = 0.3;
    for step in 0..4 {
        let t = reference.step(x.view(), y.view(), lr);
        if step == 0 {
            let trace = model.traced_step(x32.view(), y32.view(), lr as f32).unwrap();
            assert_close("split loss", &[trace.loss], &[t.loss], 1e-6, 1e-5);
            for l in 0..spec.layers() {
                let z: Vec<f32> = trace.pre[l].iter().copied().collect();
                let want: Vec<f64> = t.pre[l].iter().copied().collect();
                assert_close(&format!("split Z{l}"), &z, &want, 1e-5, 1e-4);
            }
            assert_close("split gradients", &trace.grads.to_flat(), &t.grads.to_flat(), 1e-6, 1e-3);
        } else {
            let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().unwrap();
            assert_close(&format!("split loss at step {step}"), &[got], &[t.loss], 1e-6, 1e-4);
        }
    }
    assert_close("split parameters after 4 steps", &model.params().unwrap().to_flat(), &reference.flat, 1e-5, 1e-3);
    // Prediction on a batch that spans several pieces.
    let (_, post) = cpu::forward(&spec, &reference.params(), x.view()).unwrap();
    let got = model.predict(x32.view()).unwrap();
    let want_out: Vec<f64> = post[spec.layers() - 1].iter().copied().collect();
    assert_close("split predictions", &got.iter().copied().collect::<Vec<_>>(), &want_out, 1e-5, 1e-3);
}

/// Plain SGD fused into the backward pass (each W piece updated by a product adding −lr·A_prevᵀ·δ into it,
/// after δ_prev has read the old W) with weight matrices split across bindings and the batch in one piece,
/// the learning rate changing from step to step: the same losses and parameters as the reference.
#[test]
fn fused_sgd_on_split_weights_trains_like_the_reference() {
    let ctx = small_device(CAP);
    let spec = split_spec(Output::Sigmoid, Loss::Mse);
    let init = Params::init(&spec, 6);
    let mut r = rng(6);
    let batch = 7; // 7 rows of 97 values fit one binding: the batch is one piece
    let x = f32_exact(&random(&mut r, batch, 13, 1.0));
    let y = f32_exact(&random(&mut r, batch, 5, 0.5));
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut model = GpuMlp::new(ctx, spec.clone(), &init).unwrap();
    let mut reference = Reference::new(&spec, &init, OptimConfig::sgd(), None);
    for (step, lr) in [0.3, 0.3, 0.1, 0.2].into_iter().enumerate() {
        let t = reference.step(x.view(), y.view(), lr);
        let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().unwrap();
        assert_close(&format!("fused SGD loss at step {step}"), &[got], &[t.loss], 1e-6, 1e-4);
    }
    let params = model.params().unwrap().to_flat();
    assert_close("fused SGD parameters after 4 steps", &params, &reference.flat, 1e-5, 1e-3);
    assert_eq!(model.optimizer_state().unwrap().step, 4);
}

/// Training from data resident on the GPU, itself larger than a binding (gathered in pieces), with
/// softmax cross-entropy, Adam and gradient clipping (its norm summed over the parameters' pieces): the
/// same parameters, optimizer state and summed loss as the CPU backend, and bit-identical from run to run.
#[test]
fn resident_data_larger_than_a_binding_trains_like_the_cpu_backend() {
    let ctx = small_device(CAP);
    let spec = split_spec(Output::Softmax, Loss::CrossEntropy);
    let init = Params::init(&spec, 6);
    let n = 101; // 101 rows of 13 = 1313 values > 1024
    let mut r = rng(6);
    let x = random(&mut r, n, 13, 1.0).mapv(|v| v as f32);
    let y = Array2::from_shape_fn((n, 5), |(i, j)| if (i * 3 + 1) % 5 == j { 1.0f32 } else { 0.0 });
    let adam = OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 };
    let mut gpu = GpuMlp::new(ctx.clone(), spec.clone(), &init).unwrap();
    let mut again = GpuMlp::new(ctx, spec.clone(), &init).unwrap();
    let mut cpu = CpuBackend::new(spec.clone(), init.clone()).unwrap();
    let order: Vec<usize> = (0..n).map(|i| (i * 37 + 11) % n).collect();
    for b in [&mut gpu as &mut dyn Backend, &mut again, &mut cpu] {
        b.set_optimizer(adam).unwrap();
        b.set_grad_clip(Some(0.5)).unwrap();
        b.set_data(x.view(), y.view()).unwrap();
        // Batches of 23: four full ones (three pieces each) and one of 9 (two pieces).
        b.run_steps(&order, 23, 0.01).unwrap();
        b.run_steps(&order, 23, 0.005).unwrap();
    }
    let (g, c) = (gpu.params().unwrap(), cpu.params().unwrap());
    assert_eq!(g, again.params().unwrap(), "split runs are deterministic: bit-identical parameters");
    assert_close("resident split parameters", &g.to_flat(), &to_f64(&c.to_flat()), 1e-5, 1e-3);
    let (gs, cs) = (gpu.optimizer_state().unwrap(), cpu.optimizer_state().unwrap());
    assert_eq!(gs.step, 10);
    assert_eq!(gs.step, cs.step);
    assert_close("resident split Adam m", &gs.m, &to_f64(&cs.m), 1e-6, 1e-3);
    assert_close("resident split Adam v", &gs.v, &to_f64(&cs.v), 1e-8, 1e-3);
    let (gl, cl) = (gpu.take_loss_sum().unwrap(), cpu.take_loss_sum().unwrap());
    assert_close("resident split loss sum", &[gl as f32], &[cl], 1e-5, 1e-4);
}

/// Momentum on the f64 reference (`optim::update`) against a split model whose update goes in pieces.
#[test]
fn a_split_optimizer_update_matches_the_reference() {
    let ctx = small_device(CAP);
    let spec = split_spec(Output::Sigmoid, Loss::Mse);
    let init = Params::init(&spec, 7);
    let cfg = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.001 };
    let mut r = rng(7);
    let x = f32_exact(&random(&mut r, 9, 13, 1.0));
    let y = f32_exact(&random(&mut r, 9, 5, 0.5));
    let mut model = GpuMlp::new(ctx, spec.clone(), &init).unwrap();
    model.set_optimizer(cfg).unwrap();
    let mut reference = Reference::new(&spec, &init, cfg, None);
    for _ in 0..3 {
        reference.step(x.view(), y.view(), 0.1);
        model.step(x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view(), 0.1, false).unwrap();
    }
    assert_close("split momentum parameters", &model.params().unwrap().to_flat(), &reference.flat, 1e-5, 1e-3);
    assert_close("split momentum buffer", &model.optimizer_state().unwrap().m, &reference.m, 1e-6, 1e-3);
}

/// MNIST-sized training inputs (60000 × 784 values, 188 MB) under WebGPU's default 128 MiB binding limit
/// (lavapipe's own): gathered from two pieces, the steps match the CPU backend's.
#[test]
fn mnist_sized_data_beyond_the_default_binding_limit_trains() {
    let ctx = small_device(128 << 20);
    let spec = MlpSpec::uniform(vec![784, 32, 10], Activation::Sigmoid, Loss::Mse).unwrap();
    let n = 60_000;
    assert!(n * 784 * 4 > 128 << 20);
    let x = Array2::<f32>::from_shape_fn((n, 784), |(i, j)| ((i * 31 + j) % 97) as f32 / 97.0);
    let y = Array2::<f32>::from_shape_fn((n, 10), |(i, j)| if i % 10 == j { 1.0 } else { 0.0 });
    // Rows from both ends of the set, so both pieces are read.
    let rows: Vec<usize> = (0..200).map(|i| if i % 2 == 0 { i * 13 } else { n - 1 - i * 7 }).collect();
    let init = Params::init(&spec, 3);
    let mut gpu = GpuMlp::new(ctx, spec.clone(), &init).unwrap();
    let mut cpu = CpuBackend::new(spec, init).unwrap();
    for b in [&mut gpu as &mut dyn Backend, &mut cpu] {
        b.set_data(x.view(), y.view()).unwrap();
        b.run_steps(&rows, 64, 0.5).unwrap();
    }
    assert_close(
        "default-limit parameters",
        &gpu.params().unwrap().to_flat(),
        &to_f64(&cpu.params().unwrap().to_flat()),
        1e-6,
        1e-4,
    );
    let (gl, cl) = (gpu.take_loss_sum().unwrap(), cpu.take_loss_sum().unwrap());
    assert_close("default-limit loss sum", &[gl as f32], &[cl], 1e-5, 1e-5);
}

#[test]
fn work_that_cannot_be_split_is_refused_with_the_sizes_before_anything_runs() {
    // 256 values a binding: 8 aligned rows of 97 values (3104 bytes) cannot fit, so a batch cannot be split.
    let ctx = small_device(1 << 10);
    let spec = MlpSpec::uniform(vec![8, 97, 4], Activation::Tanh, Loss::Mse).unwrap();
    let init = Params::init(&spec, 1);
    let mut model = GpuMlp::new(ctx.clone(), spec, &init).unwrap();
    let fits = 256 / 97; // 2 rows of the widest layer fit one binding whole
    let (x, y) = (Array2::<f32>::zeros((fits, 8)), Array2::<f32>::zeros((fits, 4)));
    model.step(x.view(), y.view(), 0.1, true).unwrap();
    let trained = model.params().unwrap();
    let (x, y) = (Array2::<f32>::zeros((40, 8)), Array2::<f32>::zeros((40, 4)));
    let e = model.step(x.view(), y.view(), 0.1, true).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("97 values"), "{text}");
    expect_limit(e);
    assert_eq!(model.params().unwrap(), trained, "nothing ran");

    // A layer 300 wide: one row of its weights (1200 bytes) is more than a binding.
    let spec = MlpSpec::uniform(vec![3, 300, 2], Activation::Relu, Loss::Mse).unwrap();
    let e = GpuMlp::new(ctx, spec.clone(), &Params::init(&spec, 1)).err().expect("refused when the model is made");
    let text = e.to_string();
    let (requested, available) = expect_limit(e);
    assert_eq!((requested, available), (1200, 1 << 10), "{text}");
    assert!(text.contains("layer 1"), "{text}");
}

/// The buffers of a batch are checked before any is made: all of them against the memory they come from
/// (here a budget of 1 MiB; on a CPU adapter, the host's available memory), each against the device's
/// largest buffer. Past either, one error that says to use a smaller --batch-size, and nothing ran; a
/// batch within them trains. A model too large for the budget is refused when it is made.
#[test]
fn a_batch_beyond_the_memory_or_a_buffer_limit_is_refused_before_anything_is_made() {
    let ctx = Arc::new(GpuContext::new(&Default::default()).unwrap().with_memory_budget(1 << 20));
    // 2496 bytes of buffers a row: 400 rows fit 1 MiB, 500 do not.
    let spec = MlpSpec::uniform(vec![8, 200, 4], Activation::Tanh, Loss::Mse).unwrap();
    let mut model = GpuMlp::new(ctx.clone(), spec.clone(), &Params::init(&spec, 1)).unwrap();
    let batch = |b: usize| (Array2::<f32>::zeros((b, 8)), Array2::<f32>::zeros((b, 4)));
    let (x, y) = batch(400);
    model.step(x.view(), y.view(), 0.1, false).unwrap();
    let trained = model.params().unwrap();
    let (x, y) = batch(500);
    let e = model.step(x.view(), y.view(), 0.1, false).unwrap_err().to_string();
    assert!(e.contains("a batch of 500 rows") && e.contains("--batch-size") && e.contains("1048576"), "{e}");
    assert_eq!(model.params().unwrap(), trained, "nothing ran");
    let wide = MlpSpec::uniform(vec![8, 20_000, 4], Activation::Tanh, Loss::Mse).unwrap();
    let e = GpuMlp::new(ctx, wide.clone(), &Params::init(&wide, 1)).err().expect("refused").to_string();
    assert!(e.contains("the model") && e.contains("1048576"), "{e}");

    // Z of 1000 rows of 600,000 values is 2.4 GB, past lavapipe's 2 GiB buffer limit: refused before
    // anything is allocated (the whole batch would be 7 GB).
    let ctx = crate::common::gpu();
    let spec = MlpSpec::uniform(vec![1, 600_000, 1], Activation::Relu, Loss::Mse).unwrap();
    let mut model = GpuMlp::new(ctx.clone(), spec.clone(), &Params::init(&spec, 1)).unwrap();
    let (x, y) = (Array2::<f32>::zeros((1000, 1)), Array2::<f32>::zeros((1000, 1)));
    let e = model.step(x.view(), y.view(), 0.1, false).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("Z0") && text.contains("--batch-size"), "{text}");
    assert!(matches!(e, Error::DeviceLimit { limit: "max_buffer_size", requested: 2_400_000_000, .. }), "{text}");
}

#[test]
fn a_buffer_beyond_the_device_limit_is_a_typed_error() {
    // (Bindings beyond max_storage_buffer_binding_size are tested above, under a lowered limit.)
    let ctx = crate::common::gpu();
    let max = ctx.limits().max_buffer_size as usize;
    let e = backprop::gpu::buffer::storage(&ctx, "huge", max / 4 + 1).unwrap_err();
    match &e {
        backprop::Error::DeviceLimit { limit, requested, available, .. } => {
            assert_eq!(*limit, "max_buffer_size");
            assert!(requested > available);
        }
        other => panic!("expected DeviceLimit, got {other}"),
    }
    assert!(e.to_string().contains("max_buffer_size") && e.to_string().contains("huge"), "{e}");
}
