//! The readers as streams and within small limits, on the other targets' inputs.
//!
//! Streamed: the input handed out a few bytes a call (and for CSV, sometimes gzipped) must give what the file
//! gives: the same data set, or for CSV the same error message, for IDX an error as well. Small limits (a few
//! KiB of memory, short lines, little text): no single allocation beyond the memory limit and the readers'
//! fixed buffers, and an `Ok` result that fits the limit.

use std::path::Path;

use backprop::checkpoint;
use backprop::data::{self, Dataset, Input, Limits, Purpose, Request, Source, TargetSpec};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestCaseResult};

use crate::checkpoint::ck_case;
use crate::csv::csv_case;
use crate::idx::{gzip, idx_case};
use crate::streams::Trickle;
use crate::{guarded, guarded_within, names_path, run, scratch, with_files, write_file};

/// What the readers allocate whatever the limits: buffered readers, the csv crate's buffer, an IDX piece.
const BUFFERS: usize = 1 << 20;

fn request(spec: TargetSpec, limits: &Limits) -> Request {
    Request { targets: spec.targets, classes: spec.classes, seed: 1, purpose: Purpose::Train, limits: limits.clone() }
}

/// Limits of a few KiB: memory in [64 B, 64 KiB), lines in [8, 512) bytes, text in [64 B, 16 KiB).
fn small_limits() -> impl Strategy<Value = Limits> {
    (64u64..65536, 8u64..512, 64u64..16384).prop_map(|(memory, line_bytes, text_bytes)| Limits {
        line_bytes,
        text_bytes,
        ..Limits::with_memory(memory)
    })
}

/// The bytes a data set's values, targets and labels take.
fn dataset_bytes(ds: &Dataset) -> u64 {
    (ds.x.len() + ds.y.len()) as u64 * 4 + ds.labels.as_ref().map_or(0, |l| l.len() * size_of::<usize>()) as u64
}

/// The two results must agree: equal data sets, or errors (equal messages if `same_message`).
fn agree(file: &backprop::Result<Dataset>, stream: &backprop::Result<Dataset>, same_message: bool) -> TestCaseResult {
    match (file, stream) {
        (Ok(a), Ok(b)) => {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(&a.x, &b.x, "x differs");
            prop_assert_eq!(&a.y, &b.y, "y differs");
            prop_assert_eq!(&a.labels, &b.labels);
            prop_assert_eq!(a.task, b.task);
        }
        (Err(a), Err(b)) if same_message => prop_assert_eq!(a.to_string(), b.to_string()),
        (Err(_), Err(_)) => {}
        (a, b) => {
            return Err(TestCaseError::fail(format!(
                "the file gave {:?}, the stream {:?}",
                a.as_ref().map(|d| d.x.dim()),
                b.as_ref().map(|d| d.x.dim())
            )));
        }
    }
    Ok(())
}

#[test]
fn fuzz_csv_streamed_in_pieces() {
    let dir = scratch("csv_streamed");
    let path = dir.path().join("input.csv");
    let limits = Limits::detect();
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_csv_streamed_in_pieces.txt");
    run("csv_streamed_in_pieces", persist, (csv_case(), 1usize..9, any::<bool>()), |(case, step, gz), stats| {
        let bytes = case.render();
        write_file(&path, &bytes);
        let file = guarded("load_csv", || data::load_csv(&path, case.spec))?;
        let sent = if gz { gzip(&bytes) } else { bytes };
        let stream = guarded("a CSV stream", || {
            Source::Csv(Input::from_reader(&path, Trickle::new(sent, step))?).load(&request(case.spec, &limits))
        })?;
        stats.outcome(&stream);
        with_files(agree(&file, &stream, true), &[&path])
    });
}

#[test]
fn fuzz_idx_streamed_in_pieces() {
    let dir = scratch("idx_streamed");
    let (images, labels) = (dir.path().join("images.idx"), dir.path().join("labels.idx"));
    let limits = Limits::detect();
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_idx_streamed_in_pieces.txt");
    run("idx_streamed_in_pieces", persist, (idx_case(), 1usize..9), |(case, step), stats| {
        let (img, lab) = case.files();
        write_file(&images, &img);
        write_file(&labels, &lab);
        let file = guarded("load_idx", || data::load_idx(&images, &labels, case.classes))?;
        let spec = TargetSpec { targets: None, classes: case.classes };
        let stream = guarded("IDX streams", || {
            let images = Input::from_reader(&images, Trickle::new(img, step))?;
            let labels = Input::from_reader(&labels, Trickle::new(lab, step))?;
            Source::Idx { images, labels }.load(&request(spec, &limits))
        })?;
        stats.outcome(&stream);
        let r = agree(&file, &stream, false).and_then(|()| match &stream {
            Err(e) => names_path(e, &[&images, &labels]),
            Ok(_) => Ok(()),
        });
        with_files(r, &[&images, &labels])
    });
}

/// An `Ok` data set must fit the limit; an error must name `paths`.
fn within(r: &backprop::Result<Dataset>, limits: &Limits, paths: &[&Path]) -> TestCaseResult {
    match r {
        Ok(ds) => prop_assert!(dataset_bytes(ds) <= limits.memory, "{} bytes kept", dataset_bytes(ds)),
        Err(e) => names_path(e, paths)?,
    }
    Ok(())
}

#[test]
fn fuzz_csv_within_small_limits() {
    let dir = scratch("csv_limits");
    let path = dir.path().join("input.csv");
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_csv_within_small_limits.txt");
    run("csv_within_small_limits", persist, (csv_case(), small_limits()), |(case, limits), stats| {
        write_file(&path, &case.render());
        let budget = limits.memory as usize + BUFFERS;
        let name = path.to_str().unwrap();
        let r = guarded_within("data::load", budget, || data::load(name, None, &request(case.spec, &limits)))?;
        stats.outcome(&r);
        with_files(within(&r, &limits, &[&path]), &[&path])
    });
}

#[test]
fn fuzz_idx_within_small_limits() {
    let dir = scratch("idx_limits");
    let (images, labels) = (dir.path().join("images.idx"), dir.path().join("labels.idx"));
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_idx_within_small_limits.txt");
    run("idx_within_small_limits", persist, (idx_case(), small_limits()), |(case, limits), stats| {
        let (img, lab) = case.files();
        write_file(&images, &img);
        write_file(&labels, &lab);
        let spec = TargetSpec { targets: None, classes: case.classes };
        let budget = limits.memory as usize + BUFFERS;
        // Streams: no file size to check a header against first, so the memory limit is what stops a claim.
        let r = guarded_within("IDX streams", budget, || {
            let images = Input::from_reader(&images, std::io::Cursor::new(img))?;
            let labels = Input::from_reader(&labels, std::io::Cursor::new(lab))?;
            Source::Idx { images, labels }.load(&request(spec, &limits))
        })?;
        stats.outcome(&r);
        with_files(within(&r, &limits, &[&images, &labels]), &[&images, &labels])
    });
}

#[test]
fn fuzz_checkpoint_within_small_limits() {
    let dir = scratch("checkpoint_limits");
    let path = dir.path().join("input.safetensors");
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_checkpoint_within_small_limits.txt");
    let limits = (64u64..1 << 20).prop_map(Limits::with_memory);
    run("checkpoint_within_small_limits", persist, (ck_case(), limits), |(case, limits), stats| {
        let (bytes, _) = case.bytes();
        write_file(&path, &bytes);
        let budget = limits.memory as usize + BUFFERS;
        let r = guarded_within("checkpoint::load_with", budget, || checkpoint::load_with(&path, &limits))?;
        stats.outcome(&r);
        let checked = match r {
            Ok(_) => {
                let kept = 2 * bytes.len() as u64;
                prop_assert!(
                    kept <= limits.memory,
                    "a {}-byte checkpoint loaded within {}",
                    bytes.len(),
                    limits.memory
                );
                Ok(())
            }
            Err(e) => names_path(&e, &[&path]),
        };
        with_files(checked, &[&path])
    });
}
