//! Data sets: the bundled digits, the CSV and IDX readers with every error they report, sources of every kind
//! (pipes, standard input, FIFOs, devices), the limits on what reading may take, synthetic sets,
//! normalisation and splits. One binary; a module per topic.

use std::io::Write;
use std::path::{Path, PathBuf};

use backprop::data::{self, Dataset, TargetSpec, Task};
use streams_common::{Endless, Trickle};

#[path = "../common/cli.rs"]
mod cli;
mod csv;
mod idx;
mod limits;
mod sets;
mod streams;
#[path = "../common/streams.rs"]
mod streams_common;

/// Writes `contents` to `name` inside `dir` and returns the path.
fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The error message of loading `contents` as a CSV file called `name`; checks that it names the file.
fn csv_error(contents: &str, name: &str, spec: TargetSpec) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, contents);
    let err = data::load_csv(&path, spec).expect_err("the file should be rejected").to_string();
    assert!(err.contains(name), "{err:?} does not name the file {name}");
    err
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not contain {p:?}");
    }
}

fn classes(ds: &Dataset) -> usize {
    match ds.task {
        Task::Classification { classes } => classes,
        Task::Regression { .. } => panic!("expected classification"),
    }
}

/// The fields of two data sets are equal (name included).
fn assert_same(got: &Dataset, want: &Dataset, what: &str) {
    assert_eq!(got.name, want.name, "{what}: name");
    assert_eq!(got.x, want.x, "{what}: x");
    assert_eq!(got.y, want.y, "{what}: y");
    assert_eq!(got.labels, want.labels, "{what}: labels");
    assert_eq!(got.task, want.task, "{what}: task");
}

/// Loads a stream as `data::Source` would read it under `request`.
fn load_stream(
    name: &str,
    reader: impl std::io::Read + Send + 'static,
    request: &data::Request,
) -> backprop::Result<Dataset> {
    data::Source::Csv(data::Input::from_reader(name, reader)?).load(request)
}
