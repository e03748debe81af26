//! The IDX reader: plain and gzipped files, and every error it reports.

use std::path::Path;

use backprop::data::{self, Task};

use crate::{assert_contains, classes, gzip, write};

/// An IDX images file: magic 0x803, n, rows, cols, pixels.
fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803, n, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

/// An IDX labels file: magic 0x801, n, labels.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0801, labels.len() as u32] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 2 * 3).map(|i| (i * 15) as u8).collect(); // 3 images of 2x3
    let labels = [4u8, 0, 2];
    let img = idx_images(3, 2, 3, &pixels);
    let lab = idx_labels(&labels);
    let plain = (write(dir.path(), "img.idx", &img), write(dir.path(), "lab.idx", &lab));
    let gz = (write(dir.path(), "img.idx.gz", gzip(&img)), write(dir.path(), "lab.idx.gz", gzip(&lab)));
    for (images, labs) in [&plain, &gz, &(plain.0.clone(), gz.1.clone())] {
        let ds = data::load_idx(images, labs, None).unwrap();
        assert_eq!(ds.name, images.display().to_string());
        assert_eq!(ds.x.dim(), (3, 6));
        let expected: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
        assert_eq!(ds.x.iter().copied().collect::<Vec<_>>(), expected);
        assert_eq!(ds.labels, Some(vec![4, 0, 2]));
        assert_eq!(ds.task, Task::Classification { classes: 5 });
        assert_eq!(ds.y.dim(), (3, 5));
        assert_eq!(ds.y[[0, 4]], 1.0);
    }
    let ds = data::load_idx(&plain.0, &plain.1, Some(10)).unwrap();
    assert_eq!(ds.y.dim(), (3, 10));
    assert_eq!(classes(&ds), 10);
}

#[test]
fn idx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = [7u8; 2 * 2 * 2];
    let good_img = write(dir.path(), "good-images", idx_images(2, 2, 2, &pixels));
    let good_lab = write(dir.path(), "good-labels", idx_labels(&[1, 3]));
    let err = |images: &Path, labels: &Path, classes: Option<usize>| {
        data::load_idx(images, labels, classes).unwrap_err().to_string()
    };

    let short = write(dir.path(), "short-images", &idx_images(2, 2, 2, &pixels)[..20]);
    assert_contains(&err(&short, &good_lab, None), &["short-images", "truncated", "expected 24 bytes", "found 20"]);
    let short_gz = write(dir.path(), "short-images.gz", gzip(&idx_images(2, 2, 2, &pixels)[..23]));
    assert_contains(
        &err(&short_gz, &good_lab, None),
        &["short-images.gz", "truncated", "expected 24 bytes", "found 23"],
    );
    let head = write(dir.path(), "head-images", &idx_images(2, 2, 2, &pixels)[..10]);
    assert_contains(&err(&head, &good_lab, None), &["head-images", "truncated", "16 bytes of header", "found 10"]);
    let long = write(dir.path(), "long-labels", [idx_labels(&[1, 3]), vec![0]].concat());
    assert_contains(&err(&good_img, &long, None), &["long-labels", "longer than the 10 bytes"]);

    // Swapped files: each has the other's magic.
    assert_contains(&err(&good_lab, &good_img, None), &["good-labels", "magic", "0x00000801", "0x00000803"]);
    assert_contains(&err(&good_img, &good_img, None), &["good-images", "magic", "0x00000803", "expected 0x00000801"]);
    let empty = write(dir.path(), "empty-images", b"");
    assert_contains(&err(&empty, &good_lab, None), &["empty-images", "empty"]);
    let bad_gz = write(dir.path(), "bad.gz", [0x1f, 0x8b, 1, 2, 3, 4, 5]);
    assert_contains(&err(&bad_gz, &good_lab, None), &["bad.gz", "gzip"]);

    let three = write(dir.path(), "three-labels", idx_labels(&[1, 3, 0]));
    assert_contains(&err(&good_img, &three, None), &["three-labels", "3 labels", "good-images", "2 images"]);
    assert_contains(&err(&good_img, &good_lab, Some(3)), &["good-labels", "label 3", "out of range for 3 classes"]);
    let zero = write(dir.path(), "zero-images", idx_images(0, 2, 2, &[]));
    assert_contains(&err(&zero, &good_lab, None), &["zero-images", "no images"]);
    let huge = write(dir.path(), "huge-images", idx_images(u32::MAX, u32::MAX, u32::MAX, &pixels));
    let _ = data::load_idx(&huge, &good_lab, None).unwrap_err();
    let missing = dir.path().join("missing-images");
    assert_contains(&err(&missing, &good_lab, None), &["missing-images"]);
}

/// IDX images and labels as streams (`data::Input::from_reader`), read as `data::load` reads them.
fn load_streams(
    images: impl std::io::Read + Send + 'static,
    labels: impl std::io::Read + Send + 'static,
    limits: data::Limits,
) -> backprop::Result<backprop::data::Dataset> {
    let source = data::Source::Idx {
        images: data::Input::from_reader("images-stream", images)?,
        labels: data::Input::from_reader("labels-stream", labels)?,
    };
    source.load(&data::Request { limits, ..data::Request::new(1) })
}

#[test]
fn idx_headers_are_compared_before_either_body_is_read() {
    // The images header claims a million 28x28 images and is followed by endless pixels; the labels
    // file holds 5. The mismatch is found from the headers alone.
    let (images, taken) = crate::Endless::new(idx_images(1_000_000, 28, 28, &[]), [0u8]);
    let err = load_streams(images, std::io::Cursor::new(idx_labels(&[0, 1, 2, 3, 4])), data::Limits::detect());
    let err = err.unwrap_err().to_string();
    assert_contains(&err, &["labels-stream", "holds 5 labels", "images-stream holds 1000000 images"]);
    let taken = taken.load(std::sync::atomic::Ordering::Relaxed);
    assert!(taken <= 1 << 20, "{taken} bytes of the images stream were read to compare two headers");

    // The same from gzip files: the claim is compared before anything is inflated.
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "claims-images.gz", gzip(&idx_images(1_000_000, 28, 28, &[7; 1000])));
    let lab = write(dir.path(), "five-labels.gz", gzip(&idx_labels(&[0, 1, 2, 3, 4])));
    let err = data::load_idx(&img, &lab, None).unwrap_err().to_string();
    assert_contains(&err, &["five-labels.gz", "holds 5 labels", "1000000 images"]);
}

#[test]
fn idx_bodies_beyond_the_memory_limit_are_refused_before_reading() {
    // 1000 images of 28x28 need 3 MiB as f32: more than a 1 MiB limit, whatever the streams hold.
    let (images, taken) = crate::Endless::new(idx_images(1000, 28, 28, &[]), [0u8]);
    let mut head = idx_labels(&[]);
    head[4..8].copy_from_slice(&1000u32.to_be_bytes()); // a count of 1000, then endless labels
    let (labels, _) = crate::Endless::new(head, [0u8]);
    let err = load_streams(images, labels, data::Limits::with_memory(1 << 20)).unwrap_err().to_string();
    assert_contains(&err, &["images-stream", "1000 images of 28x28", "more than the 1.0 MiB", "the limit given"]);
    assert!(taken.load(std::sync::atomic::Ordering::Relaxed) <= 1 << 20);

    // Within the limit the same claim loads, reading exactly what the headers say.
    let pixels: Vec<u8> = (0..10 * 4).map(|i| i as u8).collect();
    let ds = load_streams(
        crate::Trickle::new(idx_images(10, 2, 2, &pixels), 3),
        crate::Trickle::new(idx_labels(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 1),
        data::Limits::with_memory(1 << 20),
    )
    .unwrap();
    assert_eq!((ds.x.dim(), ds.y.dim()), ((10, 4), (10, 10)));
    assert_eq!(ds.x.row(9).to_vec(), vec![36.0, 37.0, 38.0, 39.0]);

    // A plain file is checked against its size first: a short file is "truncated", not "too large".
    let dir = tempfile::tempdir().unwrap();
    let img = write(dir.path(), "huge-claim-images", idx_images(u32::MAX, 1, 1, &[1, 2]));
    let lab = write(dir.path(), "huge-claim-labels", {
        let mut l = idx_labels(&[]);
        l[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        l
    });
    let err = data::load_idx(&img, &lab, None).unwrap_err().to_string();
    assert_contains(&err, &["huge-claim-images", "truncated", "found 18"]);
}
