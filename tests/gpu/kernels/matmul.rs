//! `matmul` in every tiling against `cpu::matmul`: the three products of a layer with every epilogue they
//! use, operands at offsets inside larger buffers as the model keeps them (for a register-blocked kernel, stored
//! so that it reads them its way), the output in a NaN-filled buffer that nothing outside its slot may touch;
//! and the activations applied by the epilogue, and the tuner's choice of tiling.

use backprop::Activation;
use backprop::cpu;
use backprop::gpu::GpuContext;
use backprop::gpu::buffer;
use backprop::gpu::ops::{self, Epilogue, Strided};
use backprop::gpu::shaders::{Kernel, Load, Tile};
use backprop::gpu::tune::{Strategy, Tuner};
use ndarray::{Array1, Array2};
use rand_chacha::ChaCha8Rng;

use super::{ATOL, RTOL, nan_buffer, read, upload};
use crate::common::{assert_close, f32_exact, flat, gpu, random, rng, to_f32};

/// (B, I, O) triples: 1, primes, sizes just off the 16/32/256 tiles, and some spanning several big and
/// huge tiles.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 7, 3),
    (3, 1, 5),
    (5, 13, 1),
    (7, 33, 31),
    (17, 29, 65),
    (33, 65, 17),
    (67, 31, 97),
    (130, 70, 129),
    (259, 11, 131),
];

/// The shapes for each register-blocked kernel (27 of them, one per shape and way of reading A and B, that
/// differ only in their loads): every product's M, N and K off the 16×4 blocks and off multiples of 4, and
/// M and N under one block and over several.
const REG_SHAPES: [(usize, usize, usize); 4] = [(1, 7, 3), (7, 33, 31), (67, 31, 97), (259, 11, 131)];

/// An epilogue's data in f64, for the GPU and the twin alike.
enum Epi {
    Store,
    AddScaled(f64),
    Bias(Array1<f64>),
    Forward(Array1<f64>, Activation),
    FinishForward(Activation),
    Derivative(Array2<f64>, Activation),
}

/// A product `C (M, N) = op(A) (M, K) · op(B) (K, N)`, f32-exact; `a_t` and `b_t` store an operand
/// transposed (as the model reads `A_prevᵀ` and `Wᵀ`), so the kernel reads it with swapped strides.
/// `loads`, where given, overrides both: each operand is stored so that it is read that way.
struct Product {
    a: Array2<f64>,
    b: Array2<f64>,
    a_t: bool,
    b_t: bool,
    loads: Option<(Load, Load)>,
}

/// Where the operands and the output sit in their buffers (odd, unaligned offsets for B and C).
const A_OFF: usize = 8;
const B_OFF: usize = 3;
const OUT_OFF: usize = 11;

impl Product {
    fn random(r: &mut ChaCha8Rng, (m, n, k): (usize, usize, usize), a_t: bool, b_t: bool) -> Self {
        Self { a: f32_exact(&random(r, m, k, 1.0)), b: f32_exact(&random(r, k, n, 1.0)), a_t, b_t, loads: None }
    }

    /// How an operand is stored: transposed or not, its offset, and its rows padded to a multiple of 4 values
    /// (where it is to be read as vectors). Without `loads`, A at offset 8 and B at 3, rows unpadded.
    fn storage(&self, operand: usize) -> (bool, usize, bool) {
        let t = if operand == 0 { self.a_t } else { self.b_t };
        match self.loads.map(|(a, b)| if operand == 0 { a } else { b }) {
            None => (t, if operand == 0 { A_OFF } else { B_OFF }, false),
            Some(Load::Rows) => (false, A_OFF, true),
            Some(Load::Columns) => (true, A_OFF, true),
            Some(Load::Values) => (t, B_OFF, false),
        }
    }

    /// An operand stored at `off` of a buffer padded with 7s (transposed and with padded rows if asked), and
    /// its strided view.
    fn store<'a>(
        ctx: &GpuContext,
        x: &Array2<f64>,
        (t, off, pad): (bool, usize, bool),
        buf: &'a mut Option<wgpu::Buffer>,
    ) -> Strided<'a> {
        let held = if t { x.t().to_owned() } else { x.clone() };
        let ld = if pad { held.ncols().next_multiple_of(4) + 4 } else { held.ncols() };
        let mut v = vec![7.0f32; off + held.nrows() * ld + 5];
        for (i, row) in held.rows().into_iter().enumerate() {
            v[off + i * ld..][..row.len()].copy_from_slice(&row.mapv(|e| e as f32).to_vec());
        }
        let b = buf.insert(backprop::gpu::buffer::storage_init(ctx, "operand", &v).unwrap());
        if t { Strided::transposed(b, off, ld) } else { Strided::rows(b, off, ld) }
    }

    /// The product on the GPU with `tile`: C's slot in the output, what is outside it, and `pre`, with the
    /// output and `pre` starting as `out0` and `pre0` (NaN-filled where not given). Checks that the kernel
    /// reads the operands as `loads` says.
    fn gpu(
        &self,
        ctx: &GpuContext,
        tile: Tile,
        epi: &Epi,
        out0: &Array2<f64>,
        pre0: &Array2<f64>,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (m, k, n) = (self.a.nrows(), self.a.ncols(), self.b.ncols());
        let (mut ab, mut bb) = (None, None);
        let (sa, sb) =
            (Self::store(ctx, &self.a, self.storage(0), &mut ab), Self::store(ctx, &self.b, self.storage(1), &mut bb));
        let out = nan_buffer(ctx, OUT_OFF + m * n + 13);
        ctx.queue.write_buffer(&out, OUT_OFF as u64 * 4, bytemuck::cast_slice(&to_f32(out0)));
        let pre = upload(ctx, pre0);
        let (bias_buf, z_buf);
        let epilogue = match epi {
            Epi::Store => Epilogue::Store,
            Epi::AddScaled(s) => Epilogue::AddScaled(*s as f32),
            Epi::Bias(b) => {
                bias_buf = upload(ctx, &b.clone().insert_axis(ndarray::Axis(0)));
                Epilogue::Bias { bias: (&bias_buf, 0).into() }
            }
            Epi::Forward(b, activation) => {
                bias_buf = upload(ctx, &b.clone().insert_axis(ndarray::Axis(0)));
                Epilogue::Forward { bias: (&bias_buf, 0).into(), pre: (&pre, 0).into(), activation: *activation }
            }
            Epi::FinishForward(activation) => {
                Epilogue::FinishForward { pre: (&pre, 0).into(), activation: *activation }
            }
            Epi::Derivative(z, activation) => {
                z_buf = upload(ctx, z);
                Epilogue::Derivative { z: (&z_buf, 0).into(), activation: *activation }
            }
        };
        let d = ops::matmul(ctx, tile, (m, n, k), sa, sb, epilogue, Strided::rows(&out, OUT_OFF, n)).unwrap();
        if let Some((la, lb)) = self.loads {
            assert_eq!(d.kernel(), Kernel::matmul(tile, la, lb), "({m},{n},{k}): the operands' loads");
        }
        ops::run(ctx, &[&d]).unwrap();
        let all = read(ctx, &out, 0, OUT_OFF + m * n + 13);
        let outside = all[..OUT_OFF].iter().chain(&all[OUT_OFF + m * n..]).copied().collect();
        (all[OUT_OFF..OUT_OFF + m * n].to_vec(), outside, read(ctx, &pre, 0, m * n))
    }

    /// The twin: `cpu::matmul` from the same start.
    fn twin(&self, epi: &Epi, out0: &Array2<f64>, pre0: &Array2<f64>) -> (Array2<f64>, Array2<f64>) {
        let (mut out, mut pre) = (out0.clone(), pre0.clone());
        let epilogue = match epi {
            Epi::Store => cpu::Epilogue::Store,
            Epi::AddScaled(s) => cpu::Epilogue::AddScaled(*s),
            Epi::Bias(b) => cpu::Epilogue::Bias(b.view()),
            Epi::Forward(b, activation) => cpu::Epilogue::Forward { bias: b.view(), activation: *activation },
            Epi::FinishForward(activation) => cpu::Epilogue::FinishForward(*activation),
            Epi::Derivative(z, activation) => cpu::Epilogue::Derivative { z: z.view(), activation: *activation },
        };
        cpu::matmul(self.a.view(), self.b.view(), epilogue, &mut out, &mut pre);
        (out, pre)
    }
}

/// The product on the GPU against its twin: C, `pre` where the epilogue writes it, and nothing written
/// outside C's slot. Returns the GPU's C.
fn check(
    ctx: &GpuContext,
    tile: Tile,
    p: &Product,
    epi: Epi,
    start: Option<(Array2<f64>, Array2<f64>)>,
    name: &str,
) -> Vec<f32> {
    let (m, n) = (p.a.nrows(), p.b.ncols());
    let (out0, pre0) =
        start.unwrap_or_else(|| (Array2::from_elem((m, n), f64::NAN), Array2::from_elem((m, n), f64::NAN)));
    let (got, outside, got_pre) = p.gpu(ctx, tile, &epi, &out0, &pre0);
    let (want, want_pre) = p.twin(&epi, &out0, &pre0);
    assert_close(&format!("{name} {tile:?}: C"), &got, &flat(&want), ATOL, RTOL);
    if matches!(epi, Epi::Forward(..) | Epi::FinishForward(_)) {
        assert_close(&format!("{name} {tile:?}: Z"), &got_pre, &flat(&want_pre), ATOL, RTOL);
    }
    assert!(outside.iter().all(|v| v.is_nan()), "{name} {tile:?}: wrote outside its slot");
    got
}

/// Every product a layer runs, with `tile`, at every shape: forward with bias and every activation,
/// input gradient plain and with every derivative fused, weight gradient (also against the explicit outer
/// products), and the split-K and SGD epilogues. With `loads`, every operand is stored to be read that way.
pub(super) fn matches_its_twin(tile: Tile, loads: Option<(Load, Load)>) {
    let (ctx, mut r) = (gpu(), rng(1));
    let product = |r: &mut ChaCha8Rng, shape, a_t, b_t| Product { loads, ..Product::random(r, shape, a_t, b_t) };
    for (b, i, o) in if loads.is_some() { &REG_SHAPES[..] } else { &SHAPES[..] }.iter().copied() {
        for act in Activation::ALL {
            // forward: Z (B, O) = X (B, I) · W (I, O) + b;  A = f(Z)
            let bias = f32_exact(&random(&mut r, 1, o, 1.0)).row(0).to_owned();
            let p = product(&mut r, (b, o, i), false, false);
            check(&ctx, tile, &p, Epi::Forward(bias, act), None, &format!("forward ({b},{i},{o}) {act}"));
            // input gradient: δ_prev (B, I) = (δ (B, O) · Wᵀ) ⊙ f'(Z_prev)
            let z = f32_exact(&random(&mut r, b, i, 3.0));
            let p = product(&mut r, (b, i, o), false, true);
            check(&ctx, tile, &p, Epi::Derivative(z, act), None, &format!("fused delta_prev ({b},{i},{o}) {act}"));
        }
        let p = product(&mut r, (b, i, o), false, true);
        let got = check(&ctx, tile, &p, Epi::Store, None, &format!("dA_prev ({b},{i},{o})"));
        assert_close(
            &format!("dA_prev ({b},{i},{o}) {tile:?}"),
            &got,
            &flat(&cpu::input_grad(p.a.view(), p.b.t())),
            ATOL,
            RTOL,
        );
        // weight gradient: dW (I, O) = A_prevᵀ · δ, the sum over the batch of the outer products
        let p = product(&mut r, (i, o, b), true, false);
        let got = check(&ctx, tile, &p, Epi::Store, None, &format!("dW ({b},{i},{o})"));
        let outer = cpu::weight_grad(p.a.t(), p.b.view());
        assert_close(&format!("dW ({b},{i},{o}) {tile:?} as outer products"), &got, &flat(&outer), ATOL, RTOL);
        split_and_sgd_epilogues(&ctx, tile, &product, &mut r, (b, i, o));
    }
}

/// The epilogues of a forward product split along K (`Bias`, `AddScaled(1)`, `FinishForward`) and of the
/// fused SGD update (`AddScaled(−lr)`), from outputs and pre-activations that hold partial sums.
fn split_and_sgd_epilogues(
    ctx: &GpuContext,
    tile: Tile,
    product: &impl Fn(&mut ChaCha8Rng, (usize, usize, usize), bool, bool) -> Product,
    r: &mut ChaCha8Rng,
    (b, i, o): (usize, usize, usize),
) {
    // An output and a pre-activation (m, n) that already hold values.
    let held = |m, n| (f32_exact(&random(&mut rng(9), m, n, 2.0)), f32_exact(&random(&mut rng(10), m, n, 2.0)));
    let bias = f32_exact(&random(r, 1, o, 1.0)).row(0).to_owned();
    let p = product(r, (b, o, i), false, false);
    check(ctx, tile, &p, Epi::Bias(bias), None, &format!("first K piece ({b},{i},{o})"));
    check(ctx, tile, &p, Epi::AddScaled(1.0), Some(held(b, o)), &format!("middle K piece ({b},{i},{o})"));
    for act in Activation::ALL {
        check(ctx, tile, &p, Epi::FinishForward(act), Some(held(b, o)), &format!("last K piece ({b},{i},{o}) {act}"));
    }
    let p = product(r, (i, o, b), true, false);
    check(ctx, tile, &p, Epi::AddScaled(-0.3), Some(held(i, o)), &format!("W -= lr·dW ({b},{i},{o})"));
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
