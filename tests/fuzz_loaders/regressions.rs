//! Inputs kept in tests/regressions/, replayed through the fuzzers' checks.

use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use backprop::data::{self, TargetSpec};
use backprop::model::Output;
use backprop::{Activation, Loss, MlpSpec};

use crate::checkpoint::check_checkpoint_file;
use crate::csv::check_csv_file;
use crate::idx::check_idx_files;
use crate::{Stats, guarded, panic_message, write_file};

// ---------------------------------------------------------------------------------------------------------
// Regressions: inputs kept in tests/regressions/
// ---------------------------------------------------------------------------------------------------------

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// Every input kept in tests/regressions/ goes through the fuzzers' checks: `*.csv` (with the default
/// `TargetSpec` and input width 1), `*-images.idx` with the `*-labels.idx` beside it (classes inferred), and
/// `*.safetensors` (with `load_init` for the spec 5-7-3). Known failures are listed after all files ran.
#[test]
fn regression_files_pass_the_loader_checks() {
    let stats = Stats::default();
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let spec = MlpSpec::with_output(vec![5, 7, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let r = if name.ends_with(".csv") {
            check_csv_file(f, TargetSpec::default(), 1, &stats)
        } else if let Some(stem) = name.strip_suffix("-images.idx") {
            check_idx_files(f, &f.with_file_name(format!("{stem}-labels.idx")), None, &stats)
        } else if name.ends_with(".safetensors") {
            check_checkpoint_file(f, &spec, &stats)
        } else {
            continue;
        };
        if let Err(e) = r {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} regression input(s) fail:\n{}", failures.len(), failures.join("\n"));
}

/// An images header whose dimensions multiply to exactly 2^64 - 1 (3 x 1722007169 x 3570783445): `read_idx`
/// accepts the product, then computes `payload_len as u64 + 1` and `header_len + payload_len`, which overflow
/// (a panic with overflow checks, as in a debug build; a wrapped "expected 15 bytes" in the message otherwise).
#[test]
fn regression_idx_dims_whose_product_is_u64_max() {
    let dir = regressions_dir();
    let images = dir.join("idx-dims-product-u64-max-images.idx");
    let labels = dir.join("idx-dims-product-u64-max-labels.idx");
    let r = catch_unwind(|| data::load_idx(&images, &labels, None));
    let msg = match r {
        Err(p) => panic!("load_idx panicked: {}", panic_message(&*p)),
        Ok(Ok(_)) => panic!("load_idx accepted a 16-byte image file with 2^64 - 1 pixels"),
        Ok(Err(e)) => e.to_string(),
    };
    assert!(msg.contains(&images.display().to_string()), "{msg}");
    let expected: Option<u128> =
        msg.split("expected ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok());
    if let Some(bytes) = expected {
        assert!(bytes >= 16, "the message claims a size smaller than the 16-byte header it read: {msg}");
    }
}

/// A 32 KiB CSV file of 8,192 rows whose last label is 65535: `load_csv` infers 65,536 classes and allocates
/// a one-hot y of 8192 x 65536 f32 = 2 GiB in one piece. MAX_CLASSES bounds the width of a row, not the
/// matrix: a 512 KiB file of this kind (131,072 rows) makes `backprop train --data FILE` abort with "memory
/// allocation of 34359738368 bytes failed" (`Dataset::classification`, `Array2::zeros((labels.len(), classes))`).
#[test]
fn regression_csv_one_stray_label_allocates_a_huge_one_hot_matrix() {
    let path = regressions_dir().join("csv-stray-label-one-hot-blowup.csv");
    // Refusing the file (an error that names it) and loading it within the budget are both fixes.
    match guarded("load_csv", || data::load_csv(&path, TargetSpec::default()).map(|ds| ds.y.dim())) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        Err(e) => panic!("{e}"),
    }
}

/// A class label written as a non-integer that rounds to an integer in f32 ("0.99999999", "1.00000001") is
/// taken as that integer instead of being refused as "not a non-negative integer".
#[test]
fn regression_csv_non_integer_label_that_rounds_to_an_integer() {
    let dir = tempfile::tempdir().unwrap();
    for label in ["0.99999999", "1.00000001", "2.0000000001"] {
        let path = dir.path().join("labels.csv");
        write_file(&path, format!("1,0\n2,{label}\n3,1\n").as_bytes());
        match data::load_csv(&path, TargetSpec::default()) {
            Ok(ds) => panic!("label {label:?} was accepted as class {:?}", ds.labels.unwrap()[1]),
            Err(e) => assert!(e.to_string().contains("line 2, column 2"), "{e}"),
        }
    }
}

/// A gzipped images file whose header claims 18 images of 8x9568261 pixels (5.5 GB as f32) and whose data turns
/// corrupt after 720 bytes, with 18 labels: the claim is within a large machine's memory limit, and `load_idx`
/// reserved all 5.5 GB before reading. It must allocate for what the stream holds, and say the gzip is corrupt.
#[test]
fn regression_idx_gzip_that_claims_far_more_than_it_holds() {
    let dir = regressions_dir();
    let images = dir.join("idx-gzip-claims-more-than-it-holds-images.idx");
    let labels = dir.join("idx-gzip-claims-more-than-it-holds-labels.idx");
    match guarded("load_idx", || data::load_idx(&images, &labels, None)) {
        Ok(Ok(_)) => panic!("load_idx accepted a corrupt gzip file"),
        Ok(Err(e)) => assert!(e.to_string().contains("corrupt gzip data"), "{e}"),
        Err(e) => panic!("{e}"),
    }
}
