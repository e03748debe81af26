//! Which data set a command names: a bundled or synthetic set, a CSV file, or a pair of MNIST IDX files.

use std::path::Path;

use backprop::data::{self, Dataset, TargetSpec};
use backprop::{Error, Result};

use super::args::DataArgs;

/// Loads the data set a command names. `classes` fixes the class count (evaluating a trained model).
pub fn load_data(args: &DataArgs, classes: Option<usize>, seed: u64) -> Result<Dataset> {
    if args.data.trim().is_empty() {
        return Err(Error::Invalid("--data is empty (give digits, xor, spirals, sine or a file)".into()));
    }
    let bundled = ["digits", "xor", "spirals", "sine"].contains(&args.data.as_str());
    if bundled && args.labels.is_some() {
        return Err(Error::Invalid(format!(
            "--labels goes with an IDX images file as --data, not with the bundled '{}'",
            args.data
        )));
    }
    let path = Path::new(&args.data);
    if let Some(labels) = &args.labels {
        if args.targets.is_some() {
            return Err(Error::Invalid("--targets applies to CSV files, not to IDX files with --labels".into()));
        }
        return data::load_idx(path, labels, classes);
    }
    let builtin = match args.data.as_str() {
        "digits" => Some(data::digits()?),
        "xor" => Some(data::xor()),
        "spirals" => Some(data::spirals(400, seed)?),
        "sine" => Some(data::sine(256, seed)?),
        _ => None,
    };
    if let Some(ds) = builtin {
        if args.targets.is_some() {
            return Err(Error::Invalid(format!("--targets applies to CSV files, not to the bundled '{}'", args.data)));
        }
        return Ok(ds);
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file (and not one of digits, xor, spirals, sine)",
            ),
        ));
    }
    match idx_kind(path) {
        Some("images") => {
            return Err(Error::Invalid(format!(
                "{} looks like an IDX images file: give its labels file with --labels",
                path.display()
            )));
        }
        Some(_) => {
            return Err(Error::Invalid(format!(
                "{} looks like an IDX labels file: pass it as --labels, with the matching images as --data",
                path.display()
            )));
        }
        None => {}
    }
    data::load_csv(path, TargetSpec { targets: args.targets, classes })
}

/// IDX files start with two zero bytes (or are gzip-compressed IDX, named *.gz without ".csv").
/// The kind of IDX file at `path` from its magic number (0x0000_08_03 images, 0x0000_08_01 labels), if it is one.
fn idx_kind(path: &Path) -> Option<&'static str> {
    let name = path.to_string_lossy().to_lowercase();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        return None;
    }
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    match head {
        [0, 0, 8, 3] => Some("images"),
        [0, 0, 8, 1] => Some("labels"),
        _ => None,
    }
}

pub fn is_idx(path: &Path) -> bool {
    idx_kind(path).is_some()
}
