//! One error type for the whole crate, so that no user input ever has to end in a panic.

use std::path::PathBuf;

/// Everything that can go wrong in `backprop`, as values a caller can match on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter that matches the request.
    #[error("no GPU adapter found{filter}: {hint}")]
    NoAdapter { filter: String, hint: String },

    /// A tensor handed in does not have the shape the model needs.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    Shape { what: String, expected: String, got: String },

    /// A request is larger than the device allows.
    #[error("{what} needs {requested} but the device limit {limit} is {available}")]
    DeviceLimit { what: String, limit: &'static str, requested: u64, available: u64 },

    /// The network description itself is invalid (a width of 0, a missing activation, ...).
    #[error("invalid model: {0}")]
    Model(String),

    /// A flag or option value the user gave is not valid.
    #[error("{0}")]
    Invalid(String),

    /// wgpu reported an error (validation, out of memory, device lost, mapping).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// The loss became NaN or infinite.
    #[error(
        "training diverged at step {step} (epoch {epoch}): the loss is NaN or infinite; the last good checkpoint, if any, is kept (try a smaller --lr or --max-grad-norm)"
    )]
    Diverged { step: u64, epoch: usize },

    /// An error every rank of a data-parallel job reaches together (ranks drifted apart, a rank failed
    /// to start): one rank reports it for all.
    #[error("{0}")]
    Distributed(String),

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// A data file was read but its contents are not usable.
    #[error("{}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape { what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data { path: path.into(), msg: msg.into() }
    }
}
