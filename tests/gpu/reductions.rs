//! The kernels that sum across a workgroup (`bias_grad`, `mse_loss`, `xent_loss`, `grad_norm` with
//! `grad_norm_finish`) on both reductions of `shaders/prelude/`: subgroup operations (the default device
//! on lavapipe, which has them) and the workgroup-memory fallback; each against the reference, and the same
//! bits when run again.

use backprop::cpu;
use backprop::gpu::shaders::Reductions;
use backprop::gpu::structs::StepState;
use backprop::gpu::{GpuContext, buffer, ops};
use backprop::optim::{self, OptimConfig};
use ndarray::Array2;

use crate::common::{assert_bits_eq, assert_close, both_reductions, f32_exact, gpu, no_subgroups, random, rng, to_f32};

fn read(ctx: &GpuContext, b: &wgpu::Buffer, off: usize, len: usize) -> Vec<f32> {
    buffer::read(ctx, b, off, len).unwrap()
}

/// Runs `d` twice on the same inputs; the second result must have the first's bits.
fn twice(ctx: &GpuContext, d: &[&ops::Dispatch], out: &wgpu::Buffer, off: usize, len: usize) -> Vec<f32> {
    ops::run(ctx, d).unwrap();
    let first = read(ctx, out, off, len);
    ops::run(ctx, d).unwrap();
    assert_bits_eq(&format!("{:?}: a second run", ctx.reductions()), &read(ctx, out, off, len), &first);
    first
}

#[test]
fn lavapipe_has_subgroups_and_they_can_be_declined() {
    if gpu().adapter().name.contains("llvmpipe") {
        assert_eq!(gpu().reductions(), Reductions::Subgroup, "lavapipe has subgroup operations");
    }
    assert_eq!(no_subgroups().reductions(), Reductions::Workgroup);
}

#[test]
fn bias_grad_on_both_reductions() {
    for ctx in both_reductions() {
        let mut r = rng(41);
        for (b, o) in [(1usize, 1usize), (1, 300), (5, 1), (67, 31), (129, 257), (1000, 10), (16, 17), (17, 16)] {
            let delta = f32_exact(&random(&mut r, b, o, 1.0));
            let db = buffer::storage_init(&ctx, "delta", &to_f32(&delta)).unwrap();
            let out = buffer::storage_init(&ctx, "db", &vec![f32::NAN; o + 3]).unwrap();
            let d = ops::bias_grad(&ctx, (b, o), &db, (&out, 3)).unwrap();
            let got = twice(&ctx, &[&d], &out, 3, o);
            let want = cpu::bias_grad(delta.view()).to_vec();
            assert_close(&format!("{:?} db ({b},{o})", ctx.reductions()), &got, &want, 1e-5, 1e-5);
            assert!(read(&ctx, &out, 0, 3).iter().all(|v| v.is_nan()), "db wrote outside its slot");
        }
    }
}

#[test]
fn mse_and_cross_entropy_losses_on_both_reductions() {
    for ctx in both_reductions() {
        let mut r = rng(42);
        for (b, o) in [(1usize, 1usize), (1, 3), (7, 1), (13, 10), (67, 5), (257, 3), (600, 2)] {
            let pred = f32_exact(&random(&mut r, b, o, 2.0));
            let target = f32_exact(&random(&mut r, b, o, 1.0));
            let onehot = Array2::from_shape_fn((b, o), |(i, j)| if (i * 3 + 1) % o == j { 1.0 } else { 0.0 });
            let upload = |name: &str, a: &Array2<f64>| buffer::storage_init(&ctx, name, &to_f32(a)).unwrap();
            let (pb, tb, hb) = (upload("pred", &pred), upload("target", &target), upload("one-hot", &onehot));
            let at = ops::offset_alignment(&ctx);
            let loss = buffer::storage_init(&ctx, "loss", &vec![f32::NAN; 2 * at]).unwrap();
            let whole = ops::Piece::whole(b);
            let mse = ops::mse_loss(&ctx, (b, o), whole, &pb, &tb, (&loss, 0), 0.0).unwrap();
            let xent = ops::xent_loss(&ctx, (b, o), whole, &pb, &hb, (&loss, at), 0.0).unwrap();
            let name = format!("{:?} ({b},{o})", ctx.reductions());
            let got = twice(&ctx, &[&mse], &loss, 0, 1);
            assert_close(&format!("{name} mse"), &got, &[cpu::mse_loss(pred.view(), target.view())], 1e-7, 1e-5);
            let got = twice(&ctx, &[&xent], &loss, at, 1);
            assert_close(&format!("{name} xent"), &got, &[cpu::xent_loss(pred.view(), onehot.view())], 1e-6, 1e-5);
        }
    }
}

/// The gradient norm of `--max-grad-norm` (`grad_norm`, then `grad_norm_finish`) as the clip coefficient
/// it leaves in the step state, and the SGD step it scales.
#[test]
fn the_gradient_norm_on_both_reductions() {
    for ctx in both_reductions() {
        let mut r = rng(43);
        for n in [1usize, 7, 255, 256, 257, 5000] {
            let g: Vec<f64> = to_f32(&random(&mut r, 1, n, 1.0)).iter().map(|&v| v as f64).collect();
            let p: Vec<f64> = to_f32(&random(&mut r, 1, n, 1.0)).iter().map(|&v| v as f64).collect();
            let store = |name: &str, v: &[f64]| {
                buffer::storage_init(&ctx, name, &v.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap()
            };
            let (gb, pb, loss) = (store("grads", &g), store("params", &p), store("loss", &[0.5, 0.0]));
            let step = buffer::storage_struct(&ctx, "step state", &StepState::START).unwrap();
            let partials = buffer::storage(&ctx, "partials", ops::update_pieces(&ctx, n).unwrap()).unwrap();
            let state = ops::OptimBuffers { m: None, v: None, step: &step, loss: &loss, partials: &partials };
            let list = ops::optimizer(&ctx, &OptimConfig::sgd(), n, 0.1, Some(0.5), &gb, &pb, state).unwrap();
            ops::run(&ctx, &list.iter().collect::<Vec<_>>()).unwrap();
            let c = optim::clip_coefficient(&g, 0.5);
            let name = format!("{:?} n {n}", ctx.reductions());
            let got: StepState = buffer::read_struct(&ctx, &step, 0).unwrap();
            assert_close(&format!("{name}: clip coefficient"), &[got.clip], &[c], 1e-7, 1e-5);
            let want: Vec<f64> = p.iter().zip(&g).map(|(p, g)| p - 0.1 * g * c).collect();
            assert_close(&format!("{name}: clipped step"), &read(&ctx, &pb, 0, n), &want, 1e-7, 1e-5);
        }
    }
}
