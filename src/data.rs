//! Data sets: the bundled digits, CSV files, MNIST IDX files and synthetic sets; normalisation; splits.
//!
//! Every loader checks its input completely and reports problems as [`Error`] values that name the file and,
//! for CSV, the 1-based line and column: no file content can make this module panic.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use ndarray::{Array2, Axis, s};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// The largest number of classes a file may imply (a guard against a stray huge label allocating a huge one-hot matrix).
pub const MAX_CLASSES: usize = 1 << 16;

/// What the targets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `y` holds one-hot rows of width `classes`.
    Classification { classes: usize },
    /// `y` holds `targets` real-valued targets per row.
    Regression { targets: usize },
}

/// Features and targets, one example per row.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where the data came from: "digits", "xor", ..., or the file path.
    pub name: String,
    /// Features, (N, F).
    pub x: Array2<f32>,
    /// Targets, (N, T): one-hot rows for classification (T = classes), raw targets for regression.
    pub y: Array2<f32>,
    /// The class of each row, for classification.
    pub labels: Option<Vec<usize>>,
    /// What `y` means.
    pub task: Task,
}

impl Dataset {
    /// A classification set from features (N, F) and one label per row (each < `classes`).
    fn classification(name: String, x: Array2<f32>, labels: Vec<usize>, classes: usize) -> Dataset {
        let mut y = Array2::zeros((labels.len(), classes)); // (N, C) one-hot
        for (mut row, &label) in y.axis_iter_mut(Axis(0)).zip(&labels) {
            if let Some(v) = row.get_mut(label) {
                *v = 1.0;
            }
        }
        Dataset { name, x, y, labels: Some(labels), task: Task::Classification { classes } }
    }

    /// A regression set from features (N, F) and targets (N, T).
    fn regression(name: &str, x: Array2<f32>, y: Array2<f32>) -> Dataset {
        let task = Task::Regression { targets: y.ncols() };
        Dataset { name: name.into(), x, y, labels: None, task }
    }

    /// The number of examples N.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of features F per example.
    pub fn features(&self) -> usize {
        self.x.ncols()
    }

    /// The width T of a target row (the number of classes, or of regression targets).
    pub fn target_width(&self) -> usize {
        self.y.ncols()
    }

    /// The rows `idx` (in that order) as a new Dataset (same name/task). Used for splits and batches.
    ///
    /// The indices come from code, not from files; an index `>= len()` is a programming error and panics.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            x: self.x.select(Axis(0), idx),
            y: self.y.select(Axis(0), idx),
            labels: self.labels.as_ref().map(|l| idx.iter().filter_map(|&i| l.get(i).copied()).collect()),
            task: self.task,
        }
    }
}

/// Options for reading class labels / targets from files.
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetSpec {
    /// Some(K): the last K columns are regression targets. None: the last column is an integer class label.
    pub targets: Option<usize>,
    /// Some(C): the number of classes is fixed (a label >= C is an error, e.g. when evaluating a trained model).
    /// None: classes = max label + 1.
    pub classes: Option<usize>,
}

/// The most one-hot target values a data set may need (2^28 f32, 1 GiB): a single stray label such as 65535
/// must not make a small file allocate gigabytes.
pub const MAX_TARGET_VALUES: usize = 1 << 28;

fn check_one_hot_size(path: &Path, rows: usize, classes: usize) -> Result<()> {
    match rows.checked_mul(classes) {
        Some(n) if n <= MAX_TARGET_VALUES => Ok(()),
        _ => Err(Error::data(
            path,
            format!(
                "{rows} rows with {classes} classes (the largest label is {}) need more than {MAX_TARGET_VALUES} one-hot values; is a label wrong?",
                classes.saturating_sub(1)
            ),
        )),
    }
}

/// Checks a fixed class count given as an option.
fn check_classes(classes: Option<usize>, path: &Path) -> Result<()> {
    match classes {
        Some(0) => Err(Error::Invalid(format!("{}: the number of classes must be at least 1, got 0", path.display()))),
        Some(c) if c > MAX_CLASSES => Err(Error::Invalid(format!(
            "{}: the number of classes must be at most {MAX_CLASSES}, got {c}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The bundled digits set (1,797 8x8 images, pixels 0..16, 10 classes), embedded in the binary. name "digits".
pub fn digits() -> Result<Dataset> {
    const GZ: &[u8] = include_bytes!("../data/digits.csv.gz");
    let path = Path::new("<bundled data/digits.csv.gz>");
    let mut text = String::new();
    flate2::read::GzDecoder::new(GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::data(path, format!("cannot decompress: {e}")))?;
    let spec = TargetSpec { targets: None, classes: Some(10) };
    let mut ds = parse_csv(&text, path, spec)?;
    ds.name = "digits".into();
    Ok(ds)
}

/// A CSV file: comma-separated numbers; an optional header line (the first line is a header if any of its cells is
/// not a number); blank lines at the end ignored; '\r\n' accepted. The last column is the class label, or the last
/// `spec.targets` columns are regression targets; the columns before are the features. name = the path.
pub fn load_csv(path: &Path, spec: TargetSpec) -> Result<Dataset> {
    let text = read_text(path)?;
    parse_csv(&text, path, spec)
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let ok = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes().iter().take(ok).filter(|&&b| b == b'\n').count();
        Error::data(path, format!("line {line}: not UTF-8 text (invalid byte at offset {ok})"))
    })?;
    Ok(text)
}

/// A cell for an error message: quoted, and shortened if long.
fn quote(cell: &str) -> String {
    if cell.chars().count() > 40 {
        format!("{:?}...", cell.chars().take(40).collect::<String>())
    } else {
        format!("{cell:?}")
    }
}

/// A CSV file of features only (for `predict`): if it has exactly `width` columns they are all features; if
/// it has more, the extra last columns (labels or targets) are read and ignored. name = the path.
pub fn load_csv_features(path: &Path, width: usize) -> Result<Dataset> {
    let text = read_text(path)?;
    let ds = parse_csv_inner(&text, path, TargetSpec { targets: Some(0), classes: None }, true);
    match ds {
        Ok(ds) if ds.features() == width => Ok(ds),
        Ok(ds) if ds.features() > width => {
            let spec = TargetSpec { targets: Some(ds.features() - width), classes: None };
            let d = parse_csv(&text, path, spec)?;
            let rows = d.len();
            Ok(Dataset::regression(&d.name, d.x, Array2::zeros((rows, 0))))
        }
        Ok(ds) => {
            Err(Error::data(path, format!("has {} columns but the network's input width is {width}", ds.features())))
        }
        Err(e) => Err(e),
    }
}

/// Parses CSV text; `path` names it in errors. `targets: Some(0)` from the command line is an error; internally
/// (from `load_csv_features`) it means "every column is a feature".
fn parse_csv(text: &str, path: &Path, spec: TargetSpec) -> Result<Dataset> {
    parse_csv_inner(text, path, spec, false)
}

fn parse_csv_inner(text: &str, path: &Path, spec: TargetSpec, features_only: bool) -> Result<Dataset> {
    if spec.targets == Some(0) && !features_only {
        return Err(Error::Invalid(format!(
            "{}: the number of target columns must be at least 1, got 0",
            path.display()
        )));
    }
    check_classes(spec.classes, path)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // a UTF-8 byte-order mark
    // (1-based line number, line) for every line up to the last non-blank one.
    let mut lines: Vec<(usize, &str)> =
        text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).zip(1..).map(|(l, n)| (n, l)).collect();
    while lines.last().is_some_and(|(_, l)| l.trim().is_empty()) {
        lines.pop();
    }
    let Some(&(first_no, first)) = lines.first() else {
        return Err(Error::data(path, "the file is empty (it has no non-blank lines)"));
    };
    let ncols = first.split(',').count();
    let header = first.split(',').any(|c| c.trim().parse::<f32>().is_err());
    let data = if header { lines.get(1..).unwrap_or_default() } else { &lines[..] };
    if data.is_empty() {
        return Err(Error::data(path, format!("line {first_no} is a header but there are no data rows")));
    }
    let ntargets = spec.targets.unwrap_or(1);
    if ncols < ntargets.saturating_add(1) {
        let what = match spec.targets {
            Some(k) => format!("{k} target columns"),
            None => "a class label column".into(),
        };
        return Err(Error::data(
            path,
            format!(
                "line {first_no}: found {ncols} columns, but need at least {} (one or more features plus {what})",
                ntargets.saturating_add(1)
            ),
        ));
    }
    let nfeat = ncols - ntargets;

    // Row-major (N, ncols); every value takes at least one byte of text, which bounds the capacity.
    let mut values = Vec::with_capacity(data.len().saturating_mul(ncols).min(text.len()));
    let mut labels = Vec::new();
    for &(no, line) in data {
        if line.trim().is_empty() {
            return Err(Error::data(path, format!("line {no} is blank (blank lines are allowed only at the end)")));
        }
        let found = line.split(',').count();
        if found != ncols {
            return Err(Error::data(
                path,
                format!("line {no}: expected {ncols} columns (as on line {first_no}), found {found}"),
            ));
        }
        for (cell, col) in line.split(',').map(str::trim).zip(1usize..) {
            let at = |msg: String| Error::data(path, format!("line {no}, column {col}: {msg}"));
            let v: f32 = cell.parse().map_err(|_| match cell {
                "" => at("empty cell".into()),
                _ => at(format!("{} is not a number", quote(cell))),
            })?;
            if !v.is_finite() {
                return Err(at(format!("{} is not finite (NaN and infinities are not allowed)", quote(cell))));
            }
            if spec.targets.is_none() && col == ncols {
                labels.push(parse_label(v, cell, spec.classes).map_err(at)?);
            }
            values.push(v);
        }
    }
    let all = Array2::from_shape_vec((data.len(), ncols), values).map_err(|e| Error::data(path, e.to_string()))?;
    let x = all.slice(s![.., ..nfeat]).to_owned(); // (N, F)
    let name = path.display().to_string();
    match spec.targets {
        Some(_) => Ok(Dataset::regression(&name, x, all.slice(s![.., nfeat..]).to_owned())),
        None => {
            let classes = spec.classes.unwrap_or_else(|| labels.iter().max().map_or(1, |m| m + 1));
            check_one_hot_size(path, labels.len(), classes)?;
            Ok(Dataset::classification(name, x, labels, classes))
        }
    }
}

/// Checks one class label cell; the error is the problem without its position.
fn parse_label(v: f32, cell: &str, classes: Option<usize>) -> std::result::Result<usize, String> {
    // Judged on the text's exact value: as an f32, 0.99999999 would round to the class 1.
    let exact: f64 = cell.parse().unwrap_or(f64::NAN);
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

/// MNIST IDX files (images: magic 0x00000803, u32 big-endian count, rows, cols, then u8 pixels; labels: magic
/// 0x00000801, count, u8 labels), plain or gzip-compressed. Pixels become f32 0..255 (unnormalised), x is
/// (N, rows*cols). `classes`: None means max label + 1. name = the images path.
pub fn load_idx(images: &Path, labels: &Path, classes: Option<usize>) -> Result<Dataset> {
    check_classes(classes, labels)?;
    let (dims, pixels) = read_idx(images, 0x0000_0803, "image")?;
    let [n, rows, cols] = dims[..] else {
        return Err(Error::data(images, "expected 3 dimensions")); // unreachable: the magic fixes the count
    };
    if n == 0 {
        return Err(Error::data(images, "contains no images"));
    }
    let size = rows * cols; // cannot overflow: read_idx checked n * rows * cols
    if size == 0 {
        return Err(Error::data(images, format!("images are {rows}x{cols}, which has no pixels")));
    }
    let (ldims, raw_labels) = read_idx(labels, 0x0000_0801, "label")?;
    if ldims != [n] {
        return Err(Error::data(
            labels,
            format!("holds {} labels but {} holds {n} images", ldims.first().copied().unwrap_or(0), images.display()),
        ));
    }
    let labels_vec: Vec<usize> = raw_labels.iter().map(|&l| usize::from(l)).collect();
    let max = labels_vec.iter().copied().max().unwrap_or(0);
    if let Some(c) = classes
        && let Some((i, l)) = labels_vec.iter().enumerate().find(|&(_, &l)| l >= c)
    {
        return Err(Error::data(
            labels,
            format!("label {l} of item {} is out of range for {c} classes (labels must be 0..={})", i + 1, c - 1),
        ));
    }
    let x = Array2::from_shape_vec((n, size), pixels.into_iter().map(f32::from).collect())
        .map_err(|e| Error::data(images, e.to_string()))?; // (N, rows*cols)
    let classes = classes.unwrap_or(max + 1);
    check_one_hot_size(labels, labels_vec.len(), classes)?;
    Ok(Dataset::classification(images.display().to_string(), x, labels_vec, classes))
}

/// Reads `buf.len()` bytes unless the stream ends first; returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one IDX file of u8 values (gunzipping it if it starts with 1f 8b) and returns its dimensions and payload.
/// The magic's low byte is the number of dimensions.
fn read_idx(path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 2];
    let n = read_up_to(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
    let chained = std::io::Cursor::new(head[..n].to_vec()).chain(file);
    let gz = head == [0x1f, 0x8b];
    let mut r: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else {
        Box::new(std::io::BufReader::new(chained))
    };
    let read_err = |e: std::io::Error| {
        if gz { Error::data(path, format!("corrupt gzip data: {e}")) } else { Error::io(path, e) }
    };
    let after = if gz { " after decompression" } else { "" };

    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut header = vec![0u8; header_len];
    let got = read_up_to(&mut r, &mut header).map_err(read_err)?;
    if got == 0 {
        return Err(Error::data(path, format!("the file is empty{after}")));
    }
    let words: Vec<u32> = header.chunks_exact(4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]])).collect();
    let found_magic = words.first().copied().unwrap_or(0);
    if got >= 4 && found_magic != magic {
        return Err(Error::data(
            path,
            format!("not an IDX {what} file: magic number is 0x{found_magic:08x}, expected 0x{magic:08x}"),
        ));
    }
    if got < header_len {
        return Err(Error::data(
            path,
            format!("truncated: expected at least {header_len} bytes of header, found {got}{after}"),
        ));
    }
    let dims: Vec<usize> = words.iter().skip(1).map(|&d| d as usize).collect();
    // No buffer can hold more than isize::MAX bytes; that bound also keeps the sums below from overflowing.
    let payload_len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= isize::MAX as usize / 2);
    let Some(payload_len) = payload_len else {
        return Err(Error::data(path, format!("header dimensions {dims:?} are too large")));
    };
    let mut payload = Vec::new();
    r.take(payload_len as u64 + 1).read_to_end(&mut payload).map_err(read_err)?;
    let dims_text = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let expected = header_len as u64 + payload_len as u64;
    if payload.len() < payload_len {
        return Err(Error::data(
            path,
            format!(
                "truncated: expected {expected} bytes ({header_len}-byte header + {dims_text} values), found {}{after}",
                header_len + payload.len()
            ),
        ));
    }
    if payload.len() > payload_len {
        return Err(Error::data(
            path,
            format!("longer than the {expected} bytes its header describes ({dims_text} values){after}"),
        ));
    }
    Ok((dims, payload))
}

/// The 4 points of {0,1}^2 with the regression target x1 xor x2. name "xor".
pub fn xor() -> Dataset {
    let x = ndarray::array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]; // (4, 2)
    let y = ndarray::array![[0.0], [1.0], [1.0], [0.0]]; // (4, 1)
    Dataset::regression("xor", x, y)
}

/// `n` points (n >= 2) on 2 interleaved spirals (1.5 turns each, radius 0.1..1) with small seeded noise; rows
/// alternate between class 0 and class 1; features in roughly [-1, 1]. name "spirals".
pub fn spirals(n: usize, seed: u64) -> Result<Dataset> {
    if n < 2 {
        return Err(Error::Invalid(format!("spirals needs at least 2 points, got {n}")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 2)); // (N, 2)
    let mut labels = Vec::with_capacity(n);
    for (i, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        let class = i % 2;
        let per_class = (n + 1 - class) / 2; // rows of this class
        let t = ((i / 2) as f32 + 0.5) / per_class as f32; // in (0, 1)
        let r = 0.1 + 0.9 * t;
        let angle = 3.0 * std::f32::consts::PI * t + class as f32 * std::f32::consts::PI;
        row[0] = r * angle.cos() + rng.random_range(-0.03..0.03);
        row[1] = r * angle.sin() + rng.random_range(-0.03..0.03);
        labels.push(class);
    }
    Ok(Dataset::classification("spirals".into(), x, labels, 2))
}

/// `n` points (n >= 1) with x uniform in [-pi, pi] and the regression target sin(x). name "sine".
pub fn sine(n: usize, seed: u64) -> Result<Dataset> {
    if n < 1 {
        return Err(Error::Invalid("sine needs at least 1 point, got 0".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pi = std::f32::consts::PI;
    let x = Array2::from_shape_fn((n, 1), |_| rng.random_range(-pi..=pi)); // (N, 1)
    let y = x.mapv(f32::sin); // (N, 1)
    Ok(Dataset::regression("sine", x, y))
}

/// How features are rescaled before training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// Unchanged.
    None,
    /// Zero mean, unit (population) standard deviation per feature.
    Standard,
    /// Each feature mapped to [0, 1] by its minimum and maximum.
    MinMax,
}

impl Normalization {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Standard => "standard",
            Self::MinMax => "minmax",
        }
    }
}

impl FromStr for Normalization {
    type Err = Error;

    /// "none" | "standard" | "minmax".
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            "minmax" => Ok(Self::MinMax),
            _ => Err(Error::Invalid(format!("unknown normalization {s:?}: valid values are none, standard, minmax"))),
        }
    }
}

/// Per-feature affine map x' = (x - offset) * scale, fitted on training data and kept in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    /// How offset and scale were fitted.
    pub kind: Normalization,
    /// Subtracted from each feature, length F.
    pub offset: Vec<f32>,
    /// Then multiplied into each feature, length F.
    pub scale: Vec<f32>,
}

impl Normalizer {
    /// standard: offset = mean, scale = 1/std (population std); minmax: offset = min, scale = 1/(max-min); none:
    /// offset 0, scale 1. A constant feature (std or range 0), or one with no rows, gets scale 1 (never inf/NaN).
    pub fn fit(kind: Normalization, x: &Array2<f32>) -> Normalizer {
        let finite_or = |v: f64, default: f32| if (v as f32).is_finite() { v as f32 } else { default };
        let scale_of = |spread: f64| {
            if spread > 0.0 { finite_or(1.0 / spread, 1.0) } else { 1.0 }
        };
        let n = x.nrows() as f64;
        let (offset, scale) = x
            .axis_iter(Axis(1)) // one feature column (N) at a time
            .map(|col| match kind {
                _ if col.is_empty() => (0.0, 1.0),
                Normalization::None => (0.0, 1.0),
                Normalization::Standard => {
                    let mean = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                    let var = col.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
                    (finite_or(mean, 0.0), scale_of(var.sqrt()))
                }
                Normalization::MinMax => {
                    let min = col.iter().copied().fold(f32::INFINITY, f32::min);
                    let max = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    (finite_or(f64::from(min), 0.0), scale_of(f64::from(max) - f64::from(min)))
                }
            })
            .unzip();
        Normalizer { kind, offset, scale }
    }

    /// Applies the map to x (N, F) in place; Error::Invalid if F differs from the normalizer's width.
    pub fn apply(&self, x: &mut Array2<f32>) -> Result<()> {
        if x.ncols() != self.offset.len() {
            return Err(Error::Invalid(format!(
                "the normalizer was fitted on {} features but the data has {}",
                self.offset.len(),
                x.ncols()
            )));
        }
        for mut row in x.axis_iter_mut(Axis(0)) {
            for ((v, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *v = (*v - o) * s;
            }
        }
        Ok(())
    }

    /// `{"kind": "standard", "offset": [...], "scale": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind.name(), "offset": self.offset, "scale": self.scale })
    }

    /// The inverse of [`Normalizer::to_json`]; checks that the kind is known, the lengths are equal and every value
    /// is a finite number (Error::Invalid otherwise).
    pub fn from_json(v: &serde_json::Value) -> Result<Normalizer> {
        let bad = |msg: String| Error::Invalid(format!("invalid normalizer: {msg}"));
        let kind =
            v.get("kind").and_then(|k| k.as_str()).ok_or_else(|| bad("\"kind\" is missing or not a string".into()))?;
        let kind: Normalization = kind.parse().map_err(|e: Error| bad(e.to_string()))?;
        let numbers = |key: &str| -> Result<Vec<f32>> {
            let arr = v
                .get(key)
                .and_then(|a| a.as_array())
                .ok_or_else(|| bad(format!("{key:?} is missing or not an array")))?;
            arr.iter()
                .enumerate()
                .map(|(i, e)| match e.as_f64().map(|f| f as f32) {
                    Some(f) if f.is_finite() => Ok(f),
                    _ => Err(bad(format!("{key}[{i}] = {e} is not a finite number"))),
                })
                .collect()
        };
        let (offset, scale) = (numbers("offset")?, numbers("scale")?);
        if offset.len() != scale.len() {
            return Err(bad(format!("\"offset\" has {} values but \"scale\" has {}", offset.len(), scale.len())));
        }
        Ok(Normalizer { kind, offset, scale })
    }
}

/// A seeded shuffle of the row indices, then the first round(test_fraction * N) shuffled rows are the test set and
/// the rest (still in shuffled order) the training set. test_fraction must be in [0, 1). Returns (train, Some(test)),
/// or (train, None) when the test part would be empty. The training set must keep at least one row.
pub fn split(ds: &Dataset, test_fraction: f64, seed: u64) -> Result<(Dataset, Option<Dataset>)> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(Error::Invalid(format!("the test fraction must be in [0, 1), got {test_fraction}")));
    }
    let n = ds.len();
    let n_test = ((test_fraction * n as f64).round() as usize).min(n);
    if n_test >= n {
        return Err(Error::Invalid(format!(
            "{}: a test fraction of {test_fraction} of {n} rows leaves no rows for training",
            ds.name
        )));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (test, train) = idx.split_at(n_test);
    Ok((ds.select(train), (!test.is_empty()).then(|| ds.select(test))))
}
