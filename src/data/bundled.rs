//! The data sets that need no file: the digits embedded in the binary, and the synthetic xor, spirals and sine.

use ndarray::{Array2, Axis};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::csv::{self, Columns};
use crate::data::dataset::{Dataset, TargetSpec};
use crate::data::input::Input;
use crate::data::limits::Limits;
use crate::error::{Error, Result};

/// A data set named on the command line instead of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bundled {
    /// [`digits`].
    Digits,
    /// [`xor`].
    Xor,
    /// [`spirals`] with 400 points.
    Spirals,
    /// [`sine`] with 256 points.
    Sine,
}

impl Bundled {
    /// Every bundled set, in the order the help text names them.
    pub const ALL: [Bundled; 4] = [Bundled::Digits, Bundled::Xor, Bundled::Spirals, Bundled::Sine];

    /// The name on the command line and in `Dataset::name`.
    pub fn name(self) -> &'static str {
        match self {
            Bundled::Digits => "digits",
            Bundled::Xor => "xor",
            Bundled::Spirals => "spirals",
            Bundled::Sine => "sine",
        }
    }

    /// The set called `name`, if one is.
    pub fn from_name(name: &str) -> Option<Bundled> {
        Bundled::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The fraction of rows to hold out by default: none for xor (its 4 rows are the whole function it
    /// learns), a fifth of the others (`Trainer`'s default).
    pub fn test_split(self) -> f64 {
        if self == Bundled::Xor { 0.0 } else { 0.2 }
    }

    /// The data set; `seed` seeds the synthetic ones' points and noise.
    pub fn load(self, seed: u64) -> Result<Dataset> {
        match self {
            Bundled::Digits => digits(),
            Bundled::Xor => Ok(xor()),
            Bundled::Spirals => spirals(400, seed),
            Bundled::Sine => sine(256, seed),
        }
    }
}

/// The bundled digits set (1,797 8x8 images, pixels 0..16, 10 classes), embedded in the binary. name "digits".
pub fn digits() -> Result<Dataset> {
    const GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
    let input = Input::from_reader("<bundled data/digits.csv.gz>", GZ)?;
    let spec = TargetSpec { targets: None, classes: Some(10) };
    let mut ds = csv::read(input, Columns::Targets { spec, input_width: None }, &Limits::detect())?;
    ds.name = "digits".into();
    Ok(ds)
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
    Dataset::classification("spirals".into(), x, labels, 2, std::path::Path::new("spirals"))
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
