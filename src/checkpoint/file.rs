//! The bytes of a checkpoint file, read within the limits: the 8-byte header length, the header (at most the
//! 100 MB the safetensors crate allows), then the data its offsets describe and one byte more (to notice
//! trailing bytes), after checking what they will need against the memory limit. Never the whole of a file
//! or stream before its header has been checked, so a pipe, a FIFO or a device reads as safely as a file.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::data::input::open_stream;
use crate::data::limits::{Limits, human, reserve};
use crate::error::{Error, Result};

/// The largest header the safetensors crate reads (its `MAX_HEADER_SIZE`).
pub(super) const MAX_HEADER: u64 = 100_000_000;

/// Reads a checkpoint's bytes, or as many as show what is wrong with it (a short or malformed file comes back
/// short, for the parser to describe).
pub(super) fn read(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let stream = open_stream(path, limits)?;
    let mut r = stream.reader;
    let mut bytes = Vec::new();
    append(&mut r, &mut bytes, 8, path)?;
    let Some(prefix) = bytes.get(..8) else {
        return Ok(bytes);
    };
    let n =
        u64::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3], prefix[4], prefix[5], prefix[6], prefix[7]]);
    if stream.size.is_some_and(|size| n > size.saturating_sub(8)) {
        return Ok(bytes); // "header length past the end of the file"
    }
    if n > MAX_HEADER {
        return Err(Error::data(
            path,
            format!(
                "not a valid safetensors file (corrupt or truncated): header too large ({n} bytes; at most {MAX_HEADER})"
            ),
        ));
    }
    // Parsed three times (here, by the safetensors crate, and checked), as JSON values several times its size.
    limits.check_memory(path, n.saturating_mul(16), &format!("its {} header, parsed as JSON,", human(n)))?;
    if append(&mut r, &mut bytes, n, path)? < n {
        return Ok(bytes);
    }
    let Some(extent) = data_extent(&bytes[8..]) else {
        return Ok(bytes); // the parser says what is wrong with the header
    };
    // One byte past the data shows a longer file; a regular file's size bounds what can be read.
    let wanted = extent.saturating_add(1);
    let readable = stream.size.map_or(wanted, |size| wanted.min(size.saturating_sub(8 + n)));
    let total = (8 + n).saturating_add(readable);
    let what = format!("its {} of tensors, read and then converted to parameters,", human(extent));
    limits.check_memory(path, total.saturating_mul(2), &what)?;
    append(&mut r, &mut bytes, readable, path)?;
    Ok(bytes)
}

/// The end of the data area that the header's tensors describe, if the header is a JSON object whose offsets
/// are numbers.
fn data_extent(header: &[u8]) -> Option<u64> {
    let header: Value = serde_json::from_slice(header).ok()?;
    let mut end = 0u64;
    for (name, t) in header.as_object()? {
        if name != "__metadata__" {
            end = end.max(t.get("data_offsets")?.as_array()?.get(1)?.as_u64()?);
        }
    }
    Some(end)
}

/// Appends up to `n` bytes from `r` to `bytes` (fewer at the end of the stream), allocating as they come;
/// returns how many.
fn append(r: &mut impl Read, bytes: &mut Vec<u8>, n: u64, path: &Path) -> Result<u64> {
    const PIECE: u64 = 16 << 20;
    let mut got = 0;
    while got < n {
        let k = (n - got).min(PIECE);
        reserve(bytes, k as usize, path)?;
        let read = r.by_ref().take(k).read_to_end(bytes).map_err(|e| Error::io(path, e))? as u64;
        got += read;
        if read < k {
            break;
        }
    }
    Ok(got)
}
