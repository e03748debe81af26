//! Outputs that are streams rather than files: a pipe or FIFO, `/dev/null`, a terminal, and `/dev/stdout`
//! as any of those or as a file the shell opened. They are appended to; every other special file is
//! refused, so that no output ever lands on a disk device or replaces a device node with a file.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::{File, Metadata};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Checks that the special file `path` (with metadata `m`, its links followed) is a stream an output may
/// be written to.
pub(super) fn check(path: &Path, m: &Metadata) -> Result<()> {
    refusal(path, m).map_or(Ok(()), |why| {
        Err(super::io_other(path, format!("{why}; an output goes to a file, a pipe or FIFO, /dev/null or a terminal")))
    })
}

/// The streams written so far, kept open until the process ends: a reader of a FIFO sees one stream from
/// the first write to the last (a writer that closed would end it, and the next write would find no reader).
static OPEN: Mutex<BTreeMap<PathBuf, File>> = Mutex::new(BTreeMap::new());

/// How long a write waits for a FIFO's reader to open it (`reader & backprop ...` starts both at once).
const READER_WAIT: Duration = Duration::from_secs(5);

/// Writes `bytes` to the stream `path`. A FIFO that no process opens for reading within [`READER_WAIT`] is
/// an error rather than a wait without end (on Linux).
pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    // A panic while the lock was held leaves whole descriptors behind: nothing to repair.
    let mut open_streams = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The process's own standard streams are written through its handles: what it prints there and what is
    // written here then share one position and keep their order (reopening the path would not, where the
    // shell redirected it to a file).
    let inherited: Option<Box<dyn Write>> = match path.to_str() {
        Some("/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1") => Some(Box::new(std::io::stdout().lock())),
        Some("/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2") => Some(Box::new(std::io::stderr().lock())),
        _ => None,
    };
    if let Some(mut w) = inherited {
        return w.write_all(bytes).and_then(|()| w.flush()).map_err(|e| Error::io(path, e));
    }
    let f = match open_streams.entry(path.to_path_buf()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(open_waiting(path)?),
    };
    f.write_all(bytes).and_then(|()| f.flush()).map_err(|e| Error::io(path, e))
}

/// Whether `path` is `/dev/null`, or leads there.
pub(super) fn is_null(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_char_device() && device_numbers(&m) == (1, 3)
        }
        #[cfg(not(target_os = "linux"))]
        {
            !m.is_file() && std::fs::canonicalize(path).is_ok_and(|p| p == Path::new("/dev/null"))
        }
    })
}

/// A device file's major and minor numbers, decoded from Linux's encoding (as glibc's `major`, `minor`).
#[cfg(target_os = "linux")]
fn device_numbers(m: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let dev = m.rdev();
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff))
}

/// [`open`], trying again while a FIFO has no reader, for at most [`READER_WAIT`].
fn open_waiting(path: &Path) -> Result<File> {
    let start = Instant::now();
    loop {
        match open(path) {
            Err(Opened::NoReader) if start.elapsed() < READER_WAIT => std::thread::sleep(Duration::from_millis(10)),
            Err(Opened::NoReader) => {
                return Err(super::io_other(
                    path,
                    format!("is a FIFO that no process opened for reading in {} s", READER_WAIT.as_secs()),
                ));
            }
            Err(Opened::Failed(e)) => return Err(e),
            Ok(f) => return Ok(f),
        }
    }
}

/// Why a stream did not open.
enum Opened {
    /// A FIFO that no process has open for reading (yet).
    NoReader,
    Failed(Error),
}

#[cfg(unix)]
fn refusal(path: &Path, m: &Metadata) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_fifo() {
        None
    } else if t.is_char_device() {
        (!is_null_or_terminal(path, m)).then(|| "is a device other than /dev/null or a terminal".to_string())
    } else if t.is_block_device() {
        Some("is a block device (a disk or partition)".into())
    } else if t.is_socket() {
        Some("is a socket".into())
    } else {
        Some("is neither a file nor a stream".into())
    }
}

#[cfg(not(unix))]
fn refusal(_: &Path, _: &Metadata) -> Option<String> {
    Some("is neither a file nor a directory".into())
}

/// `/dev/null` (1:3) or a terminal: the virtual consoles and serial lines (major 4), `/dev/tty` and
/// `/dev/console` (5:0, 5:1) and pseudo-terminals (136–143), by Linux's device numbers.
#[cfg(target_os = "linux")]
fn is_null_or_terminal(_: &Path, m: &Metadata) -> bool {
    matches!(device_numbers(m), (1, 3) | (4, _) | (5, 0) | (5, 1) | (136..=143, _))
}

/// `/dev/null` or a terminal, by the name the links lead to (device numbers differ between systems).
#[cfg(all(unix, not(target_os = "linux")))]
fn is_null_or_terminal(path: &Path, _: &Metadata) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| {
        let p = p.to_string_lossy();
        p == "/dev/null" || p.starts_with("/dev/tty") || p.starts_with("/dev/pts/")
    })
}

/// Opens the stream for writing. A FIFO is opened without waiting: where no process has it open for
/// reading, `open` fails with ENXIO instead of blocking until one does; the descriptor then blocks again.
#[cfg(target_os = "linux")]
fn open(path: &Path) -> std::result::Result<File, Opened> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
    let mut o = std::fs::OpenOptions::new();
    o.append(true);
    if fifo {
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENXIO) => Opened::NoReader,
        _ => Opened::Failed(Error::io(path, e)),
    })?;
    if fifo {
        // SAFETY: `f` owns an open descriptor for the duration of both calls; F_GETFL and F_SETFL only
        // read and set its status flags.
        let cleared = unsafe {
            let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
            flags >= 0 && libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
        };
        if !cleared {
            return Err(Opened::Failed(Error::io(path, std::io::Error::last_os_error())));
        }
    }
    Ok(f)
}

#[cfg(not(target_os = "linux"))]
fn open(path: &Path) -> std::result::Result<File, Opened> {
    std::fs::OpenOptions::new().append(true).open(path).map_err(|e| Opened::Failed(Error::io(path, e)))
}
