//! `gather_rows` against `cpu::gather_rows`: a batch gathered from a data set resident on the GPU, at an
//! offset into the row order, on a device whose bindings hold the whole set and on one where the set is
//! read in pieces of rows.

use backprop::cpu;
use backprop::gpu::{buffer, ops};

use super::{nan_buffer, read, upload};
use crate::common::{assert_close, f32_exact, flat, gpu, random, rng, small_device};

pub(super) fn gather_rows() {
    let mut r = rng(40);
    // 256-byte bindings: rows of 5 values, 8 to a piece (lavapipe aligns offsets to 8 values), 5 pieces.
    for (ctx, pieces) in [(gpu(), 1usize), (small_device(256), 5)] {
        let (n, c) = (37, 5);
        let src = f32_exact(&random(&mut r, n, c, 1.0));
        let order: Vec<usize> = (0..n).map(|i| (i * 17 + 5) % n).collect();
        let idx = buffer::storage_init(
            &ctx,
            "order",
            bytemuck::cast_slice(&order.iter().map(|&i| i as u32).collect::<Vec<_>>()),
        )
        .unwrap();
        let (off, rows) = (13, 11);
        let out = nan_buffer(&ctx, rows * c + 7);
        let d = ops::gather_rows(&ctx, (rows, c), (&upload(&ctx, &src), n), (&idx, off), &out).unwrap();
        assert_eq!(d.len(), pieces, "one dispatch a piece of the data set");
        ops::run(&ctx, &d.iter().collect::<Vec<_>>()).unwrap();
        let got = read(&ctx, &out, 0, rows * c + 7);
        let want = cpu::gather_rows(src.view(), &order[off..off + rows]);
        assert_close(&format!("gathered rows ({pieces} pieces)"), &got[..rows * c], &flat(&want), 0.0, 0.0);
        assert!(got[rows * c..].iter().all(|v| v.is_nan()), "gather_rows wrote past the batch");
    }
}
