//! What each command does, on top of the library: `train` (flags to the library's builder, then the
//! training run and its output files), `eval` and `predict`, `bench`, `worked-example` and `devices`.

pub mod args;
mod bench;
#[cfg(feature = "mpi")]
mod bench_ranks;
mod data;
mod device;
mod eval;
mod info;
mod json;
mod outputs;
mod parse;
mod saver;
mod settings;
mod train;

pub use bench::bench;
pub use eval::{eval, predict};
pub use info::{devices, worked};
pub use train::train;

/// `n` and a noun, in the plural unless `n` is 1: "1 epoch", "30 epochs", "10 classes".
fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}
