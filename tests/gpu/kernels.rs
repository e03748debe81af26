//! Each GPU kernel against its CPU twin on awkward shapes (1, primes, non-multiples of every tile and
//! workgroup size), with every output buffer pre-filled with NaN so a missed element cannot pass.

use backprop::cpu;
use backprop::gpu::ops::{self, Epilogue, Strided};
use backprop::gpu::shaders::Tile;
use backprop::gpu::structs::{MatmulParams, StepState};
use backprop::gpu::tune::{Strategy, Tuner};
use backprop::gpu::{GpuContext, buffer};
use backprop::model::{Activation, Params};
use backprop::optim::{self, OptimConfig, OptimizerKind, StepScalars};
use ndarray::{Array1, Array2};

use crate::common::{assert_close, f32_exact, flat, gpu, random, rng, to_f32};

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

/// (B, I, O) triples: 1, primes, and sizes just off the 16/32/256 tiles.
const SHAPES: [(usize, usize, usize); 8] =
    [(1, 1, 1), (1, 7, 3), (3, 1, 5), (5, 13, 1), (7, 33, 31), (17, 29, 65), (33, 65, 17), (67, 31, 97)];

/// Every shape with every tiling of the product, plus shapes spanning several big and huge tiles.
fn tiled() -> impl Iterator<Item = (Tile, (usize, usize, usize))> {
    let shapes = SHAPES.into_iter().chain([(130, 70, 129), (259, 11, 131)]);
    shapes.flat_map(|s| Tile::ALL.map(|t| (t, s)))
}

fn nan_buffer(ctx: &GpuContext, len: usize) -> wgpu::Buffer {
    buffer::storage_init(ctx, "nan-filled", &vec![f32::NAN; len]).unwrap()
}

fn read(ctx: &GpuContext, b: &wgpu::Buffer, off: usize, len: usize) -> Vec<f32> {
    buffer::read(ctx, b, off, len).unwrap()
}

#[test]
fn matmul_forward_with_bias_and_every_fused_activation() {
    let ctx = gpu();
    let mut r = rng(1);
    for (tile, (b, i, o)) in tiled() {
        for act in Activation::ALL {
            let x = f32_exact(&random(&mut r, b, i, 1.0));
            let w = f32_exact(&random(&mut r, i, o, 1.0));
            let bias = f32_exact(&random(&mut r, 1, o, 1.0)).row(0).to_owned();
            // The weights and bias sit at odd offsets inside one flat buffer, as in the model.
            let (w_off, b_off) = (3, 3 + i * o + 2);
            let mut flat_params = vec![0.0f32; b_off + o + 1];
            flat_params[w_off..w_off + i * o].copy_from_slice(&to_f32(&w));
            flat_params[b_off..b_off + o].copy_from_slice(&bias.mapv(|v| v as f32).to_vec());
            let xb = buffer::storage_init(&ctx, "x", &to_f32(&x)).unwrap();
            let pb = buffer::storage_init(&ctx, "params", &flat_params).unwrap();
            let out = nan_buffer(&ctx, b * o);
            let pre = nan_buffer(&ctx, b * o);
            let d = ops::matmul(
                &ctx,
                tile,
                (b, o, i),
                Strided::rows(&xb, 0, i),
                Strided::rows(&pb, w_off, o),
                Epilogue::Forward { bias: (&pb, b_off).into(), pre: (&pre, 0).into(), activation: act },
                Strided::rows(&out, 0, o),
            )
            .unwrap();
            ops::run(&ctx, &[&d]).unwrap();
            let z = cpu::linear_forward(x.view(), w.view(), bias.view());
            let a = cpu::activation_forward(act, z.view());
            assert_close(
                &format!("Z ({b},{i},{o}) {act} {tile:?}"),
                &read(&ctx, &pre, 0, b * o),
                &flat(&z),
                ATOL,
                RTOL,
            );
            assert_close(
                &format!("A ({b},{i},{o}) {act} {tile:?}"),
                &read(&ctx, &out, 0, b * o),
                &flat(&a),
                ATOL,
                RTOL,
            );
        }
    }
}

/// The vectorised tile loads of every tiling: operands whose contiguous direction, row stride and offset
/// are multiples of 4, in all four layouts (A along K or M, B along N or K), at shapes whose edges cut
/// through vectors and tiles. Each product's flags are checked, so the vector path is the one tested.
#[test]
fn every_tiling_loads_aligned_operands_as_vectors() {
    let ctx = gpu();
    let mut r = rng(21);
    let shapes = [(64, 64, 16), (67, 70, 45), (130, 132, 101), (5, 9, 7), (4, 4, 4), (257, 129, 37)];
    for (tile, (m, n, k)) in Tile::ALL.into_iter().flat_map(|t| shapes.map(|s| (t, s))) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = f32_exact(&random(&mut r, m, k, 1.0));
            let b = f32_exact(&random(&mut r, k, n, 1.0));
            // Stored with padded rows (a multiple of 4 plus 4) at an offset of 8, transposed where asked.
            let store = |x: &Array2<f64>, t: bool| {
                let x = if t { x.t().to_owned() } else { x.clone() };
                let ld = x.ncols().next_multiple_of(4) + 4;
                let mut v = vec![f32::NAN; 8 + x.nrows() * ld];
                for ((i, j), &e) in x.indexed_iter() {
                    v[8 + i * ld + j] = e as f32;
                }
                (buffer::storage_init(&ctx, "operand", &v).unwrap(), ld)
            };
            let ((ab, lda), (bb, ldb)) = (store(&a, ta), store(&b, tb));
            let sa = Strided {
                buffer: &ab,
                offset: 8,
                row_stride: if ta { 1 } else { lda },
                col_stride: if ta { lda } else { 1 },
            };
            let sb = Strided {
                buffer: &bb,
                offset: 8,
                row_stride: if tb { 1 } else { ldb },
                col_stride: if tb { ldb } else { 1 },
            };
            let out = nan_buffer(&ctx, m * n);
            let d = ops::matmul(&ctx, tile, (m, n, k), sa, sb, Epilogue::Store, Strided::rows(&out, 0, n)).unwrap();
            let flags = d.params::<MatmulParams>().flags;
            let want_flags =
                (if ta { ops::A_VEC_M } else { ops::A_VEC_K }) | (if tb { ops::B_VEC_K } else { ops::B_VEC_N });
            assert_eq!(flags, want_flags, "{tile:?} ({m},{n},{k}) ta {ta} tb {tb}: vector loads");
            ops::run(&ctx, &[&d]).unwrap();
            let name = format!("{tile:?} vectorised product ({m},{n},{k}) ta {ta} tb {tb}");
            assert_close(&name, &read(&ctx, &out, 0, m * n), &flat(&a.dot(&b)), ATOL, RTOL);
        }
    }
    // An odd offset or stride keeps the scalar loads.
    let buf = nan_buffer(&ctx, 64);
    let out = nan_buffer(&ctx, 16);
    let d = ops::matmul(
        &ctx,
        Tile::Big,
        (4, 4, 4),
        Strided::rows(&buf, 1, 4),
        Strided::rows(&buf, 0, 5),
        Epilogue::Store,
        Strided::rows(&out, 0, 4),
    )
    .unwrap();
    assert_eq!(d.params::<MatmulParams>().flags, 0);
}

#[test]
fn matmul_input_grad_reads_w_transposed() {
    let ctx = gpu();
    let mut r = rng(2);
    for (tile, (b, i, o)) in tiled() {
        let delta = f32_exact(&random(&mut r, b, o, 1.0));
        let w = f32_exact(&random(&mut r, i, o, 1.0));
        let w_off = 5;
        let mut flat_params = vec![7.0f32; w_off + i * o + 3];
        flat_params[w_off..w_off + i * o].copy_from_slice(&to_f32(&w));
        let db = buffer::storage_init(&ctx, "delta", &to_f32(&delta)).unwrap();
        let pb = buffer::storage_init(&ctx, "params", &flat_params).unwrap();
        let out = nan_buffer(&ctx, b * i);
        let d = ops::matmul(
            &ctx,
            tile,
            (b, i, o),
            Strided::rows(&db, 0, o),
            Strided::transposed(&pb, w_off, o),
            Epilogue::Store,
            Strided::rows(&out, 0, i),
        )
        .unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let want = cpu::input_grad(delta.view(), w.view());
        assert_close(&format!("dA_prev ({b},{i},{o}) {tile:?}"), &read(&ctx, &out, 0, b * i), &flat(&want), ATOL, RTOL);
    }
}

#[test]
fn matmul_input_grad_with_the_activation_derivative_fused() {
    let ctx = gpu();
    let mut r = rng(12);
    for (tile, (b, i, o)) in tiled() {
        for act in Activation::ALL {
            let delta = f32_exact(&random(&mut r, b, o, 1.0));
            let w = f32_exact(&random(&mut r, i, o, 1.0));
            let z_prev = f32_exact(&random(&mut r, b, i, 3.0));
            let db = buffer::storage_init(&ctx, "delta", &to_f32(&delta)).unwrap();
            let wb = buffer::storage_init(&ctx, "w", &to_f32(&w)).unwrap();
            let zb = buffer::storage_init(&ctx, "z", &to_f32(&z_prev)).unwrap();
            let out = nan_buffer(&ctx, b * i);
            let d = ops::matmul(
                &ctx,
                tile,
                (b, i, o),
                Strided::rows(&db, 0, o),
                Strided::transposed(&wb, 0, o),
                Epilogue::Derivative { z: (&zb, 0).into(), activation: act },
                Strided::rows(&out, 0, i),
            )
            .unwrap();
            ops::run(&ctx, &[&d]).unwrap();
            let da = cpu::input_grad(delta.view(), w.view());
            let want = cpu::activation_backward(act, da.view(), z_prev.view());
            let name = format!("fused delta_prev ({b},{i},{o}) {act} {tile:?}");
            assert_close(&name, &read(&ctx, &out, 0, b * i), &flat(&want), 1e-5, 1e-4);
        }
    }
}

#[test]
fn matmul_weight_grad_is_the_sum_of_outer_products_and_stays_in_its_slot() {
    let ctx = gpu();
    let mut r = rng(3);
    for (tile, (b, i, o)) in tiled() {
        let a_prev = f32_exact(&random(&mut r, b, i, 1.0));
        let delta = f32_exact(&random(&mut r, b, o, 1.0));
        let ab = buffer::storage_init(&ctx, "a_prev", &to_f32(&a_prev)).unwrap();
        let db = buffer::storage_init(&ctx, "delta", &to_f32(&delta)).unwrap();
        // The gradient goes to an offset of a NaN-filled flat buffer; nothing outside it may be touched.
        let off = 11;
        let total = off + i * o + 13;
        let grads = nan_buffer(&ctx, total);
        let d = ops::matmul(
            &ctx,
            tile,
            (i, o, b),
            Strided::transposed(&ab, 0, i),
            Strided::rows(&db, 0, o),
            Epilogue::Store,
            Strided::rows(&grads, off, o),
        )
        .unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let want = cpu::weight_grad(a_prev.view(), delta.view());
        let all = read(&ctx, &grads, 0, total);
        assert_close(&format!("dW ({b},{i},{o}) {tile:?}"), &all[off..off + i * o], &flat(&want), ATOL, RTOL);
        assert!(
            all[..off].iter().chain(&all[off + i * o..]).all(|v| v.is_nan()),
            "dW ({b},{i},{o}) wrote outside its slot"
        );
    }
}

/// `f(z)` and `g ⊙ f'(z)` for every activation as the matmul epilogue applies them (the product is z·1 and
/// g·1, exact): over lengths past one workgroup, against `cpu::activation_forward` and `activation_backward`.
fn epilogue_activation(ctx: &GpuContext, act: Activation, z: &[f32], g: Option<&[f32]>) -> Vec<f32> {
    let n = z.len();
    let one = buffer::storage_init(ctx, "one", &[1.0, 0.0]).unwrap();
    let zb = buffer::storage_init(ctx, "z", z).unwrap();
    let (out, pre) = (nan_buffer(ctx, n), nan_buffer(ctx, n));
    let (input, epilogue) = match g {
        None => (&zb, Epilogue::Forward { bias: (&one, 1).into(), pre: (&pre, 0).into(), activation: act }),
        Some(g) => {
            (&buffer::storage_init(ctx, "g", g).unwrap(), Epilogue::Derivative { z: (&zb, 0).into(), activation: act })
        }
    };
    let d = ops::matmul(
        ctx,
        Tile::Small,
        (n, 1, 1),
        Strided::rows(input, 0, 1),
        Strided::rows(&one, 0, 1),
        epilogue,
        Strided::rows(&out, 0, 1),
    )
    .unwrap();
    ops::run(ctx, &[&d]).unwrap();
    read(ctx, &out, 0, n)
}

#[test]
fn activation_forward_and_backward() {
    let ctx = gpu();
    let mut r = rng(4);
    for n in [1usize, 2, 255, 257, 1031] {
        for act in Activation::ALL {
            let z = f32_exact(&random(&mut r, n, 1, 6.0));
            let g = f32_exact(&random(&mut r, n, 1, 1.0));
            let fwd = epilogue_activation(&ctx, act, &to_f32(&z), None);
            let bwd = epilogue_activation(&ctx, act, &to_f32(&z), Some(&to_f32(&g)));
            let want_f = cpu::activation_forward(act, z.view());
            let want_b = cpu::activation_backward(act, g.view(), z.view());
            assert_close(&format!("{act} forward n={n}"), &fwd, &flat(&want_f), 1e-6, 1e-5);
            assert_close(&format!("{act} backward n={n}"), &bwd, &flat(&want_b), 1e-6, 1e-5);
        }
    }
}

#[test]
fn activations_stay_finite_at_extreme_inputs() {
    let ctx = gpu();
    let z = [-1e30f32, -100.0, -20.0, 0.0, 20.0, 100.0, 1e30];
    for act in [Activation::Sigmoid, Activation::Tanh] {
        let got = epilogue_activation(&ctx, act, &z, None);
        let want: Vec<f64> = z.iter().map(|&v| cpu::activate(act, v as f64)).collect();
        assert_close(&format!("{act} at extremes"), &got, &want, 1e-6, 0.0);
    }
}

#[test]
fn mse_loss_and_gradient() {
    let ctx = gpu();
    let mut r = rng(5);
    for (b, o) in [(1usize, 1usize), (1, 3), (7, 1), (13, 10), (67, 5), (257, 3)] {
        let pred = f32_exact(&random(&mut r, b, o, 1.0));
        let target = f32_exact(&random(&mut r, b, o, 1.0));
        let pb = buffer::storage_init(&ctx, "pred", &to_f32(&pred)).unwrap();
        let tb = buffer::storage_init(&ctx, "target", &to_f32(&target)).unwrap();
        let grad = nan_buffer(&ctx, b * o);
        // The loss totals at the first aligned offset past 0, in a NaN-filled buffer.
        let at = ops::offset_alignment(&ctx);
        let loss = nan_buffer(&ctx, at + 3);
        let identity = Activation::Identity;
        let g = ops::mse_delta(&ctx, (b, o), ops::Piece::whole(b), identity, &pb, &tb, &grad).unwrap();
        let l = ops::mse_loss(&ctx, (b, o), ops::Piece::whole(b), &pb, &tb, (&loss, at), 0.0).unwrap();
        ops::run(&ctx, &[&g, &l]).unwrap();
        let want_g = cpu::mse_grad(pred.view(), target.view());
        let want_l = cpu::mse_loss(pred.view(), target.view());
        assert_close(&format!("dL/dA ({b},{o})"), &read(&ctx, &grad, 0, b * o), &flat(&want_g), 1e-7, 1e-5);
        let got_l = read(&ctx, &loss, 0, at + 3);
        assert_close(&format!("loss ({b},{o})"), &got_l[at..at + 1], &[want_l], 1e-7, 1e-5);
        let outside = got_l[..at].iter().chain(&got_l[at + 1..]);
        assert!(outside.copied().all(f32::is_nan), "loss wrote outside its slot (acc_weight 0: not the sum either)");
    }
}

/// The last layer's δ under MSE in one kernel: 2 (A − Y) / (B·O) ⊙ f'(Z), f' taken from A = f(Z), for every
/// output activation, at shapes past one workgroup.
#[test]
fn mse_delta_fuses_the_output_activations_derivative() {
    let ctx = gpu();
    let mut r = rng(15);
    for act in Activation::ALL {
        for (b, o) in [(1usize, 1usize), (13, 10), (67, 5), (257, 3)] {
            let z = f32_exact(&random(&mut r, b, o, 3.0));
            let a = to_f32(&cpu::activation_forward(act, z.view())).iter().map(|&v| v as f64).collect::<Vec<_>>();
            let a = Array2::from_shape_vec((b, o), a).unwrap();
            let target = f32_exact(&random(&mut r, b, o, 1.0));
            let ab = buffer::storage_init(&ctx, "A", &to_f32(&a)).unwrap();
            let tb = buffer::storage_init(&ctx, "target", &to_f32(&target)).unwrap();
            let delta = nan_buffer(&ctx, b * o);
            let d = ops::mse_delta(&ctx, (b, o), ops::Piece::whole(b), act, &ab, &tb, &delta).unwrap();
            ops::run(&ctx, &[&d]).unwrap();
            let want = cpu::activation_backward(act, cpu::mse_grad(a.view(), target.view()).view(), z.view());
            let name = format!("{act:?} delta_L ({b},{o})");
            assert_close(&name, &read(&ctx, &delta, 0, b * o), &flat(&want), 1e-7, 1e-4);
        }
    }
}

#[test]
fn bias_grad_column_sums() {
    let ctx = gpu();
    let mut r = rng(6);
    for (b, o) in [(1usize, 1usize), (1, 300), (5, 1), (67, 31), (129, 257), (1000, 10), (16, 17), (17, 16)] {
        let delta = f32_exact(&random(&mut r, b, o, 1.0));
        let db = buffer::storage_init(&ctx, "delta", &to_f32(&delta)).unwrap();
        let off = 4;
        let out = nan_buffer(&ctx, off + o + 2);
        let d = ops::bias_grad(&ctx, (b, o), &db, (&out, off)).unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let want: Array1<f64> = cpu::bias_grad(delta.view());
        let all = read(&ctx, &out, 0, off + o + 2);
        assert_close(&format!("db ({b},{o})"), &all[off..off + o], &want.to_vec(), 1e-5, 1e-5);
        assert!(all[..off].iter().chain(&all[off + o..]).all(|v| v.is_nan()), "db wrote outside its slot");
        // A later piece of the same batch adds its sum.
        let d = ops::bias_grad_piece(&ctx, (b, o), false, &db, (&out, off)).unwrap();
        ops::run(&ctx, &[&d]).unwrap();
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("db accumulated ({b},{o})"), &read(&ctx, &out, off, o), &twice, 2e-5, 1e-5);
    }
}

#[test]
fn sgd_update_over_the_flat_buffer() {
    let ctx = gpu();
    let mut r = rng(7);
    let spec = backprop::MlpSpec::uniform(vec![13, 7, 1], Activation::Sigmoid, backprop::Loss::Mse).unwrap();
    let mut p = Params::<f64>::zeros(&spec);
    let mut g = Params::<f64>::zeros(&spec);
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
    let (m, v) = (nan_buffer(&ctx, 1), nan_buffer(&ctx, 1));
    let cfg = OptimConfig::sgd();
    let sc = buffer::storage_struct(&ctx, "step state", &StepState::START).unwrap();
    let loss = buffer::storage_init(&ctx, "loss", &[0.0, 0.0]).unwrap();
    let state = ops::OptimBuffers { m: Some(&m), v: Some(&v), step: &sc, loss: &loss };
    let d = ops::optimizer(&ctx, &cfg, n, 0.25, None, &gb, &pb, state).unwrap();
    ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
    cpu::sgd_update(&mut p, &g, 0.25);
    assert_close("sgd params", &read(&ctx, &pb, 0, n), &p.to_flat(), 1e-7, 1e-6);
}

#[test]
fn every_optimizer_with_weight_decay_over_several_steps() {
    let ctx = gpu();
    let mut r = rng(8);
    let configs = [
        OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.01 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.5 }, weight_decay: 0.1 },
        OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Adam { beta1: 0.8, beta2: 0.99, eps: 1e-6 }, weight_decay: 0.05 },
    ];
    for n in [1usize, 257, 1031] {
        for cfg in configs {
            let mut p: Vec<f64> = to_f32(&random(&mut r, 1, n, 1.0)).iter().map(|&v| v as f64).collect();
            let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            let pb = buffer::storage_init(&ctx, "params", &p32).unwrap();
            let state = |k: usize| if cfg.state_vectors() > k { vec![0.0f32; n] } else { vec![f32::NAN] };
            let mb = buffer::storage_init(&ctx, "m", &state(0)).unwrap();
            let vb = buffer::storage_init(&ctx, "v", &state(1)).unwrap();
            let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
            let sc = buffer::storage_struct(&ctx, "step state", &StepState::START).unwrap();
            for t in 1..=4u64 {
                let g = f32_exact(&random(&mut r, 1, n, 1.0));
                let gb = buffer::storage_init(&ctx, "grads", &to_f32(&g)).unwrap();
                let s = StepScalars::new(&cfg, 0.01, t);
                let loss = buffer::storage_init(&ctx, "loss", &[0.0, 0.0]).unwrap();
                let state = ops::OptimBuffers { m: Some(&mb), v: Some(&vb), step: &sc, loss: &loss };
                let d = ops::optimizer(&ctx, &cfg, n, 0.01, None, &gb, &pb, state).unwrap();
                ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
                optim::update(&cfg, &mut p, g.as_slice().unwrap(), &mut m, &mut v, s);
            }
            let name = format!("{} wd={} n={n}", cfg.kind.name(), cfg.weight_decay);
            assert_close(&format!("{name} params"), &read(&ctx, &pb, 0, n), &p, 1e-6, 1e-5);
            if cfg.state_vectors() >= 1 {
                assert_close(&format!("{name} m"), &read(&ctx, &mb, 0, n), &m, 1e-6, 1e-5);
            }
            if cfg.state_vectors() >= 2 {
                assert_close(&format!("{name} v"), &read(&ctx, &vb, 0, n), &v, 1e-7, 1e-5);
            }
        }
    }
}

#[test]
fn softmax_and_fused_cross_entropy() {
    let ctx = gpu();
    let mut r = rng(9);
    for (b, o) in [(1usize, 1usize), (1, 10), (7, 3), (13, 10), (67, 5), (300, 2)] {
        let z = f32_exact(&random(&mut r, b, o, 8.0));
        // Probability targets: one-hot rows mixed with soft rows.
        let mut y = random(&mut r, b, o, 1.0).mapv(f64::abs);
        for (i, mut row) in y.outer_iter_mut().enumerate() {
            if i % 2 == 0 {
                row.fill(0.0);
                row[i % o] = 1.0;
            } else {
                let s = row.sum();
                row.mapv_inplace(|v| v / s);
            }
        }
        let y = f32_exact(&y);
        let zb = buffer::storage_init(&ctx, "z", &to_f32(&z)).unwrap();
        let yb = buffer::storage_init(&ctx, "y", &to_f32(&y)).unwrap();
        let probs = nan_buffer(&ctx, b * o);
        let delta = nan_buffer(&ctx, b * o);
        let loss = buffer::storage_init(&ctx, "loss", &[f32::NAN, 1.5]).unwrap();
        let s = ops::softmax_rows(&ctx, (b, o), &zb, &probs).unwrap();
        let g = ops::xent_grad(&ctx, (b, o), ops::Piece::whole(b), &probs, &yb, &delta).unwrap();
        let l = ops::xent_loss(&ctx, (b, o), ops::Piece::whole(b), &zb, &yb, (&loss, 0), 2.0).unwrap();
        ops::run(&ctx, &[&s, &g, &l]).unwrap();
        let want_p = cpu::softmax_rows(z.view());
        let want_d = cpu::xent_grad(want_p.view(), y.view());
        let want_l = cpu::xent_loss(z.view(), y.view());
        assert_close(&format!("softmax ({b},{o})"), &read(&ctx, &probs, 0, b * o), &flat(&want_p), 1e-6, 1e-5);
        assert_close(&format!("xent delta ({b},{o})"), &read(&ctx, &delta, 0, b * o), &flat(&want_d), 1e-7, 1e-5);
        // out[0] is the loss; out[1] accumulated loss · 2 onto its 1.5.
        let want = [want_l, 1.5 + 2.0 * want_l];
        assert_close(&format!("xent loss ({b},{o})"), &read(&ctx, &loss, 0, 2), &want, 1e-6, 1e-5);
    }
}

#[test]
fn a_buffer_beyond_the_device_limit_is_a_typed_error() {
    // (Bindings beyond max_storage_buffer_binding_size are tested in tests/limits.rs.)
    let ctx = gpu();
    let max = ctx.limits().max_buffer_size as usize;
    let e = buffer::storage(&ctx, "huge", max / 4 + 1).unwrap_err();
    match &e {
        backprop::Error::DeviceLimit { limit, requested, available, .. } => {
            assert_eq!(*limit, "max_buffer_size");
            assert!(requested > available);
        }
        other => panic!("expected DeviceLimit, got {other}"),
    }
    assert!(e.to_string().contains("max_buffer_size") && e.to_string().contains("huge"), "{e}");
}

#[test]
fn large_products_are_autotuned_once_and_stay_correct() {
    // A tuner of its own that measures this product (2^24 multiply-adds) whatever BACKPROP_MATMUL_TILE says.
    let ctx = GpuContext::new(&Default::default()).unwrap().with_tuner(Tuner::new(Strategy::DEFAULT, true));
    let (m, n, k) = (256, 257, 256);
    let mut r = rng(10);
    let a = f32_exact(&random(&mut r, m, k, 1.0));
    let w = f32_exact(&random(&mut r, k, n, 1.0));
    let (ab, wb) =
        (buffer::storage_init(&ctx, "a", &to_f32(&a)).unwrap(), buffer::storage_init(&ctx, "w", &to_f32(&w)).unwrap());
    let (sa, sw) = (Strided::rows(&ab, 0, k), Strided::rows(&wb, 0, n));
    let first = ops::tile_for(&ctx, (m, n, k), &sa, &sw).unwrap();
    let measured = ctx.tuner().timings();
    assert!(measured >= 10, "the first choice is measured: {measured} timings");
    assert_eq!(ops::tile_for(&ctx, (m, n, k), &sa, &sw).unwrap(), first, "the choice is cached");
    assert_eq!(ctx.tuner().timings(), measured, "a cached choice is not measured again");
    let out = nan_buffer(&ctx, m * n);
    let d = ops::matmul(&ctx, first, (m, n, k), sa, sw, Epilogue::Store, Strided::rows(&out, 0, n)).unwrap();
    assert_eq!(ctx.tuner().timings(), measured, "building a dispatch times nothing");
    ops::run(&ctx, &[&d]).unwrap();
    let want = a.dot(&w);
    assert_close(&format!("autotuned product ({first:?})"), &read(&ctx, &out, 0, m * n), &flat(&want), 1e-4, 1e-4);
}
