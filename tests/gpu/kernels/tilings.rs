//! What every tiling of the matrix product shares: reading aligned operands four values at a time, and the
//! same bits as every other tiling for the same product (the tuner picks a tiling by timing, so a run's result
//! must not depend on which one won).

use backprop::gpu::buffer;
use backprop::gpu::ops::{self, Epilogue, Strided};
use backprop::gpu::shaders::{Kernel, Load, RegShape, Tile};
use backprop::gpu::structs::MatmulParams;
use backprop::{Activation, gpu::GpuContext};
use ndarray::Array2;

use super::{ATOL, RTOL, nan_buffer, read};
use crate::common::{assert_bits_eq, assert_close, f32_exact, flat, gpu, random, rng};

/// The vectorised tile loads of the register-blocked tilings: operands whose contiguous direction, row
/// stride and offset are multiples of 4, in all four layouts (A along K or M, B along N or K), at shapes
/// whose edges cut through vectors and tiles. Each product's flags are checked, so the vector path is the
/// one tested; the 32×32 tiling loads scalars.
#[test]
fn register_blocked_tilings_load_aligned_operands_as_vectors() {
    let ctx = gpu();
    let mut r = rng(21);
    let shapes = [(64, 64, 16), (67, 70, 45), (130, 132, 101), (5, 9, 7), (4, 4, 4), (257, 129, 37)];
    for (tile, (m, n, k)) in Tile::ALL.into_iter().flat_map(|t| shapes.map(|s| (t, s))) {
        if !tile.vector_loads() {
            continue;
        }
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
            let load = |t| if t { Load::Columns } else { Load::Rows };
            assert_eq!(d.kernel(), Kernel::matmul(tile, load(ta), load(tb)), "{tile:?} ({m},{n},{k}): the kernel");
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
    let d = ops::matmul(
        &ctx,
        Tile::Reg(RegShape::Square),
        (4, 4, 4),
        Strided::rows(&buf, 1, 4),
        Strided::transposed(&buf, 0, 6),
        Epilogue::Store,
        Strided::rows(&out, 0, 4),
    )
    .unwrap();
    assert_eq!(d.kernel(), Kernel::MatmulReg(RegShape::Square, Load::Values, Load::Values));
}

/// `x` stored transposed or not, at `off`, its rows padded to `ld` values; its strided view.
fn stored<'a>(
    ctx: &GpuContext,
    x: &Array2<f64>,
    t: bool,
    off: usize,
    pad: usize,
    buf: &'a mut Option<wgpu::Buffer>,
) -> Strided<'a> {
    let held = if t { x.t().to_owned() } else { x.clone() };
    let ld = held.ncols() + pad;
    let mut v = vec![f32::NAN; off + held.nrows() * ld];
    for ((i, j), &e) in held.indexed_iter() {
        v[off + i * ld + j] = e as f32;
    }
    let b = buf.insert(buffer::storage_init(ctx, "operand", &v).unwrap());
    if t { Strided::transposed(b, off, ld) } else { Strided::rows(b, off, ld) }
}

/// Every tiling gives the same bits as the 32×32 one, output and pre-activation, for the three products of a
/// layer with operands read as vectors and value by value, at shapes that cut through every tile, vector and
/// K step (full-precision values, so any other order of the sums would round differently somewhere).
#[test]
fn every_tiling_gives_the_same_bits() {
    let ctx = gpu();
    let mut r = rng(33);
    let shapes = [(1, 1, 1), (5, 13, 7), (17, 29, 65), (67, 31, 97), (130, 70, 129), (259, 11, 131), (64, 64, 64)];
    for (m, n, k) in shapes {
        // (A transposed, B transposed): forward, input gradient, weight gradient; aligned (offset 8, rows
        // padded to a multiple of 4) and not (offset 3, unpadded).
        for ((ta, tb), aligned) in
            [(false, false), (false, true), (true, false)].into_iter().flat_map(|t| [(t, true), (t, false)])
        {
            let (a, b) = (random(&mut r, m, k, 1.0), random(&mut r, k, n, 1.0));
            let bias = random(&mut r, 1, n, 1.0);
            let off = if aligned { 8 } else { 3 };
            let pad = |cols: usize| if aligned { cols.next_multiple_of(4) + 4 - cols } else { 0 };
            let (mut ab, mut bb, mut biasb) = (None, None, None);
            let sa = stored(&ctx, &a, ta, off, pad(if ta { m } else { k }), &mut ab);
            let sb = stored(&ctx, &b, tb, off, pad(if tb { k } else { n }), &mut bb);
            let sbias = stored(&ctx, &bias, false, 0, 0, &mut biasb);
            let run = |tile: Tile| {
                let (out, pre) = (nan_buffer(&ctx, m * n), nan_buffer(&ctx, m * n));
                let epilogue = Epilogue::Forward {
                    bias: (sbias.buffer, 0).into(),
                    pre: (&pre, 0).into(),
                    activation: Activation::Sigmoid,
                };
                let d = ops::matmul(&ctx, tile, (m, n, k), sa, sb, epilogue, Strided::rows(&out, 0, n)).unwrap();
                ops::run(&ctx, &[&d]).unwrap();
                [read(&ctx, &out, 0, m * n), read(&ctx, &pre, 0, m * n)]
            };
            let want = run(Tile::Small);
            let z = a.dot(&b) + bias.row(0);
            assert_close(&format!("({m},{n},{k}) Small: Z"), &want[1], &flat(&z), ATOL, RTOL);
            for tile in Tile::ALL {
                let got = run(tile);
                let what = format!("({m},{n},{k}) ta {ta} tb {tb} aligned {aligned}: {tile:?} against Small");
                assert_bits_eq(&format!("{what}, A"), &got[0], &want[0]);
                assert_bits_eq(&format!("{what}, Z"), &got[1], &want[1]);
            }
        }
    }
}
