//! Readers that stand in for pipes in the reader tests: one that hands out a few bytes a call, and an endless
//! one that counts what was taken from it.
#![allow(dead_code)]

/// A reader over `data` that hands out at most `step` bytes a call, as a pipe may.
pub struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
}

impl Trickle {
    pub fn new(data: impl Into<Vec<u8>>, step: usize) -> Self {
        Trickle { data: data.into(), pos: 0, step }
    }
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An endless stream: `head`, then `pattern` over and over; `taken` counts the bytes read from it.
pub struct Endless {
    head: Vec<u8>,
    pattern: Vec<u8>,
    pos: usize,
    taken: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Endless {
    pub fn new(
        head: impl Into<Vec<u8>>,
        pattern: impl Into<Vec<u8>>,
    ) -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        (Endless { head: head.into(), pattern: pattern.into(), pos: 0, taken: taken.clone() }, taken)
    }
}

impl std::io::Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            *b = match self.head.get(self.pos) {
                Some(&h) => h,
                None => self.pattern[(self.pos - self.head.len()) % self.pattern.len()],
            };
            self.pos += 1;
        }
        self.taken.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(buf.len())
    }
}
