//! How ranks exchange gradients: a small transport trait (two data movements) and the fixed-order sum
//! built on it, so the sum's bits never depend on how a transport or an MPI library moves the data.

use crate::error::{Error, Result};

/// Moves f32 vectors between the ranks of one job. Implementations only move data; every sum is done
/// here, by `sum`, in rank order.
pub trait GradientExchange {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// A one-line description, e.g. `mpi (Open MPI v4.1.4), 3 ranks`.
    fn describe(&self) -> String;
    /// Sends `send`, cut into consecutive parts of `send_counts[r]` values, part `r` to rank `r`; receives
    /// from every rank `s` the part meant for this rank (`recv_counts[s]` values), stored in rank order.
    fn all_to_all_v(
        &mut self,
        send: &[f32],
        send_counts: &[usize],
        recv: &mut [f32],
        recv_counts: &[usize],
    ) -> Result<()>;
    /// Every rank's `mine` (`counts[r]` values from rank `r`) into `out`, in rank order.
    fn all_gather_v(&mut self, mine: &[f32], counts: &[usize], out: &mut [f32]) -> Result<()>;
    /// Every rank's `mine` (the same length on every rank) into `out`, in rank order.
    fn all_gather_u64(&mut self, mine: &[u64], out: &mut [u64]) -> Result<()>;

    /// Sums `buf` over the ranks, in place, every element as `((g_0 + g_1) + g_2) + … + g_{N−1}` (g_r the
    /// value of rank r): a reduce-scatter by hand (rank r receives chunk r of every rank and adds them in
    /// rank order), then an all-gather of the summed chunks. Every rank ends with the same bits, whatever
    /// algorithm the transport uses, and moves 2·(N−1)/N of the buffer each way, as a ring all-reduce does.
    fn sum(&mut self, buf: &mut [f32]) -> Result<()> {
        self.sum_with(buf, &mut Vec::new())
    }

    /// `sum` with a scratch vector kept by the caller (it grows to the buffer's length once), so that a
    /// training loop allocates nothing per step.
    fn sum_with(&mut self, buf: &mut [f32], scratch: &mut Vec<f32>) -> Result<()> {
        let n = self.size();
        if n <= 1 {
            return Ok(());
        }
        let counts: Vec<usize> = (0..n).map(|r| share(buf.len(), n, r).len()).collect();
        let mine = counts[self.rank()];
        scratch.resize(mine * n, 0.0);
        self.all_to_all_v(buf, &counts, scratch, &vec![mine; n])?;
        if mine > 0 {
            let (acc, rest) = scratch.split_at_mut(mine);
            for from in rest.chunks_exact(mine) {
                acc.iter_mut().zip(from).for_each(|(s, &g)| *s += g);
            }
        }
        self.all_gather_v(&scratch[..mine], &counts, buf)
    }

    /// Every rank's `mine` as f64 bit patterns, in rank order.
    fn all_gather_f64(&mut self, mine: &[f64]) -> Result<Vec<f64>> {
        let bits: Vec<u64> = mine.iter().map(|v| v.to_bits()).collect();
        let mut out = vec![0u64; bits.len() * self.size()];
        self.all_gather_u64(&bits, &mut out)?;
        Ok(out.into_iter().map(f64::from_bits).collect())
    }
}

/// The `r`-th of `n` nearly equal consecutive parts of `0..len` (sizes differ by at most one, the larger
/// ones last): how a batch's rows and a gradient's chunks are shared among ranks.
pub fn share(len: usize, n: usize, r: usize) -> std::ops::Range<usize> {
    let n = n.max(1) as u128;
    let at = |r: usize| ((len as u128 * r as u128) / n) as usize;
    at(r)..at(r + 1)
}

/// One process alone: every exchange is a copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl GradientExchange for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn describe(&self) -> String {
        "one process".into()
    }
    fn all_to_all_v(&mut self, send: &[f32], _: &[usize], recv: &mut [f32], _: &[usize]) -> Result<()> {
        copy_into(send, recv)
    }
    fn all_gather_v(&mut self, mine: &[f32], _: &[usize], out: &mut [f32]) -> Result<()> {
        copy_into(mine, out)
    }
    fn all_gather_u64(&mut self, mine: &[u64], out: &mut [u64]) -> Result<()> {
        if mine.len() != out.len() {
            return Err(Error::shape("gathered values", mine.len(), out.len()));
        }
        out.copy_from_slice(mine);
        Ok(())
    }
}

fn copy_into(from: &[f32], to: &mut [f32]) -> Result<()> {
    if from.len() != to.len() {
        return Err(Error::shape("exchanged values", from.len(), to.len()));
    }
    to.copy_from_slice(from);
    Ok(())
}

/// Checks the counts of an exchange against the buffers (for the transports).
pub(crate) fn check_counts(what: &str, counts: &[usize], n: usize, len: usize) -> Result<()> {
    if counts.len() != n || counts.iter().sum::<usize>() != len {
        return Err(Error::shape(
            format!("{what} counts"),
            format!("{n} counts summing to {len}"),
            format!("{counts:?}"),
        ));
    }
    Ok(())
}
