//! How much a reader may take in: memory for what it builds, bytes from a stream, time waiting for a FIFO.
//!
//! Every reader checks what a header or a file will need against these limits before it allocates, and
//! allocates with `try_reserve`, so that no input ends in an abort ("memory allocation of N bytes failed") or
//! in the kernel's OOM killer: it ends in one error that says what was too large.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// The most bytes read from one CSV input: an endless stream (`yes 1,0 | backprop --data -`, a FIFO that
/// never closes) ends here.
pub const MAX_TEXT_BYTES: u64 = 16 << 30;
/// The longest CSV line in bytes: a stream without line ends (`/dev/zero`) ends here.
pub const MAX_LINE_BYTES: u64 = 64 << 20;
/// How long a FIFO may go without a writer before reading it is given up.
pub const FIFO_WAIT: Duration = Duration::from_secs(30);
/// The memory a data set or checkpoint may take where the free memory cannot be read (not Linux).
pub const FIXED_MEMORY: u64 = 4 << 30;

/// What one read may take. [`Limits::detect`] gives this machine's; tests and library users may set
/// smaller ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes that what one reader builds (a data set's values, targets and labels; a checkpoint's bytes and
    /// parameters) may occupy.
    pub memory: u64,
    /// Where `memory` comes from, as error messages say it ("half of the 9.8 GiB available to this process").
    pub memory_from: String,
    /// The most bytes read from one CSV input.
    pub text_bytes: u64,
    /// The longest CSV line, in bytes.
    pub line_bytes: u64,
    /// How long to wait for a program to open a FIFO for writing.
    pub fifo_wait: Duration,
}

impl Limits {
    /// This machine's limits now. On Linux the memory is half of what is available to this process: the least
    /// of `MemAvailable` (/proc/meminfo), the address space left under `ulimit -v`, and the room left in its
    /// cgroup (v1 or v2), each where it can be read; half, because training holds a second copy of the rows
    /// (the split). Without /proc/meminfo, and on other systems, it is [`FIXED_MEMORY`], which the messages say.
    pub fn detect() -> Limits {
        let (memory, memory_from) = match available_memory() {
            Some((bytes, from)) => (bytes / 2, format!("half of the {} {from}", human(bytes))),
            None => (FIXED_MEMORY, "a fixed limit: the free memory of this system is not known".to_string()),
        };
        Limits { memory, memory_from, text_bytes: MAX_TEXT_BYTES, line_bytes: MAX_LINE_BYTES, fifo_wait: FIFO_WAIT }
    }

    /// This machine's limits with `memory` bytes for what a reader builds (said as "the limit given").
    pub fn with_memory(memory: u64) -> Limits {
        Limits { memory, memory_from: "the limit given".into(), ..Limits::detect() }
    }

    /// Ok if `bytes` fit the memory limit; otherwise an error naming `path` that says `what` needs them.
    pub(crate) fn check_memory(&self, path: &Path, bytes: u64, what: &str) -> Result<()> {
        if bytes <= self.memory {
            return Ok(());
        }
        Err(Error::data(
            path,
            format!(
                "{what} need {} of memory, more than the {} a file may take here ({}); use a smaller file or free some memory",
                human(bytes),
                human(self.memory),
                self.memory_from
            ),
        ))
    }
}

/// `n` bytes for messages: "512 bytes", "3.0 MiB", "12.4 GiB".
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Room for `more` elements in `v`, or an error naming `path` (never an abort).
pub(crate) fn reserve<T>(v: &mut Vec<T>, more: usize, path: &Path) -> Result<()> {
    v.try_reserve_exact(more).map_err(|_| {
        let bytes = more.saturating_mul(size_of::<T>()) as u64;
        Error::data(path, format!("cannot allocate {} more: out of memory", human(bytes)))
    })
}

/// `n` copies of `value` in one allocation made with `try_reserve`.
pub(crate) fn filled<T: Clone>(n: usize, value: T, path: &Path) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, n, path)?;
    v.resize(n, value);
    Ok(v)
}

/// Bytes available to this process and where that figure comes from, where it can be read.
#[cfg(target_os = "linux")]
fn available_memory() -> Option<(u64, &'static str)> {
    let kib = |text: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut best = (kib(&meminfo, "MemAvailable:")?, "of memory available");
    // `ulimit -v`: the address space left, from the soft limit and what is mapped already.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .and_then(|l| l["Max address space".len()..].split_whitespace().next().and_then(|v| v.parse::<u64>().ok()));
    if let (Some(limit), Some(used)) = (soft, kib(&status, "VmSize:")) {
        best = best.min((limit.saturating_sub(used), "of address space left under ulimit -v"));
    }
    if let Some(room) = cgroup_room() {
        best = best.min((room, "left in this process's cgroup memory limit"));
    }
    Some(best)
}

/// The bytes left under this process's cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), if it
/// has one: the limit less the usage, counting inactive file cache as free (the kernel reclaims it first).
#[cfg(target_os = "linux")]
fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let number = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok()?.trim().parse::<u64>().ok();
    let stat = |dir: &Path, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    };
    let room = |dir: std::path::PathBuf, max: &str, current: &str, cache: &str| -> Option<u64> {
        let used = number(&dir, current)?.saturating_sub(stat(&dir, cache).unwrap_or(0)); // no figure: count no cache as free
        Some(number(&dir, max)?.saturating_sub(used)) // v2's "max" (no limit) does not parse: None
    };
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, rel) = (parts.next()?, parts.next()?, parts.next()?.trim_start_matches('/'));
        if id == "0" && controllers.is_empty() {
            room(Path::new("/sys/fs/cgroup").join(rel), "memory.max", "memory.current", "inactive_file ")
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
            room(dir, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file ")
        } else {
            None
        }
    })
}

#[cfg(not(target_os = "linux"))]
fn available_memory() -> Option<(u64, &'static str)> {
    None
}
