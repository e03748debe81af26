//! Output files: atomic writes through `tempfile` (a named temporary file beside the target, flushed to
//! disk, then persisted over it, so a failed or killed run never leaves a half-written file or corrupts an
//! earlier result), appends, and the checks that an output path can be written at all, made before any
//! work starts.
//!
//! An output path that is a symbolic link is written through: the file it points to is replaced
//! atomically and the link is kept. An output that is a stream (a pipe or FIFO, `/dev/null`, a terminal,
//! `/dev/stdout` as any of those) is written straight to, never replaced by a file; other special files (a
//! disk, another device, a socket) are refused.
//!
//! Temporary files are named `.{name}.{pid}.{random}.tmp{.ext}`: a run killed with SIGKILL cannot remove
//! its own, so the next write beside the same target removes those whose process is gone.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::{Builder, NamedTempFile};

mod stream;

use crate::error::{Error, Result};

/// Checks that `path` can be an output file, before any work is done: a non-empty name that does not end
/// in `/`, not a directory, in a directory that exists and where a file can be created (not a read-only
/// file system), and a name the file system accepts (not too long).
pub fn check_output_path(path: &Path) -> Result<()> {
    check_name(path)?;
    let path = match target(path)? {
        Target::File(p) => p,
        Target::Stream(_) => return Ok(()),
    };
    let path = path.as_path();
    let dir = parent(path);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(io_other(path, format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(io_other(path, format!("directory {} does not exist", dir.display())));
        }
        Err(e) => return Err(Error::io(dir, e)),
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(io_other(path, "is a directory, not a file".into())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A name too long, a component that is not a directory, no permission to look.
        Err(e) => return Err(Error::io(path, e)),
    }
    // Creating (and dropping) a temporary file finds a read-only file system or a directory without write
    // permission now, not after the first epoch.
    temp_file(path).map(drop)
}

/// Whether `a` and `b` name the same file: the same inode where both exist, else the same canonical path
/// (the directory resolved, so `./m.csv` and `m.csv` match even before the file exists).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return (x.dev(), x.ino()) == (y.dev(), y.ino());
        }
    }
    let resolve = |p: &Path| {
        // A link is compared by the file it leads to, made or not.
        let p = match target(p) {
            Ok(Target::File(q)) => q,
            _ => p.to_path_buf(),
        };
        let p = p.as_path();
        std::fs::canonicalize(p).ok().or_else(|| {
            let dir = std::fs::canonicalize(parent(p)).ok()?;
            Some(dir.join(p.file_name()?))
        })
    };
    match (resolve(a), resolve(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Whether `path` is the process's standard output (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`; the
/// command line's `-`), which other things print to as well.
pub fn is_standard_output(path: &Path) -> bool {
    ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"].iter().any(|s| path == Path::new(s))
}

/// Whether `path` is `/dev/null` (or leads there): a stream that takes anything, any number of times.
pub fn is_null_device(path: &Path) -> bool {
    stream::is_null(path)
}

/// Whether `path` is an output stream (a pipe, FIFO, `/dev/null` or terminal) rather than a file: what is
/// written there cannot be read back.
pub fn is_stream(path: &Path) -> bool {
    matches!(target(path), Ok(Target::Stream(_)))
}

/// Writes `bytes` to `path` atomically (straight through where `path` is a stream).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    check_name(path)?;
    let path = match target(path)? {
        Target::File(p) => p,
        Target::Stream(p) => return stream::write(&p, bytes),
    };
    let mut tmp = temp_file(&path)?;
    tmp.write_all(bytes).map_err(|e| Error::io(&path, e))?;
    persist(&path, tmp)
}

/// Lets `write` produce the file at a temporary path (writers that open files by name), then persists it
/// over `path`. On any error the temporary file is removed and `path` is left as it was. Where `path` is a
/// stream, the file is made in the system's temporary directory and copied to it.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_name(path)?;
    match target(path)? {
        Target::File(p) => {
            let tmp = temp_file(&p)?;
            write(tmp.path())?;
            persist(&p, tmp)
        }
        Target::Stream(p) => {
            let tmp = Builder::new().suffix(&temp_affixes(&p).1).tempfile().map_err(|e| Error::io(&p, e))?;
            write(tmp.path())?;
            let bytes = std::fs::read(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
            stream::write(&p, &bytes)
        }
    }
}

/// Appends `bytes` to the existing file `path` (not flushed to disk: a killed process loses nothing that
/// was written, a crash of the machine may), or writes them to the stream `path` is.
pub fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = match target(path)? {
        Target::File(p) => p,
        Target::Stream(p) => return stream::write(&p, bytes),
    };
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&path, e))
}

/// Where an output named `path` goes.
enum Target {
    /// A file (existing or not) to replace atomically: `path`, or the file its symbolic links lead to.
    File(PathBuf),
    /// A stream to write straight to.
    Stream(PathBuf),
}

/// The most symbolic links followed to find a dangling link's file (as the kernel's limit).
const MAX_LINKS: usize = 40;

fn target(path: &Path) -> Result<Target> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m.file_type().is_symlink(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::File(path.to_path_buf())),
        Err(e) => return Err(Error::io(path, e)),
    };
    match std::fs::metadata(path) {
        // The process's own descriptor (`/dev/stdout` redirected to a file): appended to, as the shell
        // opened it, not replaced behind its back.
        Ok(m) if m.is_file() && names_a_descriptor(path) => Ok(Target::Stream(path.to_path_buf())),
        Ok(m) if m.is_file() && link => Ok(Target::File(std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?)),
        Ok(m) if m.is_file() || m.is_dir() => Ok(Target::File(path.to_path_buf())),
        Ok(m) => stream::check(path, &m).map(|()| Target::Stream(path.to_path_buf())),
        // A link to a file not made yet: the file is made where the link leads.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && link => dangling_target(path).map(Target::File),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Whether `path` names one of the process's open descriptors: `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
/// `/proc/self/fd/N`.
fn names_a_descriptor(path: &Path) -> bool {
    let p = path.to_string_lossy();
    ["/dev/stdout", "/dev/stderr"].contains(&&*p) || p.starts_with("/dev/fd/") || p.starts_with("/proc/self/fd/")
}

/// The path a chain of symbolic links ending nowhere leads to.
fn dangling_target(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::read_link(&p) {
            Ok(next) => p = if next.is_absolute() { next } else { parent(&p).join(next) },
            Err(_) => return Ok(p),
        }
    }
    Err(io_other(path, format!("more than {MAX_LINKS} symbolic links in a chain")))
}

fn io_other(path: &Path, msg: String) -> Error {
    Error::io(path, std::io::Error::other(msg))
}

/// The directory a file name lives in (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The checks on the name itself: not empty, not ending in a separator (which `Path` would drop).
fn check_name(path: &Path) -> Result<()> {
    let text = path.as_os_str().to_string_lossy();
    if text.is_empty() {
        return Err(Error::Invalid("an output path is empty".into()));
    }
    if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
        return Err(io_other(path, "ends in a path separator, so it names a directory; give a file name".into()));
    }
    if path.file_name().is_none() {
        return Err(io_other(path, "names no file".into()));
    }
    Ok(())
}

/// The fixed parts of a temporary file's name beside `path`: `.{stem}.` before the pid and `.tmp{.ext}`
/// after the random part. The stem is the file name cut to 64 bytes and the extension kept only when
/// short, so the temporary name fits wherever the target's does.
fn temp_affixes(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned()).filter(|e| e.len() <= 16);
    (format!(".{}.", &name[..end]), format!(".tmp{}", ext.map(|e| format!(".{e}")).unwrap_or_default()))
}

/// Random characters `tempfile` puts in a name.
const RANDOM_LEN: usize = 6;

fn temp_file(path: &Path) -> Result<NamedTempFile> {
    remove_stale_temps(path);
    let (stem, suffix) = temp_affixes(path);
    let prefix = format!("{stem}{}.", std::process::id());
    let mut b = Builder::new();
    b.prefix(&prefix).suffix(&suffix).rand_bytes(RANDOM_LEN);
    #[cfg(unix)]
    {
        // As `File::create` would: readable by others unless the umask says otherwise (tempfile's default
        // is owner-only).
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(parent(path)).map_err(|e| {
        // tempfile adds the temporary name ("... at path ..."), which would only confuse.
        let why = e.to_string();
        let why = why.split(" at path ").next().unwrap_or(&why);
        io_other(path, format!("cannot create a file in {}: {why}", parent(path).display()))
    })
}

/// Flushes the temporary file to disk and renames it over `path`.
fn persist(path: &Path, tmp: NamedTempFile) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map(drop).map_err(|e| Error::io(path, e.error))
}

/// Removes temporary files that killed runs left beside `path` (named as [`temp_file`] names them, with
/// the pid of a process that is gone). Only where processes can be looked up (`/proc`); elsewhere they
/// stay, harmless.
fn remove_stale_temps(path: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let (stem, suffix) = temp_affixes(path);
    let Ok(entries) = std::fs::read_dir(parent(path)) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&stem).and_then(|r| r.strip_suffix(&suffix)) else { continue };
        let Some((pid, random)) = rest.split_once('.') else { continue };
        let ours = random.len() == RANDOM_LEN && random.chars().all(|c| c.is_ascii_alphanumeric());
        if let (true, Ok(pid)) = (ours, pid.parse::<u32>()) {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
