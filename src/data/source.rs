//! Where a data set comes from, as the command line names it (`--data`, `--labels`): a bundled set's name, a
//! CSV file, or an IDX images file with its labels file; `-` is standard input. Each file is opened and its
//! first bytes looked at once, here, and the same stream is then read to the end: a pipe can be read only once.

use std::path::Path;

use crate::data::bundled::Bundled;
use crate::data::csv::{self, Columns};
use crate::data::dataset::{Dataset, TargetSpec};
use crate::data::idx;
use crate::data::input::{Input, Kind, STDIN};
use crate::data::limits::Limits;
use crate::error::{Error, Result};

/// What the data set is for, which decides what a CSV file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Features and targets (a class label, or `--targets K` target columns).
    Train,
    /// As `Train`, for a model with `input_width` inputs: a CSV file with exactly that many columns has no
    /// labels, and is refused saying that eval needs them.
    Eval { input_width: usize },
    /// Features only: a CSV file's first `input_width` columns; any after them (labels, targets) are read
    /// and dropped, and `targets` is not used. Bundled and IDX sets load as for `Train`.
    Predict { input_width: usize },
}

/// How to read a data source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Some(K): a CSV file's last K columns are regression targets (`--targets`).
    pub targets: Option<usize>,
    /// Some(C): the class count is fixed (a trained model's); a label >= C is an error.
    pub classes: Option<usize>,
    /// The seed of the synthetic sets.
    pub seed: u64,
    pub purpose: Purpose,
    pub limits: Limits,
}

impl Request {
    /// Training data with inferred classes, this machine's limits, and `seed` for the synthetic sets.
    pub fn new(seed: u64) -> Request {
        Request { targets: None, classes: None, seed, purpose: Purpose::Train, limits: Limits::detect() }
    }
}

/// A data source, resolved and opened (files are open and sniffed, not read yet).
#[derive(Debug)]
pub enum Source {
    Bundled(Bundled),
    Csv(Input),
    Idx { images: Input, labels: Input },
}

/// The data set that `data` (and `labels`) name: [`Source::open`], then [`Source::load`].
pub fn load(data: &str, labels: Option<&Path>, request: &Request) -> Result<Dataset> {
    Source::open(data, labels, request)?.load(request)
}

impl Source {
    /// Resolves `--data` and `--labels`: a bundled set's name, else a file (`-`: standard input), opened and
    /// sniffed. An IDX file needs its partner (images with `--labels`); `--targets` goes with CSV only. Every
    /// combination is checked before a file is opened.
    pub fn open(data: &str, labels: Option<&Path>, request: &Request) -> Result<Source> {
        if data.trim().is_empty() {
            return Err(Error::Invalid("--data is empty (give digits, xor, spirals, sine or a file)".into()));
        }
        let bundled = Bundled::from_name(data);
        if let (Some(b), Some(_)) = (bundled, labels) {
            return Err(Error::Invalid(format!(
                "--labels goes with an IDX images file as --data, not with the bundled '{}'",
                b.name()
            )));
        }
        if labels.is_some() && request.targets.is_some() {
            return Err(Error::Invalid("--targets applies to CSV files, not to IDX files with --labels".into()));
        }
        if let Some(b) = bundled {
            check_targets(&Source::Bundled(b), request)?;
            return Ok(Source::Bundled(b));
        }
        let path = Path::new(data);
        if let Some(labels) = labels
            && same_stream(path, labels)
        {
            return Err(Error::Invalid(format!(
                "--data {data} and --labels {} are the same stream; at most one of them can be read from it",
                labels.display()
            )));
        }
        let input = Input::open(path, &request.limits).map_err(|e| match e {
            Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => Error::io(
                path,
                std::io::Error::new(source.kind(), "no such file (and not one of digits, xor, spirals, sine)"),
            ),
            other => other,
        })?;
        if let Some(labels) = labels {
            return Ok(Source::Idx { images: input, labels: Input::open(labels, &request.limits)? });
        }
        match input.kind() {
            Kind::Csv => Ok(Source::Csv(input)),
            Kind::IdxImages => Err(Error::Invalid(format!(
                "{} looks like an IDX images file: give its labels file with --labels",
                input.name().display()
            ))),
            Kind::IdxLabels => Err(Error::Invalid(format!(
                "{} looks like an IDX labels file: pass it as --labels, with the matching images as --data",
                input.name().display()
            ))),
        }
    }

    /// Reads the data set to the end, as `request` says.
    pub fn load(self, request: &Request) -> Result<Dataset> {
        check_targets(&self, request)?;
        let spec = TargetSpec { targets: request.targets, classes: request.classes };
        match self {
            Source::Bundled(b) => b.load(request.seed),
            Source::Idx { images, labels } => idx::read(images, labels, request.classes, &request.limits),
            Source::Csv(input) => {
                let columns = match request.purpose {
                    Purpose::Train => Columns::Targets { spec, input_width: None },
                    Purpose::Eval { input_width } => Columns::Targets { spec, input_width: Some(input_width) },
                    Purpose::Predict { input_width } => Columns::Features { width: input_width },
                };
                csv::read(input, columns, &request.limits)
            }
        }
    }
}

/// `--targets` is for CSV files.
fn check_targets(source: &Source, request: &Request) -> Result<()> {
    match (source, request.targets) {
        (Source::Bundled(b), Some(_)) => {
            Err(Error::Invalid(format!("--targets applies to CSV files, not to the bundled '{}'", b.name())))
        }
        (Source::Idx { .. }, Some(_)) => {
            Err(Error::Invalid("--targets applies to CSV files, not to IDX files with --labels".into()))
        }
        _ => Ok(()),
    }
}

/// Whether two paths name one stream that is not a regular file (a pipe can feed only one of them), or are
/// both standard input.
fn same_stream(a: &Path, b: &Path) -> bool {
    if a == Path::new(STDIN) && b == Path::new(STDIN) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| {
            let p = if p == Path::new(STDIN) { Path::new("/dev/stdin") } else { p };
            // A path that cannot be read is not a stream here; opening it says why.
            std::fs::metadata(p).ok().filter(|m| !m.is_file()).map(|m| (m.dev(), m.ino()))
        };
        matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
    }
    #[cfg(not(unix))]
    {
        false // only standard input is known to be one stream here
    }
}
