//! The seeded split of a data set into training and held-out rows.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

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
