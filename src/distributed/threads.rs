//! Ranks as threads of one process: the same data-parallel training without MPI, for tests, examples and
//! the crate docs. Every exchange is a meeting of all the threads; when a rank's `ThreadExchange` is
//! dropped (its thread returned, perhaps with an error), the meetings of the others fail instead of
//! waiting for it.

use std::sync::{Arc, Condvar, Mutex};

use super::exchange::{GradientExchange, check_counts};
use crate::error::{Error, Result};

struct Board {
    state: Mutex<State>,
    changed: Condvar,
    size: usize,
}

/// What every rank posted for the current meeting, how many have posted, and how many have read since.
struct State {
    slots: Vec<Vec<u64>>,
    posted: usize,
    read: usize,
    /// A rank has left the group: no meeting can complete.
    left: bool,
}

/// One rank of a group of threads that exchange through shared memory.
pub struct ThreadExchange {
    rank: usize,
    size: usize,
    board: Arc<Board>,
}

impl ThreadExchange {
    /// `n` connected ranks (0..n), one to move into each thread.
    pub fn group(n: usize) -> Vec<ThreadExchange> {
        let n = n.max(1);
        let state = State { slots: vec![Vec::new(); n], posted: 0, read: 0, left: false };
        let board = Arc::new(Board { state: Mutex::new(state), changed: Condvar::new(), size: n });
        (0..n).map(|rank| ThreadExchange { rank, size: n, board: board.clone() }).collect()
    }

    /// Posts `mine` and returns what every rank posted, in rank order: waits until every rank has posted,
    /// and lets the next meeting start only when every rank has read.
    fn meet(&mut self, mine: Vec<u64>) -> Result<Vec<Vec<u64>>> {
        let broken = || Error::Invalid("a rank left the group of threads during an exchange".into());
        let board = &*self.board;
        let mut s = board.state.lock().map_err(|_| broken())?;
        // Wait for the previous meeting to be read by everyone before posting into it; with a rank gone,
        // this meeting cannot complete.
        while s.posted == board.size && !s.left {
            s = board.changed.wait(s).map_err(|_| broken())?;
        }
        if s.left {
            return Err(broken());
        }
        s.slots[self.rank] = mine;
        s.posted += 1;
        board.changed.notify_all();
        // Once every rank has posted, the meeting is read even if a rank has left since (after reading).
        while s.posted < board.size {
            if s.left {
                return Err(broken());
            }
            s = board.changed.wait(s).map_err(|_| broken())?;
        }
        let all = s.slots.clone();
        s.read += 1;
        if s.read == board.size {
            (s.posted, s.read) = (0, 0);
            board.changed.notify_all();
        }
        Ok(all)
    }
}

impl Drop for ThreadExchange {
    fn drop(&mut self) {
        if let Ok(mut s) = self.board.state.lock() {
            s.left = true;
        }
        self.board.changed.notify_all();
    }
}

fn bits(v: &[f32]) -> impl Iterator<Item = u64> + '_ {
    v.iter().map(|x| x.to_bits() as u64)
}

impl GradientExchange for ThreadExchange {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn describe(&self) -> String {
        format!("threads, {} ranks", self.size)
    }

    fn all_to_all_v(
        &mut self,
        send: &[f32],
        send_counts: &[usize],
        recv: &mut [f32],
        recv_counts: &[usize],
    ) -> Result<()> {
        check_counts("send", send_counts, self.size, send.len())?;
        check_counts("receive", recv_counts, self.size, recv.len())?;
        let posted = send_counts.iter().map(|&c| c as u64).chain(bits(send)).collect();
        let all = self.meet(posted)?;
        let mut at = 0;
        for (from, post) in all.iter().enumerate() {
            let (counts, data) = post.split_at(self.size);
            let start: u64 = counts[..self.rank].iter().sum();
            let len = counts[self.rank] as usize;
            if len != recv_counts[from] {
                return Err(Error::shape(format!("values from rank {from}"), recv_counts[from], len));
            }
            let part = &data[start as usize..start as usize + len];
            recv[at..at + len].iter_mut().zip(part).for_each(|(r, &b)| *r = f32::from_bits(b as u32));
            at += len;
        }
        Ok(())
    }

    fn all_gather_v(&mut self, mine: &[f32], counts: &[usize], out: &mut [f32]) -> Result<()> {
        check_counts("gather", counts, self.size, out.len())?;
        let all = self.meet(bits(mine).collect())?;
        let flat: Vec<u64> = all.concat();
        if flat.len() != out.len() {
            return Err(Error::shape("gathered values", out.len(), flat.len()));
        }
        out.iter_mut().zip(flat).for_each(|(o, b)| *o = f32::from_bits(b as u32));
        Ok(())
    }

    fn all_gather_u64(&mut self, mine: &[u64], out: &mut [u64]) -> Result<()> {
        let flat = self.meet(mine.to_vec())?.concat();
        if flat.len() != out.len() {
            return Err(Error::shape("gathered values", out.len(), flat.len()));
        }
        out.copy_from_slice(&flat);
        Ok(())
    }
}
