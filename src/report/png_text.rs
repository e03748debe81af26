//! A compressed text chunk (PNG `zTXt`) in the plot: the metrics CSV the plot was drawn from, so that a
//! resumed run can read its history back from the plot alone.

use std::io::{Read, Write};

use flate2::Crc;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// The chunks of a PNG as (type, data), or `None` where the bytes are not a well-formed PNG.
fn chunks(png: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    let mut rest = png.strip_prefix(&SIGNATURE)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let data = rest.get(8..8usize.checked_add(len)?)?;
        rest = rest.get(12 + len..)?;
        out.push((kind, data));
    }
    Some(out)
}

fn chunk(kind: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = Crc::new();
    crc.update(&kind);
    crc.update(data);
    let mut out = Vec::with_capacity(12 + data.len());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// `png` with a `zTXt` chunk holding `text` under `keyword`, just before its `IEND` chunk; `None` when `png`
/// is not a PNG that ends in `IEND`.
pub(super) fn with_text(png: &[u8], keyword: &str, text: &str) -> Option<Vec<u8>> {
    let (last, _) = *chunks(png)?.last()?;
    if &last != b"IEND" {
        return None;
    }
    // Fast: the text is written on every plot, and can be tens of MB for a million epochs.
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(text.as_bytes()).ok()?;
    let mut data = keyword.as_bytes().to_vec();
    data.extend_from_slice(&[0, 0]); // the keyword's terminator, then compression method 0 (zlib)
    data.extend(z.finish().ok()?);
    let iend = png.len() - 12;
    Some([&png[..iend], &chunk(*b"zTXt", &data), &png[iend..]].concat())
}

/// Whether `bytes` start like a PNG.
pub(super) fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&SIGNATURE)
}

/// The text of the `zTXt` chunk named `keyword`, inflated to at most `limit` bytes; `None` when there is
/// none (or it is damaged).
pub(super) fn text(png: &[u8], keyword: &str, limit: u64) -> Option<String> {
    let data = chunks(png)?.into_iter().find_map(|(kind, data)| {
        let body = data.strip_prefix(keyword.as_bytes())?.strip_prefix(&[0, 0])?;
        (&kind == b"zTXt").then_some(body)
    })?;
    let mut out = String::new();
    ZlibDecoder::new(data).take(limit + 1).read_to_string(&mut out).ok()?;
    (out.len() as u64 <= limit).then_some(out)
}
