//! Which data set a command names: a bundled or synthetic set, a CSV file, or a pair of MNIST IDX files
//! (resolved, sniffed and read with bounded memory by `backprop::data::load`).

use backprop::Result;
use backprop::data::{self, Dataset, Purpose};

use super::args::DataArgs;

/// Loads the data set a command names, for `purpose`. `classes` fixes the class count (evaluating a trained
/// model); `seed` draws the synthetic sets.
pub fn load_data(args: &DataArgs, classes: Option<usize>, seed: u64, purpose: Purpose) -> Result<Dataset> {
    let request = data::Request { targets: args.targets, classes, purpose, ..data::Request::new(seed) };
    data::load(&args.data, args.labels.as_deref(), &request)
}
