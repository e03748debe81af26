//! CSV data sets, read as a stream with the `csv` crate: never the whole file in memory as text, and the
//! values kept within the memory limit as they arrive.
//!
//! The format: comma-separated numbers, quoted or not; an optional header (the first line is one if any of its
//! cells is not a number); line ends LF, CR LF or CR; a byte-order mark skipped; blank lines allowed at the
//! end only. The last column is the class label, or the last K columns are regression targets. Every problem
//! is an error naming the file and the 1-based line (and column).

use std::path::Path;

use ndarray::Array2;

use crate::data::dataset::{Dataset, MAX_CLASSES, TargetSpec, check_classes, check_one_hot_size};
use crate::data::input::{Input, read_error};
use crate::data::limits::{Limits, reserve};
use crate::data::text::{LineEnds, TooLong};
use crate::error::{Error, Result};

/// A CSV file: comma-separated numbers; an optional header line (the first line is a header if any of its cells is
/// not a number); blank lines at the end ignored; LF, CR LF and CR line ends. The last column is the class label, or
/// the last `spec.targets` columns are regression targets; the columns before are the features. name = the path.
pub fn load_csv(path: &Path, spec: TargetSpec) -> Result<Dataset> {
    let limits = Limits::detect();
    read(Input::open(path, &limits)?, Columns::Targets { spec, input_width: None }, &limits)
}

/// A CSV file of features only (for `predict`): if it has exactly `width` columns they are all features; if
/// it has more, the extra last columns (labels or targets) are read and ignored. name = the path.
pub fn load_csv_features(path: &Path, width: usize) -> Result<Dataset> {
    let limits = Limits::detect();
    read(Input::open(path, &limits)?, Columns::Features { width }, &limits)
}

/// Which columns a CSV input must have, and what they mean.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Columns {
    /// Features, then a class label or `spec.targets` target columns. `input_width`: a model's, when one is
    /// evaluated; an input of exactly that many columns has no labels, and is refused as such.
    Targets { spec: TargetSpec, input_width: Option<usize> },
    /// `width` features; any columns after them are read (they must be numbers) and dropped.
    Features { width: usize },
}

/// What the columns after the features are.
#[derive(Clone, Copy, Debug)]
enum Tail {
    Label(Option<usize>),
    Targets(usize),
    Dropped,
}

/// The rows read so far, row-major.
struct Table {
    ncols: usize,
    nfeat: usize,
    tail: Tail,
    rows: usize,
    /// Rows that fit without allocating.
    capacity: usize,
    x: Vec<f32>,
    targets: Vec<f32>,
    labels: Vec<usize>,
}

/// Reads a CSV input to the end; see the module documentation.
pub(crate) fn read(mut input: Input, columns: Columns, limits: &Limits) -> Result<Dataset> {
    let path = input.name().to_path_buf();
    let path = path.as_path();
    if let Columns::Targets { spec, .. } = columns {
        if spec.targets == Some(0) {
            return Err(Error::Invalid(format!(
                "{}: the number of target columns must be at least 1, got 0",
                path.display()
            )));
        }
        check_classes(spec.classes, path)?;
    }
    let gzip = input.is_gzip();
    let reader = input.reader();
    // The input's first bytes are buffered already (it was sniffed), so a byte-order mark is all in view.
    if reader.fill_buf().map_err(|e| read_error(path, gzip, e))?.starts_with(b"\xef\xbb\xbf") {
        reader.consume(3);
    }
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(64 << 10)
        .from_reader(LineEnds::new(reader, limits));
    let mut record = ::csv::ByteRecord::new();
    let mut next_line = 1; // where the next record can start
    let mut blank: Option<u64> = None; // the first blank line since the last row
    let mut first: Option<u64> = None; // the first non-blank line, and a header if `table` stays None
    let mut table: Option<Table> = None;
    while reader.read_byte_record(&mut record).map_err(|e| csv_error(path, gzip, e))? {
        // Every record ends in a line feed (LineEnds adds a last one), so it starts this many lines up.
        let end = reader.position().line();
        let line = end - 1 - record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
        if line > next_line {
            blank.get_or_insert(next_line); // lines the csv crate skipped as empty
        }
        next_line = end;
        let cells = decode(&record, path, line)?;
        if cells.len() == 1 && cells[0].is_empty() {
            blank.get_or_insert(line);
            continue;
        }
        if let Some(b) = blank {
            return Err(Error::data(path, format!("line {b} is blank (blank lines are allowed only at the end)")));
        }
        let first_line = *first.get_or_insert(line);
        if line == first_line && cells.iter().any(|c| c.parse::<f32>().is_err()) {
            continue; // a header
        }
        let t = match &mut table {
            Some(t) => t,
            None => table.insert(Table::new(&cells, columns, path, first_line)?),
        };
        if cells.len() != t.ncols {
            return Err(Error::data(
                path,
                format!("line {line}: expected {} columns (as on line {first_line}), found {}", t.ncols, cells.len()),
            ));
        }
        t.push(&cells, line, path, limits)?;
    }
    match (table, first) {
        (Some(t), _) => t.finish(path, limits),
        (None, Some(line)) => Err(Error::data(path, format!("line {line} is a header but there are no data rows"))),
        (None, None) => Err(Error::data(path, "the file is empty (it has no non-blank lines)")),
    }
}

/// The cells of a record as trimmed text.
fn decode<'r>(record: &'r ::csv::ByteRecord, path: &Path, line: u64) -> Result<Vec<&'r str>> {
    (1usize..)
        .zip(record.iter())
        .map(|(col, cell)| match std::str::from_utf8(cell) {
            Ok(text) => Ok(text.trim()),
            Err(e) => Err(Error::data(
                path,
                format!(
                    "line {line}, column {col}: not UTF-8 text (invalid byte at offset {} of the cell)",
                    e.valid_up_to()
                ),
            )),
        })
        .collect()
}

fn csv_error(path: &Path, gzip: bool, e: ::csv::Error) -> Error {
    match e.into_kind() {
        ::csv::ErrorKind::Io(io) => match io.get_ref().and_then(|inner| inner.downcast_ref::<TooLong>()) {
            Some(too_long) => Error::data(path, too_long.to_string()),
            None => read_error(path, gzip, io),
        },
        other => Error::data(path, format!("{other:?}")), // ByteRecords of a flexible reader have no others
    }
}

/// A cell for an error message: quoted, and shortened if long.
fn quote(cell: &str) -> String {
    if cell.chars().count() > 40 {
        format!("{:?}...", cell.chars().take(40).collect::<String>())
    } else {
        format!("{cell:?}")
    }
}

impl Table {
    /// The layout from the first data row (`ncols` cells; the first non-blank line is `first_line`).
    fn new(cells: &[&str], columns: Columns, path: &Path, first_line: u64) -> Result<Table> {
        let ncols = cells.len();
        let (nfeat, tail) = match columns {
            Columns::Features { width } if ncols < width => {
                return Err(Error::data(path, format!("has {ncols} columns but the network's input width is {width}")));
            }
            Columns::Features { width } => (width, Tail::Dropped),
            Columns::Targets { spec, input_width } => {
                let ntargets = spec.targets.unwrap_or(1);
                let what = match spec.targets {
                    Some(k) => format!("{k} target columns"),
                    None => "a class label column".into(),
                };
                if ncols < ntargets.saturating_add(1) {
                    return Err(Error::data(
                        path,
                        format!(
                            "line {first_line}: found {ncols} columns, but need at least {} (one or more features plus {what})",
                            ntargets.saturating_add(1)
                        ),
                    ));
                }
                if input_width == Some(ncols) {
                    return Err(Error::data(
                        path,
                        format!(
                            "has {ncols} columns, as many as the model's inputs, so no labels: eval needs labels ({what} after the {ncols} features)"
                        ),
                    ));
                }
                let tail = match spec.targets {
                    Some(k) => Tail::Targets(k),
                    None => Tail::Label(spec.classes),
                };
                (ncols - ntargets, tail)
            }
        };
        Ok(Table { ncols, nfeat, tail, rows: 0, capacity: 0, x: Vec::new(), targets: Vec::new(), labels: Vec::new() })
    }

    /// The bytes one row takes.
    fn row_bytes(&self) -> u64 {
        let targets = match self.tail {
            Tail::Targets(k) => 4 * k,
            Tail::Label(_) => size_of::<usize>(),
            Tail::Dropped => 0,
        };
        (4 * self.nfeat + targets) as u64
    }

    /// Room for one more row: the capacity doubles while the memory limit allows it, then grows by a row.
    fn grow(&mut self, path: &Path, line: u64, limits: &Limits) -> Result<()> {
        if self.rows < self.capacity {
            return Ok(());
        }
        let row = self.row_bytes().max(1);
        let doubled = (self.rows * 2).max(64);
        let rows = if (doubled as u64).saturating_mul(row) <= limits.memory { doubled } else { self.rows + 1 };
        let what = format!("the {} rows read up to line {line}", self.rows + 1);
        limits.check_memory(path, (rows as u64).saturating_mul(row), &what)?;
        let more = rows - self.rows;
        reserve(&mut self.x, more * self.nfeat, path)?;
        match self.tail {
            Tail::Targets(k) => reserve(&mut self.targets, more * k, path)?,
            Tail::Label(_) => reserve(&mut self.labels, more, path)?,
            Tail::Dropped => {}
        }
        self.capacity = rows;
        Ok(())
    }

    /// Checks and appends one data row (its cells trimmed) found on `line`.
    fn push(&mut self, cells: &[&str], line: u64, path: &Path, limits: &Limits) -> Result<()> {
        self.grow(path, line, limits)?;
        for (col, &cell) in (1usize..).zip(cells) {
            let at = |msg: String| Error::data(path, format!("line {line}, column {col}: {msg}"));
            let v: f32 = cell.parse().map_err(|_| match cell {
                "" => at("empty cell".into()),
                _ => at(format!("{} is not a number", quote(cell))),
            })?;
            if !v.is_finite() {
                return Err(at(format!("{} is not finite (NaN and infinities are not allowed)", quote(cell))));
            }
            match self.tail {
                _ if col <= self.nfeat => self.x.push(v),
                Tail::Label(classes) => self.labels.push(parse_label(v, cell, classes).map_err(at)?),
                Tail::Targets(_) => self.targets.push(v),
                Tail::Dropped => {}
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The data set, with one-hot targets for a class label.
    fn finish(mut self, path: &Path, limits: &Limits) -> Result<Dataset> {
        let name = path.display().to_string();
        self.x.shrink_to_fit();
        let x =
            Array2::from_shape_vec((self.rows, self.nfeat), self.x).map_err(|e| Error::data(path, e.to_string()))?;
        match self.tail {
            Tail::Label(fixed) => {
                let classes = fixed.unwrap_or_else(|| self.labels.iter().copied().fold(0, usize::max) + 1);
                check_one_hot_size(path, self.rows, classes)?;
                let bytes = (x.len() * 4 + self.labels.len() * size_of::<usize>() + self.rows * classes * 4) as u64;
                limits.check_memory(path, bytes, &format!("{} rows with {classes} one-hot classes", self.rows))?;
                Dataset::classification(name, x, self.labels, classes, path)
            }
            Tail::Targets(k) => {
                let y = Array2::from_shape_vec((self.rows, k), self.targets)
                    .map_err(|e| Error::data(path, e.to_string()))?;
                Ok(Dataset::regression(&name, x, y))
            }
            Tail::Dropped => Ok(Dataset::regression(&name, x, Array2::zeros((self.rows, 0)))),
        }
    }
}

/// Checks one class label cell; the error is the problem without its position.
fn parse_label(v: f32, cell: &str, classes: Option<usize>) -> std::result::Result<usize, String> {
    // Judged on the text's exact value: as an f32, 0.99999999 would round to the class 1.
    let exact: f64 = cell.parse().map_err(|_| format!("class label {} is not a number", quote(cell)))?;
    if v < 0.0 || exact.fract() != 0.0 {
        return Err(format!("class label {} is not a non-negative integer", quote(cell)));
    }
    let limit = classes.unwrap_or(MAX_CLASSES);
    if v >= limit as f32 {
        return Err(match classes {
            Some(c) => {
                format!("class label {} is out of range for {c} classes (labels must be 0..={})", quote(cell), c - 1)
            }
            None => format!("class label {} is too large (at most {MAX_CLASSES} classes are supported)", quote(cell)),
        });
    }
    Ok(v as usize)
}
