//! IDX: mutated image and label files, plain and gzipped.

use std::io::{Read, Write};
use std::path::Path;

use backprop::data::{self, MAX_CLASSES, Task};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{TestCaseError, TestCaseResult};

use crate::{Stats, guarded, names_path, run, scratch, with_files, write_file};

// ---------------------------------------------------------------------------------------------------------
// IDX
// ---------------------------------------------------------------------------------------------------------

/// Header words worth trying: magics, small and boundary dimensions, and two factors of 2^64 - 1
/// (3 * 1722007169 * 3570783445 = 2^64 - 1, the largest product `read_idx` accepts).
const IDX_WORDS: &[u32] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    255,
    256,
    0x0801,
    0x0802,
    0x0803,
    0x0804,
    0x0c03,
    0x0d01,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
    1_722_007_169,
    3_570_783_445,
];

#[derive(Clone, Debug)]
enum IdxEdit {
    Truncate(Index),
    Flip(Index, u8),
    /// A flip in the first 16 bytes (the header).
    FlipHeader(u8, u8),
    /// Sets the big-endian word at 4 * k.
    SetWord(u8, u32),
    Append(Vec<u8>),
    /// Gzips the bytes so far (later edits change the compressed bytes).
    Gzip,
}

fn idx_edit() -> impl Strategy<Value = IdxEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(IdxEdit::Truncate),
        2 => (any::<Index>(), 1u8..).prop_map(|(i, m)| IdxEdit::Flip(i, m)),
        2 => (0u8..16, 1u8..).prop_map(|(i, m)| IdxEdit::FlipHeader(i, m)),
        2 => (0u8..4, prop_oneof![select(IDX_WORDS), any::<u32>()]).prop_map(|(k, w)| IdxEdit::SetWord(k, w)),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(IdxEdit::Append),
        2 => Just(IdxEdit::Gzip),
    ]
}

#[derive(Clone, Debug)]
pub(crate) struct IdxCase {
    n: u32,
    rows: u32,
    cols: u32,
    pixels: Vec<u8>,
    labels: Vec<u8>,
    image_edits: Vec<IdxEdit>,
    label_edits: Vec<IdxEdit>,
    pub(crate) classes: Option<usize>,
}

impl IdxCase {
    /// The images and labels files' bytes, edits applied.
    pub(crate) fn files(&self) -> (Vec<u8>, Vec<u8>) {
        let img = idx_file(&[0x0803, self.n, self.rows, self.cols], &self.pixels);
        let lab = idx_file(&[0x0801, self.n], &self.labels);
        (apply_idx_edits(img, &self.image_edits), apply_idx_edits(lab, &self.label_edits))
    }
}

pub(crate) fn idx_case() -> impl Strategy<Value = IdxCase> {
    let files = (1u32..=20, 1u32..=8, 1u32..=8).prop_flat_map(|(n, rows, cols)| {
        (
            Just((n, rows, cols)),
            prop::collection::vec(any::<u8>(), (n * rows * cols) as usize),
            prop::collection::vec(prop_oneof![9 => 0u8..10, 1 => any::<u8>()], n as usize),
        )
    });
    let edits = || prop_oneof![1 => Just(Vec::new()), 1 => prop::collection::vec(idx_edit(), 1..4)];
    let classes = prop_oneof![
        4 => Just(None),
        3 => (0usize..12).prop_map(Some),
        1 => select(vec![255, 256, 257, MAX_CLASSES, MAX_CLASSES + 1, usize::MAX]).prop_map(Some),
    ];
    (files, edits(), edits(), classes).prop_map(
        |(((n, rows, cols), pixels, labels), image_edits, label_edits, classes)| IdxCase {
            n,
            rows,
            cols,
            pixels,
            labels,
            image_edits,
            label_edits,
            classes,
        },
    )
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip_if_gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).ok()?;
    Some(out)
}

fn idx_file(words: &[u32], payload: &[u8]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).chain(payload.iter().copied()).collect()
}

fn apply_idx_edits(mut bytes: Vec<u8>, edits: &[IdxEdit]) -> Vec<u8> {
    for e in edits {
        match e {
            IdxEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            IdxEdit::Flip(i, m) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= m;
            }
            IdxEdit::FlipHeader(i, m) if usize::from(*i) < bytes.len() => bytes[usize::from(*i)] ^= m,
            IdxEdit::SetWord(k, w) => {
                let at = 4 * usize::from(*k);
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&w.to_be_bytes());
                }
            }
            IdxEdit::Append(extra) => bytes.extend_from_slice(extra),
            IdxEdit::Gzip => bytes = gzip(&bytes),
            _ => {}
        }
    }
    bytes
}

/// The header words and payload of an IDX file as the loader should see it (after gunzipping).
fn parse_idx(bytes: &[u8], ndims: usize) -> Option<(Vec<usize>, Vec<u8>)> {
    let plain = gunzip_if_gzip(bytes)?;
    let head = plain.get(..4 + 4 * ndims)?;
    let words: Vec<usize> =
        head.chunks_exact(4).skip(1).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize).collect();
    Some((words, plain[4 + 4 * ndims..].to_vec()))
}

/// Loads an image/label pair and checks the result against the files' own (decompressed) contents.
pub(crate) fn check_idx_files(images: &Path, labels: &Path, classes: Option<usize>, stats: &Stats) -> TestCaseResult {
    let r = guarded("load_idx", || data::load_idx(images, labels, classes))?;
    stats.outcome(&r);
    let ds = match r {
        Ok(ds) => ds,
        Err(e) => return names_path(&e, &[images, labels]),
    };
    let img_bytes = std::fs::read(images).unwrap();
    let lab_bytes = std::fs::read(labels).unwrap();
    let (dims, pixels) =
        parse_idx(&img_bytes, 3).ok_or_else(|| TestCaseError::fail("loaded an image file that does not parse"))?;
    let (ldims, raw_labels) =
        parse_idx(&lab_bytes, 1).ok_or_else(|| TestCaseError::fail("loaded a label file that does not parse"))?;
    let (n, size) = (dims[0], dims[1] * dims[2]);
    prop_assert_eq!(&ds.name, &images.display().to_string());
    prop_assert!(n >= 1 && size >= 1, "loaded {} images of {} pixels", n, size);
    prop_assert_eq!(ldims, vec![n]);
    prop_assert_eq!(ds.x.dim(), (n, size), "x is not (count, rows*cols)");
    prop_assert_eq!(pixels.len(), n * size, "loaded a file whose payload does not match its header");
    prop_assert!(ds.x.iter().all(|&v| (0.0..=255.0).contains(&v) && v.fract() == 0.0), "a pixel outside 0..=255");
    prop_assert!(ds.x.iter().zip(&pixels).all(|(&v, &p)| v == f32::from(p)), "pixels differ from the file");
    let want_labels: Vec<usize> = raw_labels.iter().map(|&l| usize::from(l)).collect();
    prop_assert_eq!(ds.labels.as_ref(), Some(&want_labels));
    let Task::Classification { classes: got } = ds.task else {
        return Err(TestCaseError::fail(format!("IDX data loaded as {:?}", ds.task)));
    };
    let max = want_labels.iter().copied().max().unwrap_or(0);
    prop_assert_eq!(got, classes.unwrap_or(max + 1));
    prop_assert!(max < got, "label {} >= {} classes", max, got);
    prop_assert_eq!(ds.y.dim(), (n, got));
    for (row, &l) in ds.y.rows().into_iter().zip(&want_labels) {
        prop_assert!(row[l] == 1.0 && row.iter().filter(|&&v| v != 0.0).count() == 1, "y is not one-hot");
    }
    Ok(())
}

#[test]
fn fuzz_idx_mutated() {
    let dir = scratch("idx");
    let (images, labels) = (dir.path().join("images.idx"), dir.path().join("labels.idx"));
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_idx_mutated.txt");
    run("idx_mutated", persist, idx_case(), |case, stats| {
        let (img, lab) = case.files();
        write_file(&images, &img);
        write_file(&labels, &lab);
        with_files(check_idx_files(&images, &labels, case.classes, stats), &[&images, &labels])
    });
}
