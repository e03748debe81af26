//! The training loop, written once over the `Backend` trait: seeded shuffles, mini-batches (the last
//! partial batch included), learning-rate schedules, evaluation and prediction. `verify` checks a step of
//! the backend against the f64 CPU reference tensor by tensor; `trainer` is the builder from a network
//! description and a data set to a trained model, with the command line's defaults.

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use web_time::Instant;

use crate::backend::Backend;
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::model::{Loss, MlpSpec};
use crate::optim::Schedule;
use crate::report::EpochMetrics;

mod run;
mod trainer;
mod verify;

pub use run::{Device, Run, Trained, prepare_inputs};
pub use trainer::{DEFAULT_SEED, Network, Trainer};
pub use verify::{StepRecord, TensorError, Verify, VerifyReport, check_step, verify_step};

/// How to train: everything but the network and the optimizer, which the backend holds (see
/// [`Backend::set_optimizer`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The base learning rate; the schedule scales it per epoch.
    pub lr: f64,
    pub schedule: Schedule,
    /// Shuffle the rows every epoch (seeded by `seed` and the epoch); otherwise keep file order.
    pub shuffle: bool,
    pub seed: u64,
    /// Check every N-th step against the CPU reference.
    pub verify: Option<Verify>,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Invalid("--epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Invalid("--batch-size must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::Invalid(format!("--lr must be a finite number > 0, got {}", self.lr)));
        }
        if let Schedule::Step { step_size: 0, .. } = self.schedule {
            return Err(Error::Invalid("--lr-step must be at least 1".into()));
        }
        if let Some(v) = &self.verify {
            if v.every == 0 {
                return Err(Error::Invalid("--verify N needs N >= 1".into()));
            }
            for (flag, t) in [("--verify-atol", v.atol), ("--verify-rtol", v.rtol)] {
                if !(t >= 0.0 && t.is_finite()) {
                    return Err(Error::Invalid(format!("{flag} must be a finite number >= 0, got {t}")));
                }
            }
        }
        match self.schedule {
            Schedule::Step { gamma, .. } if !(gamma > 0.0 && gamma.is_finite()) => {
                return Err(Error::Invalid(format!("--lr-gamma must be a finite number > 0, got {gamma}")));
            }
            Schedule::Cosine { min_lr } if !(min_lr >= 0.0 && min_lr.is_finite()) => {
                return Err(Error::Invalid(format!("--lr-min must be a finite number >= 0, got {min_lr}")));
            }
            _ => {}
        }
        if let Some(e) = (0..self.epochs).find(|&e| {
            let lr = self.schedule.lr(self.lr, e, self.epochs);
            !(lr > 0.0 && lr.is_finite() && (lr as f32).is_finite())
        }) {
            let lr = self.schedule.lr(self.lr, e, self.epochs);
            return Err(Error::Invalid(format!(
                "the {} schedule gives epoch {} a learning rate of {lr}; check --lr, --lr-gamma and --lr-min",
                self.schedule.name(),
                e + 1
            )));
        }
        Ok(())
    }
}

/// Hooks the loop calls; the command line draws progress with them.
pub trait Observer {
    /// After each batch: samples done in this epoch, out of `total`.
    fn batch(&mut self, _epoch: usize, _done: usize, _total: usize) {}
    fn epoch(&mut self, _m: &EpochMetrics, _epochs: usize) {}
    fn verified(&mut self, _r: &VerifyReport) {}
    /// After each epoch, with every epoch's metrics so far: a place to save checkpoints and logs.
    fn epoch_end(&mut self, _backend: &mut dyn Backend, _history: &[EpochMetrics]) -> Result<()> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// Loss, accuracy and confusion matrix of a model on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    /// Fraction correct, for classification.
    pub accuracy: Option<f64>,
    /// `confusion[true][predicted]` counts, for classification.
    pub confusion: Option<Vec<Vec<usize>>>,
    /// The network's outputs (N, O).
    pub outputs: Array2<f32>,
}

/// The rows `idx` of `a`.
fn rows(a: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    a.select(Axis(0), idx)
}

/// The network's outputs for every row of `x`, `batch` rows at a time.
///
/// Errors: [`Error::Model`] when an output is NaN or infinite (the weights overflow on this data), so
/// that no caller turns such rows into predictions.
pub fn predict(backend: &mut dyn Backend, x: ArrayView2<f32>, batch: usize) -> Result<Array2<f32>> {
    let n = x.nrows();
    let mut out = Array2::zeros((n, backend.spec().output_width()));
    let mut start = 0;
    while start < n {
        let end = (start + batch.max(1)).min(n);
        let p = backend.predict(x.slice(ndarray::s![start..end, ..]))?;
        out.slice_mut(ndarray::s![start..end, ..]).assign(&p);
        start = end;
    }
    let bad: Vec<usize> =
        out.outer_iter().enumerate().filter(|(_, r)| r.iter().any(|v| !v.is_finite())).map(|(i, _)| i).collect();
    if let Some(first) = bad.first() {
        return Err(Error::Model(format!(
            "its outputs are NaN or infinite for {} of {n} rows (the first is row {}): its weights overflow on \
             this data, so there is nothing to predict or score",
            bad.len(),
            first + 1
        )));
    }
    Ok(out)
}

/// Index of the largest value of each row.
pub fn argmax_rows(a: &Array2<f32>) -> Vec<usize> {
    a.outer_iter()
        .map(|r| r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
        .collect()
}

/// The loss of outputs against targets, in f64: MSE on outputs, cross-entropy on probabilities.
pub fn output_loss(spec: &MlpSpec, outputs: &Array2<f32>, targets: &Array2<f32>) -> f64 {
    let n = outputs.len().max(1) as f64;
    match spec.loss() {
        Loss::Mse => outputs.iter().zip(targets).map(|(&p, &y)| (p as f64 - y as f64).powi(2)).sum::<f64>() / n,
        Loss::CrossEntropy => {
            let total: f64 = outputs.iter().zip(targets).map(|(&p, &y)| -(y as f64) * (p as f64).max(1e-38).ln()).sum();
            total / outputs.nrows().max(1) as f64
        }
    }
}

/// Evaluates the backend's current parameters on `ds`.
pub fn evaluate(backend: &mut dyn Backend, ds: &Dataset, batch: usize) -> Result<Evaluation> {
    check_data(backend.spec(), ds)?;
    let outputs = predict(backend, ds.x.view(), batch)?;
    Ok(score(backend.spec(), ds, outputs))
}

/// Loss, accuracy and confusion matrix of a network's `outputs` (N, O) for the rows of `ds`, which
/// [`check_data`] accepted.
pub fn score(spec: &MlpSpec, ds: &Dataset, outputs: Array2<f32>) -> Evaluation {
    let loss = output_loss(spec, &outputs, &ds.y);
    let (accuracy, confusion) = match &ds.labels {
        Some(labels) => {
            let classes = ds.target_width();
            let pred = argmax_rows(&outputs);
            let mut confusion = vec![vec![0usize; classes]; classes];
            for (&t, &p) in labels.iter().zip(&pred) {
                if t < classes && p < classes {
                    confusion[t][p] += 1;
                }
            }
            let correct = labels.iter().zip(&pred).filter(|(t, p)| t == p).count();
            (Some(correct as f64 / labels.len().max(1) as f64), Some(confusion))
        }
        None => (None, None),
    };
    Evaluation { loss, accuracy, confusion, outputs }
}

/// Checks that a data set's widths fit the network.
pub fn check_data(spec: &MlpSpec, ds: &Dataset) -> Result<()> {
    if ds.features() != spec.input_width() {
        return Err(Error::Invalid(format!(
            "{} has {} feature columns but the network's input width is {}",
            ds.name,
            ds.features(),
            spec.input_width()
        )));
    }
    if ds.target_width() != spec.output_width() {
        let what = if ds.labels.is_some() { "classes" } else { "targets" };
        return Err(Error::Invalid(format!(
            "{} has {} {what} but the network's output width is {}",
            ds.name,
            ds.target_width(),
            spec.output_width()
        )));
    }
    Ok(())
}

/// Gives a classification set one-hot rows as wide as a network's output when it has fewer classes than
/// that (a class with no row, as PyTorch allows labels below the width); a set with more classes is left
/// for [`check_data`] to refuse.
pub fn widen_classes(ds: &mut Dataset, width: usize) {
    let (Task::Classification { classes }, Some(labels)) = (ds.task, &ds.labels) else { return };
    if classes >= width {
        return;
    }
    let mut y = Array2::zeros((labels.len(), width)); // (N, width) one-hot
    for (mut row, &label) in y.axis_iter_mut(Axis(0)).zip(labels) {
        // Dataset's invariant: every label is below its class count, which is below `width`.
        *row.get_mut(label).expect("a label below the data set's class count") = 1.0;
    }
    ds.y = y;
    ds.task = Task::Classification { classes: width };
}

/// The row order of `epoch`: shuffled from (seed, epoch) so a resumed run sees the same orders.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        idx.shuffle(&mut rng);
    }
    idx
}

/// Trains for epochs `start_epoch .. cfg.epochs` (0-based). The backend's optimizer must already be set
/// (and its state restored when resuming); [`Run::train`] does that. Returns one row of metrics per epoch
/// trained.
pub fn train(
    backend: &mut dyn Backend,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    start_epoch: usize,
    observer: &mut dyn Observer,
) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    check_data(backend.spec(), train)?;
    if let Some(t) = test {
        check_data(backend.spec(), t)?;
    }
    if train.is_empty() {
        return Err(Error::Invalid(format!("{} has no training rows", train.name)));
    }
    let started = Instant::now();
    let n = train.len();
    let mut metrics = Vec::new();
    backend.take_loss_sum()?;
    backend.set_data(train.x.view(), train.y.view())?;
    let mut step: u64 = 0;
    for epoch in start_epoch..cfg.epochs {
        let lr = cfg.schedule.lr(cfg.lr, epoch, cfg.epochs);
        let order = epoch_order(n, cfg.shuffle, cfg.seed, epoch);
        match &cfg.verify {
            None => epoch_steps(backend, n, cfg, epoch, observer)?,
            Some(v) => {
                for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
                    let (x, y) = (rows(&train.x, chunk), rows(&train.y, chunk));
                    step += 1;
                    if step % v.every as u64 == 0 || step == 1 {
                        let report = verify_step(backend, x.view(), y.view(), lr as f32, v)?;
                        observer.verified(&report);
                        if !report.passed() {
                            return Err(verify::verify_error(&report, backend.name(), v));
                        }
                    } else {
                        backend.step(x.view(), y.view(), lr as f32, false)?;
                    }
                    observer.batch(epoch, (b * cfg.batch_size + chunk.len()).min(n), n);
                }
            }
        }
        let (loss_sum, diverged) = backend.take_epoch_stats()?;
        if let Some(step) = diverged {
            return Err(Error::Diverged { step, epoch: epoch + 1 });
        }
        let train_loss = loss_sum / n as f64;
        let eval = match test {
            Some(t) => Some(evaluate(backend, t, cfg.batch_size)?),
            None => None,
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            test_loss: eval.as_ref().map(|e| e.loss),
            test_accuracy: eval.as_ref().and_then(|e| e.accuracy),
            seconds: started.elapsed().as_secs_f64(),
            lr,
        };
        observer.epoch(&m, cfg.epochs);
        metrics.push(m);
        observer.epoch_end(backend, &metrics)?;
    }
    Ok(metrics)
}

/// Batches per `run_steps` call: one GPU submit each, and a progress update between them.
pub const STEPS_PER_CALL: usize = 32;

/// The steps of epoch `epoch` (0-based) over the `n` rows of the backend's training set, at the epoch's
/// learning rate: its row order in groups of [`STEPS_PER_CALL`] batches, one `run_steps` call each (one
/// submit on the GPU), with progress between groups and no read-back. The caller takes the epoch's
/// statistics (`take_epoch_stats`), as [`train`] does; the web page awaits them.
pub fn epoch_steps(
    backend: &mut dyn Backend,
    n: usize,
    cfg: &TrainConfig,
    epoch: usize,
    observer: &mut dyn Observer,
) -> Result<()> {
    let lr = cfg.schedule.lr(cfg.lr, epoch, cfg.epochs);
    let order = epoch_order(n, cfg.shuffle, cfg.seed, epoch);
    let group = cfg.batch_size * STEPS_PER_CALL;
    for (g, rows) in order.chunks(group).enumerate() {
        backend.run_steps(rows, cfg.batch_size, lr as f32)?;
        observer.batch(epoch, (g * group + rows.len()).min(n), n);
    }
    Ok(())
}
