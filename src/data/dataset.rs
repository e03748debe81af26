//! The `Dataset` type that every reader builds, what its targets mean, and the checks on class counts that
//! keep a stray label from allocating a huge one-hot matrix.

use std::path::Path;

use ndarray::{Array2, Axis};

use crate::data::limits::filled;
use crate::error::{Error, Result};

/// The largest number of classes a file may imply (a guard against a stray huge label allocating a huge one-hot matrix).
pub const MAX_CLASSES: usize = 1 << 16;

/// The most one-hot target values a data set may need (2^28 f32, 1 GiB): a single stray label such as 65535
/// must not make a small file allocate gigabytes.
pub const MAX_TARGET_VALUES: usize = 1 << 28;

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
    /// A classification set from features (N, F) and one label per row. The one-hot `y` (N, classes) is
    /// allocated with `try_reserve`; `path` names the source in an allocation error. Every label must be
    /// below `classes` (the readers check them; a larger one is a bug here, and panics).
    pub(crate) fn classification(
        name: String,
        x: Array2<f32>,
        labels: Vec<usize>,
        classes: usize,
        path: &Path,
    ) -> Result<Dataset> {
        let n = labels.len();
        let values = n.checked_mul(classes).ok_or_else(|| Error::data(path, "the one-hot targets overflow"))?;
        let mut y = Array2::from_shape_vec((n, classes), filled(values, 0.0f32, path)?)
            .map_err(|e| Error::data(path, e.to_string()))?; // (N, C) one-hot
        for (mut row, &label) in y.axis_iter_mut(Axis(0)).zip(&labels) {
            assert!(label < classes, "label {label} of {name} is not below its {classes} classes");
            row[label] = 1.0;
        }
        Ok(Dataset { name, x, y, labels: Some(labels), task: Task::Classification { classes } })
    }

    /// A regression set from features (N, F) and targets (N, T).
    pub(crate) fn regression(name: &str, x: Array2<f32>, y: Array2<f32>) -> Dataset {
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
            labels: self.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
            task: self.task,
        }
    }
}

/// Options for reading class labels / targets from files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSpec {
    /// Some(K): the last K columns are regression targets. None: the last column is an integer class label.
    pub targets: Option<usize>,
    /// Some(C): the number of classes is fixed (a label >= C is an error, e.g. when evaluating a trained model).
    /// None: classes = max label + 1.
    pub classes: Option<usize>,
}

/// Checks that `rows` one-hot rows of `classes` stay under [`MAX_TARGET_VALUES`].
pub(crate) fn check_one_hot_size(path: &Path, rows: usize, classes: usize) -> Result<()> {
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
pub(crate) fn check_classes(classes: Option<usize>, path: &Path) -> Result<()> {
    match classes {
        Some(0) => Err(Error::Invalid(format!("{}: the number of classes must be at least 1, got 0", path.display()))),
        Some(c) if c > MAX_CLASSES => Err(Error::Invalid(format!(
            "{}: the number of classes must be at most {MAX_CLASSES}, got {c}",
            path.display()
        ))),
        _ => Ok(()),
    }
}
