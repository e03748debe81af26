//! MNIST IDX files (images: magic 0x00000803, u32 big-endian count, rows, cols, then u8 pixels; labels: magic
//! 0x00000801, count, u8 labels), plain or gzip-compressed, from files or streams.
//!
//! Both headers are read and compared before either body, and what the bodies will take is checked against the
//! memory limit before anything is allocated: a gzip file whose header claims millions of images is refused
//! without inflating it. A body is read up to its header's size plus one byte (to notice a longer file).

use std::io::Read;
use std::path::Path;

use ndarray::Array2;

use crate::data::dataset::{Dataset, check_classes, check_one_hot_size};
use crate::data::input::{Input, read_up_to};
use crate::data::limits::{Limits, reserve};
use crate::error::{Error, Result};

const IMAGES: u32 = 0x0000_0803;
const LABELS: u32 = 0x0000_0801;

/// MNIST IDX files (images: magic 0x00000803, u32 big-endian count, rows, cols, then u8 pixels; labels: magic
/// 0x00000801, count, u8 labels), plain or gzip-compressed. Pixels become f32 0..255 (unnormalised), x is
/// (N, rows*cols). `classes`: None means max label + 1. name = the images path.
pub fn load_idx(images: &Path, labels: &Path, classes: Option<usize>) -> Result<Dataset> {
    let limits = Limits::detect();
    check_classes(classes, labels)?;
    let images = Input::open(images, &limits)?;
    read(images, Input::open(labels, &limits)?, classes, &limits)
}

/// An IDX header: the dimensions its magic announces.
struct Header {
    dims: Vec<usize>,
    /// The values after the header (the product of the dimensions).
    len: usize,
    header_len: usize,
}

impl Header {
    fn dims_text(&self) -> String {
        self.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
    }
}

/// Reads an images input and a labels input; see the module documentation.
pub(crate) fn read(mut images: Input, mut labels: Input, classes: Option<usize>, limits: &Limits) -> Result<Dataset> {
    check_classes(classes, labels.name())?;
    let ih = header(&mut images, IMAGES, "image")?;
    let [n, rows, cols] = ih.dims[..] else {
        unreachable!("the images magic announces 3 dimensions, and `header` read 3");
    };
    if n == 0 {
        return Err(Error::data(images.name(), "contains no images"));
    }
    let size = rows * cols; // cannot overflow: `header` checked n * rows * cols
    if size == 0 {
        return Err(Error::data(images.name(), format!("images are {rows}x{cols}, which has no pixels")));
    }
    let lh = header(&mut labels, LABELS, "label")?;
    if lh.len != n {
        return Err(Error::data(
            labels.name(),
            format!("holds {} labels but {} holds {n} images", lh.len, images.name().display()),
        ));
    }
    check_size(&images, &ih)?;
    check_size(&labels, &lh)?;
    // What the bodies become: pixels as f32, labels as usize (the one-hot targets are checked once the labels
    // give the class count).
    let body = (n as u64).saturating_mul(size as u64 * 4 + size_of::<usize>() as u64 + 1);
    let what = format!("{n} images of {rows}x{cols} pixels (as f32) and their labels");
    limits.check_memory(images.name(), body, &what)?;

    let raw_labels = body_bytes(&mut labels, &lh)?;
    let labels_vec: Vec<usize> = raw_labels.iter().map(|&l| usize::from(l)).collect();
    let max = labels_vec.iter().copied().fold(0, usize::max);
    if let Some(c) = classes
        && let Some((i, l)) = labels_vec.iter().enumerate().find(|&(_, &l)| l >= c)
    {
        return Err(Error::data(
            labels.name(),
            format!("label {l} of item {} is out of range for {c} classes (labels must be 0..={})", i + 1, c - 1),
        ));
    }
    let classes = classes.unwrap_or(max + 1);
    check_one_hot_size(labels.name(), n, classes)?;
    let one_hot = (n as u64).saturating_mul(classes as u64 * 4);
    limits.check_memory(
        images.name(),
        body.saturating_add(one_hot),
        &format!("{what}, with {classes} one-hot classes"),
    )?;

    let pixels = body_pixels(&mut images, &ih)?;
    let x = Array2::from_shape_vec((n, size), pixels).map_err(|e| Error::data(images.name(), e.to_string()))?; // (N, rows*cols)
    let path = images.name().to_path_buf();
    Dataset::classification(path.display().to_string(), x, labels_vec, classes, &path)
}

/// Reads and checks the header of an IDX input of u8 values; the magic's low byte is the number of
/// dimensions.
fn header(input: &mut Input, magic: u32, what: &str) -> Result<Header> {
    let after = if input.is_gzip() { " after decompression" } else { "" };
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut bytes = vec![0u8; header_len];
    let got = read_up_to(input.reader(), &mut bytes).map_err(|e| input.read_error(e))?;
    let name = input.name();
    if got == 0 {
        return Err(Error::data(name, format!("the file is empty{after}")));
    }
    let words: Vec<u32> = bytes.chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])).collect();
    if got >= 4 && words[0] != magic {
        return Err(Error::data(
            name,
            format!("not an IDX {what} file: magic number is 0x{:08x}, expected 0x{magic:08x}", words[0]),
        ));
    }
    if got < header_len {
        return Err(Error::data(
            name,
            format!("truncated: expected at least {header_len} bytes of header, found {got}{after}"),
        ));
    }
    let dims: Vec<usize> = words[1..].iter().map(|&d| d as usize).collect();
    // No buffer can hold more than isize::MAX bytes; that bound also keeps the sums below from overflowing.
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= isize::MAX as usize / 8);
    let Some(len) = len else {
        return Err(Error::data(name, format!("header dimensions {dims:?} are too large")));
    };
    Ok(Header { dims, len, header_len })
}

/// For a plain regular file, whose size is known: the size must be what the header says.
fn check_size(input: &Input, h: &Header) -> Result<()> {
    match input.size() {
        Some(size) => length_error(input, h, size.saturating_sub(h.header_len as u64)),
        None => Ok(()),
    }
}

/// An error unless `found` values (after the header) are the `h.len` the header says.
fn length_error(input: &Input, h: &Header, found: u64) -> Result<()> {
    let after = if input.is_gzip() { " after decompression" } else { "" };
    let expected = h.header_len as u64 + h.len as u64;
    if found < h.len as u64 {
        return Err(Error::data(
            input.name(),
            format!(
                "truncated: expected {expected} bytes ({}-byte header + {} values), found {}{after}",
                h.header_len,
                h.dims_text(),
                h.header_len as u64 + found
            ),
        ));
    }
    if found > h.len as u64 {
        return Err(Error::data(
            input.name(),
            format!("longer than the {expected} bytes its header describes ({} values){after}", h.dims_text()),
        ));
    }
    Ok(())
}

/// Reads the body in pieces, handing each to `take`; then checks that the input ends where the header says.
fn body(input: &mut Input, h: &Header, mut take: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut piece = vec![0u8; 64 << 10];
    let mut found = 0u64;
    let mut limited = input.reader().take(h.len as u64 + 1);
    let failed = loop {
        let k = match limited.read(&mut piece) {
            Ok(0) => break None,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e),
        };
        let wanted = (h.len as u64).saturating_sub(found).min(k as u64) as usize;
        take(&piece[..wanted])?;
        found += k as u64;
    };
    match failed {
        Some(e) => Err(input.read_error(e)),
        None => length_error(input, h, found),
    }
}

fn body_bytes(input: &mut Input, h: &Header) -> Result<Vec<u8>> {
    let (mut out, path) = (Vec::new(), input.name().to_path_buf());
    body(input, h, |p| {
        grow(&mut out, p.len(), h.len, &path)?;
        out.extend_from_slice(p);
        Ok(())
    })?;
    Ok(out)
}

fn body_pixels(input: &mut Input, h: &Header) -> Result<Vec<f32>> {
    let (mut out, path) = (Vec::new(), input.name().to_path_buf());
    body(input, h, |p| {
        grow(&mut out, p.len(), h.len, &path)?;
        out.extend(p.iter().map(|&v| f32::from(v)));
        Ok(())
    })?;
    Ok(out)
}

/// Room for `more` values, doubling the capacity up to the `len` the header claims (checked against the
/// memory limit already): a stream that claims much and holds little allocates for what it holds.
fn grow<T>(out: &mut Vec<T>, more: usize, len: usize, path: &Path) -> Result<()> {
    if out.len() + more <= out.capacity() {
        return Ok(());
    }
    let want = (out.capacity() * 2).max(out.len() + more).max(64 << 10).min(len);
    reserve(out, want - out.len(), path)
}
