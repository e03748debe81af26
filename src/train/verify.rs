//! `--verify`: a step of the backend checked against the same step of the f64 CPU reference, from the
//! same parameters and optimizer state, tensor by tensor. The step is recorded first ([`StepRecord`]) and
//! checked after ([`check_step`]), so a caller that reads the backend back asynchronously (the web page)
//! checks the same way.

use ndarray::{Array2, ArrayView2};

use crate::backend::Backend;
use crate::cpu::Trace;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};
use crate::reference::Reference;

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

pub(super) fn verify_error(report: &VerifyReport, backend: String, v: &Verify) -> Error {
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

/// One step as a backend ran it: what it started from, its trace, and the parameters after it.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub spec: MlpSpec,
    pub optimizer: OptimConfig,
    pub grad_clip: Option<f32>,
    pub params_before: Params<f32>,
    pub state_before: OptimState,
    pub trace: Trace<f32>,
    pub params_after: Params<f32>,
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
    let (params_before, state_before) = (backend.params()?, backend.optimizer_state()?);
    let trace = backend.traced_step(x, y, lr)?;
    let record = StepRecord {
        spec: backend.spec().clone(),
        optimizer: backend.optimizer(),
        grad_clip: backend.grad_clip(),
        params_before,
        state_before,
        trace,
        params_after: backend.params()?,
    };
    check_step(&record, x, y, lr, v)
}

/// The reference's half of [`verify_step`]: the recorded step taken on the f64 reference from the same
/// parameters and optimizer state, and every tensor compared.
pub fn check_step(
    record: &StepRecord,
    x: ArrayView2<f32>,
    y: ArrayView2<f32>,
    lr: f32,
    v: &Verify,
) -> Result<VerifyReport> {
    let (spec, s0, got, p1) = (&record.spec, &record.state_before, &record.trace, &record.params_after);
    let mut reference = Reference::<f64>::resume(spec, &record.params_before, record.optimizer, record.grad_clip, s0)?;
    let (x64, y64) = (x.mapv(|v| v as f64), y.mapv(|v| v as f64));
    let want = reference.step(x64.view(), y64.view(), lr as f64)?;
    let flat = reference.flat;

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
