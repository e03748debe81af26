//! The math on the CPU: the f64 reference checked against what does not depend on it (the seed's example
//! worked out by hand, finite differences, the kernels' twins), the fast CPU backend checked against the
//! reference, and the optimizers' configuration (bias corrections, schedules, checks, JSON). One binary, a
//! module per topic.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod optim;
mod reference;
