//! Opening what a reader reads, whatever it is: a regular file, standard input (`-`), a pipe, a FIFO or a
//! device, as one stream. gzip is undone and the first bytes are looked at (CSV or IDX?) without being
//! lost, so a pipe reads exactly as the same bytes in a file would.
//!
//! Nothing here blocks forever: a FIFO that no program opens for writing is given up after
//! [`Limits::fifo_wait`], and a terminal is refused (nobody is going to type a data set).

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use crate::data::limits::Limits;
use crate::error::{Error, Result};

/// The path that means standard input.
pub const STDIN: &str = "-";
/// How standard input is named in messages and in a data set's name.
pub const STDIN_NAME: &str = "<stdin>";

/// What an input holds, from its first bytes (after gunzipping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Anything that is not IDX: read as CSV text.
    Csv,
    /// An IDX file of unsigned bytes with 3 dimensions (magic 0x00000803).
    IdxImages,
    /// An IDX file of unsigned bytes with 1 dimension (magic 0x00000801).
    IdxLabels,
}

/// The raw bytes of an opened file or of standard input.
pub(crate) struct Stream {
    pub reader: Box<dyn Read + Send>,
    /// The size of a regular file (None for pipes, FIFOs, devices and standard input).
    pub size: Option<u64>,
}

/// An input opened for reading: its content (gunzipped), what it looks like, and its name for messages.
pub struct Input {
    name: PathBuf,
    reader: Box<dyn BufRead + Send>,
    kind: Kind,
    gzip: bool,
    size: Option<u64>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("name", &self.name).field("kind", &self.kind).field("gzip", &self.gzip).finish()
    }
}

impl Input {
    /// Opens `path` (`-` is standard input), undoes gzip, and looks at the first bytes.
    pub fn open(path: &Path, limits: &Limits) -> Result<Input> {
        let stream = open_stream(path, limits)?;
        Input::from_stream(name_of(path), stream.reader, stream.size)
    }

    /// An input from any reader (`name` is what messages call it): decompressed if it is gzip, sniffed like
    /// a file.
    pub fn from_reader(name: impl Into<PathBuf>, reader: impl Read + Send + 'static) -> Result<Input> {
        Input::from_stream(name.into(), Box::new(reader), None)
    }

    fn from_stream(name: PathBuf, reader: Box<dyn Read + Send>, size: Option<u64>) -> Result<Input> {
        let (head, reader) = peek(reader, 2).map_err(|e| Error::io(&name, e))?;
        let gzip = head == [0x1f, 0x8b];
        let (reader, size): (Box<dyn Read + Send>, _) =
            if gzip { (Box::new(flate2::read::MultiGzDecoder::new(reader)), None) } else { (reader, size) };
        let (head, reader) = peek(reader, 4).map_err(|e| read_error(&name, gzip, e))?;
        let kind = match head[..] {
            [0, 0, 8, 3] => Kind::IdxImages,
            [0, 0, 8, 1] => Kind::IdxLabels,
            _ => Kind::Csv,
        };
        let reader = Box::new(BufReader::with_capacity(64 << 10, reader));
        Ok(Input { name, reader, kind, gzip, size })
    }

    /// The name messages use: the path, or `<stdin>`.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// What the first bytes say the input is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the input was gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The size of the content, where known before reading it (a plain regular file).
    pub(crate) fn size(&self) -> Option<u64> {
        self.size
    }

    /// The content, from its first byte.
    pub(crate) fn reader(&mut self) -> &mut (dyn BufRead + Send) {
        &mut *self.reader
    }

    /// A read error as the input's error: "corrupt gzip data" for a compressed input.
    pub(crate) fn read_error(&self, e: io::Error) -> Error {
        read_error(&self.name, self.gzip, e)
    }
}

pub(crate) fn read_error(name: &Path, gzip: bool, e: io::Error) -> Error {
    if gzip { Error::data(name, format!("corrupt gzip data: {e}")) } else { Error::io(name, e) }
}

fn name_of(path: &Path) -> PathBuf {
    if path == Path::new(STDIN) { PathBuf::from(STDIN_NAME) } else { path.to_path_buf() }
}

/// Reads up to `n` bytes (fewer only at the end of the stream) and gives them back in front of the rest.
fn peek(mut r: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0u8; n];
    let got = read_up_to(&mut r, &mut head)?;
    head.truncate(got);
    Ok((head.clone(), Box::new(io::Cursor::new(head).chain(r))))
}

/// Reads `buf.len()` bytes unless the stream ends first; returns how many were read.
pub(crate) fn read_up_to(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// An error opening `path`, in words rather than an OS error number.
pub(crate) fn open_error(path: &Path, e: io::Error) -> Error {
    let text = match e.kind() {
        io::ErrorKind::NotFound => "no such file",
        io::ErrorKind::PermissionDenied => "permission denied (cannot read it)",
        io::ErrorKind::IsADirectory => "is a directory, not a file",
        _ => return Error::io(path, e),
    };
    Error::io(path, io::Error::new(e.kind(), text))
}

/// Opens `path` (`-`: standard input) for reading, without decompressing anything.
pub(crate) fn open_stream(path: &Path, limits: &Limits) -> Result<Stream> {
    let terminal = |name: &Path| {
        Error::data(name, "is a terminal; give a file, or pipe the data in (for example `--data - < FILE`)")
    };
    if path == Path::new(STDIN) {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Err(terminal(Path::new(STDIN_NAME)));
        }
        return Ok(Stream { reader: Box::new(stdin), size: None });
    }
    let meta = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
    if meta.is_dir() {
        return Err(open_error(path, io::Error::from(io::ErrorKind::IsADirectory)));
    }
    #[cfg(unix)]
    if std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        return fifo::open(path, limits);
    }
    #[cfg(not(unix))]
    let _ = limits; // used for FIFOs only
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    if file.is_terminal() {
        return Err(terminal(path));
    }
    Ok(Stream { reader: Box::new(file), size: meta.is_file().then_some(meta.len()) })
}

/// FIFOs and pipes named by a path (`/dev/stdin` in a pipeline): opened without waiting for a writer, then
/// read once a writer has come, or given up after [`Limits::fifo_wait`].
#[cfg(target_os = "linux")]
mod fifo {
    use std::fs::{File, OpenOptions};
    use std::io::{self, Read};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::time::Instant;

    use super::{Stream, open_error};
    use crate::data::limits::Limits;
    use crate::error::{Error, Result};

    pub(super) fn open(path: &Path, limits: &Limits) -> Result<Stream> {
        let file =
            OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| open_error(path, e))?;
        let deadline = Instant::now() + limits.fifo_wait;
        let mut hung_up = false;
        loop {
            // A byte: data is flowing. WouldBlock: a writer is there, with nothing written yet. 0: no writer
            // (none yet, or one that left: poll reports the hang-up only after a writer has come and gone).
            let mut first = [0u8; 1];
            match (&file).read(&mut first) {
                Ok(1) => return blocking(path, file, Some(first[0])),
                Ok(_) if hung_up => return blocking(path, file, None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return blocking(path, file, None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `fd` is one valid pollfd for an open descriptor, and the count says 1.
            let n = unsafe { libc::poll(&mut fd, 1, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io(path, e));
            }
            if n == 0 {
                return Err(Error::data(
                    path,
                    format!(
                        "is a FIFO that no program opened for writing within {} s; start the writer first, or give a regular file",
                        limits.fifo_wait.as_secs_f64()
                    ),
                ));
            }
            hung_up |= fd.revents & libc::POLLHUP != 0;
        }
    }

    /// The FIFO back in blocking mode (a writer is there now), with the byte already read in front.
    fn blocking(path: &Path, file: File, first: Option<u8>) -> Result<Stream> {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this function owns (through `file`), with integer arguments only.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) >= 0
        };
        if !ok {
            return Err(Error::io(path, io::Error::last_os_error()));
        }
        let head: Vec<u8> = first.into_iter().collect();
        Ok(Stream { reader: Box::new(io::Cursor::new(head).chain(file)), size: None })
    }
}

/// FIFOs are read on Linux only: elsewhere opening one would wait, without a limit, for a writer.
#[cfg(all(unix, not(target_os = "linux")))]
mod fifo {
    use std::path::Path;

    use super::Stream;
    use crate::data::limits::Limits;
    use crate::error::{Error, Result};

    pub(super) fn open(path: &Path, _: &Limits) -> Result<Stream> {
        Err(Error::data(path, "is a FIFO; FIFOs are read on Linux only here: give a regular file, or `-` for stdin"))
    }
}
