//! The exchange between ranks: the sum in rank order on every rank, whatever the length; a rank that leaves
//! fails the others' exchanges instead of hanging them; the rows of a batch shared evenly.

use backprop::distributed::{GradientExchange, Solo, share};

use crate::ranks::on_ranks;

#[test]
fn the_sum_adds_in_rank_order_on_every_rank() {
    for n in [1, 2, 3, 5] {
        for len in [0, 1, 2, 7, 1000] {
            let value = |r: usize, i: usize| ((r * 7919 + i * 104_729) % 1000) as f32 * 1.37e-3 - 0.6 + 1e-7 * r as f32;
            let sums = on_ranks(n, |mut x| {
                let mut buf: Vec<f32> = (0..len).map(|i| value(x.rank(), i)).collect();
                x.sum(&mut buf).expect("sum");
                buf
            });
            let want: Vec<f32> = (0..len).map(|i| (1..n).fold(value(0, i), |s, r| s + value(r, i))).collect();
            for (r, got) in sums.iter().enumerate() {
                crate::common::assert_bits_eq(&format!("rank {r} of {n}, {len} values"), got, &want);
            }
        }
    }
    let mut one = vec![1.5f32, -2.0];
    Solo.sum(&mut one).expect("sum");
    assert_eq!(one, [1.5, -2.0]);
}

#[test]
fn a_rank_that_leaves_fails_the_others_exchanges_instead_of_hanging() {
    let results = on_ranks(3, |mut x| {
        if x.rank() == 2 {
            return None; // this rank's exchange is dropped here
        }
        Some(x.sum(&mut [1.0, 2.0]))
    });
    let failed: Vec<String> = results.into_iter().flatten().map(|r| r.expect_err("rank 2 left").to_string()).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|e| e.contains("left the group")), "{failed:?}");
}

#[test]
fn shares_cover_the_rows_evenly_and_in_order() {
    for len in [0, 1, 2, 5, 31, 32, 1000] {
        for n in 1..=7 {
            let parts: Vec<_> = (0..n).map(|r| share(len, n, r)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[n - 1].end, len);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start), "{len} over {n}: {parts:?}");
            let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{len} over {n}: {sizes:?}");
        }
    }
}
