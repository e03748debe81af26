//! `--verify`: a step of the backend checked against the same step of the f64 CPU reference, from the
//! same parameters and optimizer state, tensor by tensor.

use ndarray::{Array2, ArrayView2};

use crate::backend::Backend;
use crate::cpu;
use crate::error::{Error, Result};
use crate::optim::{self, StepScalars};

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
