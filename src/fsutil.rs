//! Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it, so a
//! failed or killed run never leaves a half-written file or corrupts an earlier result.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A temporary path in the same directory as `path`, keeping its extension (some writers look at it).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = format!(".{name}.{}.tmp{ext}", std::process::id());
    path.with_file_name(tmp)
}

/// Checks that `path` can be an output file: not a directory, and its directory exists.
pub fn check_output_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::Invalid("an output path is empty".into()));
    }
    if path.is_dir() {
        return Err(Error::io(path, std::io::Error::other("is a directory, not a file")));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(path, std::io::Error::other(format!("{} is not a directory", dir.display()))));
    }
    if !dir.is_dir() {
        return Err(Error::io(path, std::io::Error::other(format!("directory {} does not exist", dir.display()))));
    }
    Ok(())
}

/// Removes temporary files that killed runs left beside `path` (`.NAME.PID.tmp.EXT` whose process is gone).
/// Only where processes can be looked up (`/proc`); elsewhere they stay, harmless.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let pid =
            file.strip_prefix(&prefix).and_then(|rest| rest.split('.').next()).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            let tmp_name = temp_path(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let expected = tmp_name.replacen(&std::process::id().to_string(), &pid.to_string(), 1);
            if file == expected && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))
    })
}

/// Lets `write` produce the file at a temporary path, then renames it over `path`. On any error the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_output_path(path)?;
    remove_stale_temps(path);
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
