//! Per-epoch metrics of a training run and the two files made from them: the CSV log ([`metrics`]) and
//! the loss/accuracy plot ([`plot`], laid out by `layout`).
//!
//! Both are written atomically (see `fsutil`): a failed write leaves no partial file and an existing
//! file untouched. The CSV can also grow by appended rows, and both can be read back, so a resumed run
//! continues their history. Files and the plot are native only: on wasm32 this is the metrics and their
//! CSV text.

#[cfg(not(target_arch = "wasm32"))]
mod layout;
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
#[cfg(not(target_arch = "wasm32"))]
mod png_text;

pub use metrics::{CSV_HEADER, metrics_csv, parse_metrics_csv};
#[cfg(not(target_arch = "wasm32"))]
pub use metrics::{append_metrics_csv, read_metrics_csv, write_metrics_csv};
#[cfg(not(target_arch = "wasm32"))]
pub use plot::{DEFAULT_PLOT_SIZE, PLOT_SIZE_LIMITS, plot_png, plot_png_sized, read_plot_history};

/// One epoch of training, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Loss on the test set after the epoch, when there is one.
    pub test_loss: Option<f64>,
    /// Fraction (0..1) of test samples classified correctly; classification only.
    pub test_accuracy: Option<f64>,
    /// Wall time in seconds since training started, at the end of this epoch.
    pub seconds: f64,
    /// Learning rate used in this epoch.
    pub lr: f64,
}
