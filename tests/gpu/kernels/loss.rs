//! The loss kernels and the bias gradient against their twins: `loss_grad` (the output layer's δ under
//! MSE with every output activation, and under the fused softmax cross-entropy), `mse_loss`, `xent_loss`,
//! `softmax_rows`, `bias_grad` (summed, added to, and applied as plain SGD).

use backprop::Activation;
use backprop::cpu;
use backprop::gpu::{buffer, ops};
use ndarray::{Array1, Array2};

use super::{nan_buffer, read, upload};
use crate::common::{assert_close, f32_exact, flat, gpu, random, rng, to_f32};

/// Probability targets: one-hot rows mixed with soft rows.
fn probabilities(r: &mut rand_chacha::ChaCha8Rng, b: usize, o: usize) -> Array2<f64> {
    let mut y = random(r, b, o, 1.0).mapv(f64::abs);
    for (i, mut row) in y.outer_iter_mut().enumerate() {
        if i % 2 == 0 {
            row.fill(0.0);
            row[i % o] = 1.0;
        } else {
            let s = row.sum();
            row.mapv_inplace(|v| v / s);
        }
    }
    f32_exact(&y)
}

/// `loss_grad` against `cpu::loss_grad`, and against the math it fuses: under MSE `dL/dA ⊙ f'(Z)` for
/// every output activation (the identity: the MSE gradient itself), under cross-entropy `(A − Y) / B`.
pub(super) fn loss_grad() {
    let (ctx, mut r) = (gpu(), rng(15));
    for act in Activation::ALL {
        for (b, o) in [(1usize, 1usize), (1, 3), (7, 1), (13, 10), (67, 5), (257, 3)] {
            let z = f32_exact(&random(&mut r, b, o, 3.0));
            let a = f32_exact(&cpu::activation_forward(act, z.view()));
            let target = f32_exact(&random(&mut r, b, o, 1.0));
            let delta = nan_buffer(&ctx, b * o);
            let (ab, tb) = (upload(&ctx, &a), upload(&ctx, &target));
            let d = ops::mse_delta(&ctx, (b, o), ops::Piece::whole(b), act, &ab, &tb, &delta).unwrap();
            ops::run(&ctx, &[&d]).unwrap();
            let got = read(&ctx, &delta, 0, b * o);
            // The identity's δ_L is dL/dA itself, held to the tighter tolerance of the MSE gradient.
            let rtol = if act == Activation::Identity { 1e-5 } else { 1e-4 };
            let twin = cpu::loss_grad(2.0 / (b * o) as f64, act, a.view(), target.view());
            assert_close(&format!("{act} delta_L ({b},{o})"), &got, &flat(&twin), 1e-7, rtol);
            let math = cpu::activation_backward(act, cpu::mse_grad(a.view(), target.view()).view(), z.view());
            assert_close(&format!("{act} delta_L ({b},{o}) as dL/dA ⊙ f'(Z)"), &got, &flat(&math), 1e-7, rtol);
        }
    }
    for (b, o) in [(1usize, 1usize), (1, 10), (7, 3), (13, 10), (67, 5), (300, 2)] {
        let probs = f32_exact(&cpu::softmax_rows(f32_exact(&random(&mut r, b, o, 8.0)).view()));
        let y = probabilities(&mut r, b, o);
        let delta = nan_buffer(&ctx, b * o);
        let d = ops::xent_grad(&ctx, (b, o), ops::Piece::whole(b), &upload(&ctx, &probs), &upload(&ctx, &y), &delta)
            .unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let got = read(&ctx, &delta, 0, b * o);
        let twin = cpu::loss_grad(1.0 / b as f64, Activation::Identity, probs.view(), y.view());
        assert_close(&format!("xent delta ({b},{o})"), &got, &flat(&twin), 1e-7, 1e-5);
        assert_close(
            &format!("xent delta ({b},{o}) as (A − Y)/B"),
            &got,
            &flat(&cpu::xent_grad(probs.view(), y.view())),
            1e-7,
            1e-5,
        );
    }
}

/// `mse_loss` against `cpu::mse_loss`: the loss at an aligned offset of a NaN-filled buffer, nothing
/// written beside it (with no accumulation weight, not the running sum either).
pub(super) fn mse_loss() {
    let (ctx, mut r) = (gpu(), rng(5));
    for (b, o) in [(1usize, 1usize), (1, 3), (7, 1), (13, 10), (67, 5), (257, 3)] {
        let pred = f32_exact(&random(&mut r, b, o, 1.0));
        let target = f32_exact(&random(&mut r, b, o, 1.0));
        let at = ops::offset_alignment(&ctx);
        let loss = nan_buffer(&ctx, at + 3);
        let d = ops::mse_loss(
            &ctx,
            (b, o),
            ops::Piece::whole(b),
            &upload(&ctx, &pred),
            &upload(&ctx, &target),
            (&loss, at),
            0.0,
        )
        .unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let got = read(&ctx, &loss, 0, at + 3);
        assert_close(
            &format!("loss ({b},{o})"),
            &got[at..at + 1],
            &[cpu::mse_loss(pred.view(), target.view())],
            1e-7,
            1e-5,
        );
        let outside = got[..at].iter().chain(&got[at + 1..]);
        assert!(outside.copied().all(f32::is_nan), "loss wrote outside its slot (acc_weight 0: not the sum either)");
    }
}

/// `xent_loss` against `cpu::xent_loss` from the logits, adding `loss · 2` to a running sum of 1.5.
pub(super) fn xent_loss() {
    let (ctx, mut r) = (gpu(), rng(9));
    for (b, o) in [(1usize, 1usize), (1, 10), (7, 3), (13, 10), (67, 5), (300, 2)] {
        let z = f32_exact(&random(&mut r, b, o, 8.0));
        let y = probabilities(&mut r, b, o);
        let loss = buffer::storage_init(&ctx, "loss", &[f32::NAN, 1.5]).unwrap();
        let d = ops::xent_loss(&ctx, (b, o), ops::Piece::whole(b), &upload(&ctx, &z), &upload(&ctx, &y), &loss, 2.0)
            .unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let want = cpu::xent_loss(z.view(), y.view());
        assert_close(&format!("xent loss ({b},{o})"), &read(&ctx, &loss, 0, 2), &[want, 1.5 + 2.0 * want], 1e-6, 1e-5);
    }
}

/// `softmax_rows` against `cpu::softmax_rows`, on logits spread over ±8.
pub(super) fn softmax_rows() {
    let (ctx, mut r) = (gpu(), rng(19));
    for (b, o) in [(1usize, 1usize), (1, 10), (7, 3), (13, 10), (67, 5), (300, 2), (259, 1)] {
        let z = f32_exact(&random(&mut r, b, o, 8.0));
        let probs = nan_buffer(&ctx, b * o);
        let d = ops::softmax_rows(&ctx, (b, o), &upload(&ctx, &z), &probs).unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        assert_close(
            &format!("softmax ({b},{o})"),
            &read(&ctx, &probs, 0, b * o),
            &flat(&cpu::softmax_rows(z.view())),
            1e-6,
            1e-5,
        );
    }
}

/// `bias_grad` against `cpu::bias_grad`: column sums into a slot of a NaN-filled buffer, nothing outside
/// it touched; a later piece of a batch adding its sum; and plain SGD's `b −= lr·Σδ` on a held bias.
pub(super) fn bias_grad() {
    let (ctx, mut r) = (gpu(), rng(6));
    for (b, o) in [(1usize, 1usize), (1, 300), (5, 1), (67, 31), (129, 257), (1000, 10), (16, 17), (17, 16)] {
        let delta = f32_exact(&random(&mut r, b, o, 1.0));
        let db = upload(&ctx, &delta);
        let off = 4;
        let out = nan_buffer(&ctx, off + o + 2);
        ops::run(&ctx, &[&ops::bias_grad(&ctx, (b, o), &db, (&out, off)).unwrap()]).unwrap();
        let want: Array1<f64> = cpu::bias_grad(delta.view());
        let all = read(&ctx, &out, 0, off + o + 2);
        assert_close(&format!("db ({b},{o})"), &all[off..off + o], &want.to_vec(), 1e-5, 1e-5);
        assert!(all[..off].iter().chain(&all[off + o..]).all(|v| v.is_nan()), "db wrote outside its slot");
        // A later piece of the same batch adds its sum.
        ops::run(&ctx, &[&ops::bias_grad_piece(&ctx, (b, o), false, &db, (&out, off)).unwrap()]).unwrap();
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("db accumulated ({b},{o})"), &read(&ctx, &out, off, o), &twice, 2e-5, 1e-5);
        // Plain SGD on a bias: b − 0.25·Σδ.
        let held = f32_exact(&random(&mut r, 1, o, 1.0)).row(0).to_owned();
        let bias = buffer::storage_init(&ctx, "bias", &to_f32(&held.clone().insert_axis(ndarray::Axis(0)))).unwrap();
        ops::run(&ctx, &[&ops::bias_sgd(&ctx, (b, o), 0.25, &db, (&bias, 0)).unwrap()]).unwrap();
        let want_b: Vec<f64> = held.iter().zip(&want).map(|(b, g)| b - 0.25 * g).collect();
        assert_close(&format!("b -= lr·db ({b},{o})"), &read(&ctx, &bias, 0, o), &want_b, 2e-5, 1e-5);
    }
}
