//! What a checkpoint holds: the types that writing and reading share.

use crate::data::{Normalizer, Task};
use crate::model::{MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};

/// The format name in the metadata.
pub const FORMAT: &str = "backprop-mlp";
/// The version of the layout that the `checkpoint` module documents.
pub const FORMAT_VERSION: &str = "1";

/// A trained network and what is needed to use it on new data.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub spec: MlpSpec,
    pub params: Params<f32>,
    /// The normalisation fitted on the training data, applied to every input.
    pub normalizer: Option<Normalizer>,
    /// Classification (with its class count) or regression.
    pub task: Option<Task>,
}

/// Where training stands, to resume it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingState {
    pub optimizer: OptimConfig,
    pub state: OptimState,
    /// Epochs completed.
    pub epoch: usize,
    /// The seed of the run (shuffles are derived from it and the epoch).
    pub seed: u64,
}

/// What a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: Model,
    pub training: Option<TrainingState>,
}
