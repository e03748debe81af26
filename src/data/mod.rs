//! Data sets: the bundled digits, CSV files, MNIST IDX files and synthetic sets; normalisation; splits.
//!
//! Every reader checks its input completely and reports problems as [`Error`](crate::Error) values that name
//! the file and, for CSV, the 1-based line and column: no file content can make this module panic. Reading is
//! bounded: what a header or a file will need is checked against [`Limits`] (this machine's available memory,
//! a cap on text, a wait for FIFOs) before it is allocated, and allocations use `try_reserve`, so an oversized
//! input is an error that says so, never an abort. Sources may be files, pipes, FIFOs or standard input (`-`).
//!
//! The parts, each used only by those after it:
//! - `limits`: [`Limits`] and fallible allocation;
//! - `input`: opening any kind of file, gzip, and looking at the first bytes without losing them ([`Input`]);
//! - `dataset`: the [`Dataset`] type and the class-count checks;
//! - `text`, `csv`: CSV through the `csv` crate, streamed; `idx`: MNIST IDX files;
//! - `bundled`: the digits and the synthetic sets; `source`: what `--data`/`--labels` name ([`Source`], [`load`]);
//! - `normalize`, `split`: what training does with a loaded set.

mod bundled;
mod csv;
mod dataset;
mod idx;
pub(crate) mod input;
pub(crate) mod limits;
mod normalize;
mod source;
mod split;
mod text;

pub use bundled::{Bundled, digits, sine, spirals, xor};
pub use csv::{load_csv, load_csv_features};
pub use dataset::{Dataset, MAX_CLASSES, MAX_TARGET_VALUES, TargetSpec, Task};
pub use idx::load_idx;
pub use input::{Input, Kind, STDIN, STDIN_NAME};
pub use limits::{FIFO_WAIT, FIXED_MEMORY, Limits, MAX_LINE_BYTES, MAX_TEXT_BYTES};
pub use normalize::{Normalization, Normalizer};
pub use source::{Purpose, Request, Source, load};
pub use split::split;
