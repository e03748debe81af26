//! The training loop, written once over the `Backend` trait: seeded shuffles, mini-batches (the last
//! partial batch included), learning-rate schedules, evaluation, and `--verify`, which checks a step of
//! the backend against the f64 CPU reference tensor by tensor.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::backend::Backend;
use crate::cpu;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Loss, MlpSpec};
use crate::optim::{self, OptimConfig, Schedule, StepScalars};
use crate::report::EpochMetrics;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The base learning rate; the schedule scales it per epoch.
    pub lr: f64,
    pub schedule: Schedule,
    pub optimizer: OptimConfig,
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
            return Err(Error::Invalid(format!("--lr must be a positive number, got {}", self.lr)));
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
                    return Err(Error::Invalid(format!("{flag} must be a number >= 0, got {t}")));
                }
            }
        }
        match self.schedule {
            Schedule::Step { gamma, .. } if !(gamma > 0.0 && gamma.is_finite()) => {
                return Err(Error::Invalid(format!("--lr-gamma must be a positive number, got {gamma}")));
            }
            Schedule::Cosine { min_lr } if !(min_lr >= 0.0 && min_lr.is_finite()) => {
                return Err(Error::Invalid(format!("--lr-min must be a number >= 0, got {min_lr}")));
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
        self.optimizer.validate()
    }
}

/// `--verify`: every `every` steps, compare with the reference; fail past `atol + rtol·|ref|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verify {
    pub every: usize,
    pub atol: f64,
    pub rtol: f64,
}

/// The largest errors of one tensor of a verified step.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorError {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    /// max over elements of |got − ref| / (atol + rtol·|ref|); above 1 fails.
    pub worst_ratio: f64,
}

/// One verified step.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    pub step: u64,
    pub tensors: Vec<TensorError>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.tensors.iter().all(|t| t.worst_ratio <= 1.0)
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
    let loss = output_loss(backend.spec(), &outputs, &ds.y);
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
    Ok(Evaluation { loss, accuracy, confusion, outputs })
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
/// (and its state restored when resuming). Returns one row of metrics per epoch trained.
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
            None => {
                // Groups of batches, each one call (one submit on the GPU); progress between groups.
                let group = cfg.batch_size * STEPS_PER_CALL;
                for (g, rows) in order.chunks(group).enumerate() {
                    backend.run_steps(rows, cfg.batch_size, lr as f32)?;
                    observer.batch(epoch, (g * group + rows.len()).min(n), n);
                }
            }
            Some(v) => {
                for (b, chunk) in order.chunks(cfg.batch_size).enumerate() {
                    let (x, y) = (rows(&train.x, chunk), rows(&train.y, chunk));
                    step += 1;
                    if step % v.every as u64 == 0 || step == 1 {
                        let report = verify_step(backend, x.view(), y.view(), lr as f32, v)?;
                        observer.verified(&report);
                        if !report.passed() {
                            return Err(verify_error(&report, backend.name(), v));
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

fn verify_error(report: &VerifyReport, backend: String, v: &Verify) -> Error {
    let worst = report
        .tensors
        .iter()
        .filter(|t| t.worst_ratio > 1.0)
        .map(|t| format!("{} (max abs {:.2e}, max rel {:.2e})", t.name, t.max_abs, t.max_rel))
        .collect::<Vec<_>>()
        .join(", ");
    Error::Invalid(format!(
        "--verify: step {} of {backend} differs from the CPU reference beyond atol {:e} + rtol {:e}: {worst}",
        report.step, v.atol, v.rtol
    ))
}

fn compare(name: String, got: &[f32], want: &[f64], v: &Verify) -> TensorError {
    let mut e = TensorError { name, max_abs: 0.0, max_rel: 0.0, worst_ratio: 0.0 };
    if got.len() != want.len() {
        e.worst_ratio = f64::INFINITY;
        return e;
    }
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w).abs();
        let d = if d.is_nan() { f64::INFINITY } else { d };
        e.max_abs = e.max_abs.max(d);
        if w != 0.0 {
            e.max_rel = e.max_rel.max(d / w.abs());
        }
        e.worst_ratio = e.worst_ratio.max(d / (v.atol + v.rtol * w.abs()));
    }
    e
}

/// Runs one step on the backend and the same step on the f64 reference from the same parameters and
/// optimizer state, and compares every tensor.
pub fn verify_step(
    backend: &mut dyn Backend,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    lr: f32,
    v: &Verify,
) -> Result<VerifyReport> {
    let spec = backend.spec().clone();
    let p0 = backend.params()?.to_f64();
    let s0 = backend.optimizer_state()?;
    let cfg = backend.optimizer();
    let got = backend.traced_step(x, y, lr)?;
    let p1 = backend.params()?;

    let (x64, y64) = (x.mapv(|v| v as f64), y.mapv(|v| v as f64));
    let want = cpu::forward_backward(&spec, &p0, x64.view(), y64.view())?;
    let mut flat = p0.to_flat();
    let mut m: Vec<f64> = s0.m.iter().map(|&v| v as f64).collect();
    let mut vv: Vec<f64> = s0.v.iter().map(|&v| v as f64).collect();
    let s = StepScalars::new(&cfg, lr as f64, s0.step + 1);
    let mut g = want.grads.to_flat();
    if let Some(max) = backend.grad_clip() {
        let c = optim::clip_coefficient(&g, max);
        g.iter_mut().for_each(|v| *v *= c);
    }
    optim::update(&cfg, &mut flat, &g, &mut m, &mut vv, s);

    let mat = |a: &Array2<f64>| a.iter().copied().collect::<Vec<f64>>();
    let vec32 = |a: &Array2<f32>| a.iter().copied().collect::<Vec<f32>>();
    let mut tensors = Vec::new();
    for l in 0..spec.layers() {
        tensors.push(compare(format!("Z{l}"), &vec32(&got.pre[l]), &mat(&want.pre[l]), v));
        tensors.push(compare(format!("A{l}"), &vec32(&got.post[l]), &mat(&want.post[l]), v));
        tensors.push(compare(format!("delta{l}"), &vec32(&got.delta[l]), &mat(&want.delta[l]), v));
    }
    tensors.push(compare("loss".into(), &[got.loss], &[want.loss], v));
    tensors.push(compare("gradients".into(), &got.grads.to_flat(), &want.grads.to_flat(), v));
    tensors.push(compare("updated parameters".into(), &p1.to_flat(), &flat, v));
    Ok(VerifyReport { step: s0.step + 1, tensors })
}
