//! The seed's worked example: a 2-2-1 sigmoid network, one SGD step, every quantity the seed prints
//! beside the exact value on the CPU (f64) and on the GPU (f32).
//!
//! The seed's printed values are kept here as printed, with the number of decimals it printed, so that
//! "agrees" means "the exact value rounds to what the seed printed" (within half a unit of its last digit).

use ndarray::{Array2, array};
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::cpu::{self, Trace};
use crate::error::Result;
use crate::gpu::AdapterSummary;
use crate::model::{Activation, Loss, MlpSpec, Params};

/// The seed's input x = [x1, x2].
pub const INPUT: [f64; 2] = [0.5, 0.3];
/// The seed's target y.
pub const TARGET: f64 = 0.8;
/// The seed's learning rate.
pub const LEARNING_RATE: f64 = 0.1;

/// The seed's network: W1 [[0.5, 0.3], [0.2, 0.4]] (`W1[i][j]` from input i to hidden j), b1 [0.1, 0.2],
/// W2 [0.6, 0.7] (from hidden j to the output), b2 0.3, all sigmoid, MSE.
pub fn network() -> Result<(MlpSpec, Params<f64>)> {
    let spec = MlpSpec::uniform(vec![2, 2, 1], Activation::Sigmoid, Loss::Mse)?;
    let params = Params {
        weights: vec![array![[0.5, 0.3], [0.2, 0.4]], array![[0.6], [0.7]]],
        biases: vec![array![0.1, 0.2], array![0.3]],
    };
    Ok((spec, params))
}

/// The batch of one: X (1, 2), Y (1, 1).
pub fn batch() -> (Array2<f64>, Array2<f64>) {
    (array![[INPUT[0], INPUT[1]]], array![[TARGET]])
}

/// A value in the seed's own shape: a scalar, a vector, or a matrix in the seed's index order.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    Scalar(f64),
    Vector(Vec<f64>),
    Matrix(Vec<Vec<f64>>),
}

impl Tensor {
    fn flat(&self) -> Vec<f64> {
        match self {
            Tensor::Scalar(v) => vec![*v],
            Tensor::Vector(v) => v.clone(),
            Tensor::Matrix(m) => m.iter().flatten().copied().collect(),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Tensor::Scalar(v) => json!(v),
            Tensor::Vector(v) => json!(v),
            Tensor::Matrix(m) => json!(m),
        }
    }

    /// Formats every element with `decimals` places, in the seed's bracket notation.
    pub fn format(&self, decimals: usize) -> String {
        let f = |v: &f64| format!("{v:.decimals$}");
        let row = |r: &[f64]| format!("[{}]", r.iter().map(f).collect::<Vec<_>>().join(", "));
        match self {
            Tensor::Scalar(v) => f(v),
            Tensor::Vector(v) => row(v),
            Tensor::Matrix(m) => format!("[{}]", m.iter().map(|r| row(r)).collect::<Vec<_>>().join(", ")),
        }
    }

    /// Largest elementwise |self − other| (shapes are the same by construction).
    pub fn max_abs_diff(&self, other: &Tensor) -> f64 {
        self.flat().iter().zip(other.flat()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    }
}

/// A number as the seed prints it, with the count of decimals it shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Printed {
    pub value: Tensor,
    pub decimals: u32,
}

impl Printed {
    /// True when every exact element is within half a unit of the seed's last printed digit.
    pub fn agrees_with(&self, exact: &Tensor) -> bool {
        let tol = 0.5 * 10f64.powi(-(self.decimals as i32)) + 1e-12;
        self.value.max_abs_diff(exact) <= tol
    }
}

/// The quantity names, in the order of the seed's walk-through.
pub const QUANTITIES: [&str; 15] = [
    "hidden_input",
    "hidden_output",
    "output_input",
    "output",
    "loss",
    "delta_output",
    "delta_hidden",
    "grad_w2",
    "grad_b2",
    "grad_w1",
    "grad_b1",
    "w1_updated",
    "b1_updated",
    "w2_updated",
    "b2_updated",
];

/// What the seed prints for a quantity, or `None` where it prints no number.
pub fn seed_value(name: &str) -> Option<Printed> {
    let p = |value, decimals| Some(Printed { value, decimals });
    match name {
        "hidden_input" => p(Tensor::Vector(vec![0.31, 0.29]), 2),
        "hidden_output" => p(Tensor::Vector(vec![0.57, 0.57]), 2),
        "output_input" => p(Tensor::Scalar(0.71), 2),
        "output" => p(Tensor::Scalar(0.67), 2),
        "loss" => p(Tensor::Scalar(0.017), 3),
        "delta_output" => p(Tensor::Scalar(-0.05), 2),
        "delta_hidden" => p(Tensor::Vector(vec![-0.01, -0.01]), 2),
        "grad_w2" => p(Tensor::Vector(vec![-0.03, -0.04]), 2),
        "grad_b2" => p(Tensor::Scalar(-0.05), 2),
        _ => None,
    }
}

fn row<T: Into<f64> + Copy>(a: &Array2<T>) -> Tensor {
    Tensor::Vector(a.row(0).iter().map(|&v| v.into()).collect())
}

fn scalar<T: Into<f64> + Copy>(a: &Array2<T>) -> Tensor {
    Tensor::Scalar(a[[0, 0]].into())
}

fn matrix<T: Into<f64> + Copy>(a: &Array2<T>) -> Tensor {
    Tensor::Matrix(a.outer_iter().map(|r| r.iter().map(|&v| v.into()).collect()).collect())
}

fn column<T: Into<f64> + Copy>(a: &Array2<T>) -> Tensor {
    Tensor::Vector(a.column(0).iter().map(|&v| v.into()).collect())
}

/// Every quantity of one step, in the seed's shapes, from a trace and the updated parameters.
pub fn quantities<T: Into<f64> + Copy>(trace: &Trace<T>, updated: &Params<T>, loss: T) -> Vec<(&'static str, Tensor)> {
    let g = &trace.grads;
    let b = |v: &ndarray::Array1<T>| Tensor::Vector(v.iter().map(|&x| x.into()).collect());
    let b_scalar = |v: &ndarray::Array1<T>| Tensor::Scalar(v[0].into());
    let values = [
        row(&trace.pre[0]),
        row(&trace.post[0]),
        scalar(&trace.pre[1]),
        scalar(&trace.post[1]),
        Tensor::Scalar(loss.into()),
        scalar(&trace.delta[1]),
        row(&trace.delta[0]),
        column(&g.weights[1]),
        b_scalar(&g.biases[1]),
        matrix(&g.weights[0]),
        b(&g.biases[0]),
        matrix(&updated.weights[0]),
        b(&updated.biases[0]),
        column(&updated.weights[1]),
        b_scalar(&updated.biases[1]),
    ];
    QUANTITIES.iter().copied().zip(values).collect()
}

/// One row of the comparison.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub seed: Option<Printed>,
    pub cpu_f64: Tensor,
    pub gpu_f32: Option<Tensor>,
}

impl Row {
    pub fn max_abs_diff(&self) -> Option<f64> {
        self.gpu_f32.as_ref().map(|g| g.max_abs_diff(&self.cpu_f64))
    }
    pub fn seed_agrees(&self) -> Option<bool> {
        self.seed.as_ref().map(|s| s.agrees_with(&self.cpu_f64))
    }
}

/// Runs the step on the f64 reference and, if given, on a backend in f32 (the GPU).
pub fn run(gpu: Option<&mut dyn Backend>) -> Result<Vec<Row>> {
    let measured = match gpu {
        Some(backend) => {
            let (params, x, y) = inputs_f32()?;
            backend.set_params(&params)?;
            let t = backend.traced_step(x.view(), y.view(), LEARNING_RATE as f32)?;
            let after = backend.params()?;
            Some(quantities(&t, &after, t.loss))
        }
        None => None,
    };
    compare(measured)
}

/// The seed's parameters and batch in f32, as a backend takes them.
pub fn inputs_f32() -> Result<(Params<f32>, Array2<f32>, Array2<f32>)> {
    let (_, params) = network()?;
    let (x, y) = batch();
    Ok((params.to_f32(), x.mapv(|v| v as f32), y.mapv(|v| v as f32)))
}

/// Runs the step on the f64 reference and sets every quantity beside the same quantity measured elsewhere
/// (`quantities` of a backend's trace and updated parameters, as `run` takes them; the web page reads the
/// GPU's back asynchronously first).
pub fn compare(gpu_q: Option<Vec<(&'static str, Tensor)>>) -> Result<Vec<Row>> {
    let (spec, params) = network()?;
    let (x, y) = batch();
    let mut updated = params.clone();
    let trace = cpu::sgd_step(&spec, &mut updated, x.view(), y.view(), LEARNING_RATE)?;
    let cpu_q = quantities(&trace, &updated, trace.loss);

    Ok(cpu_q
        .into_iter()
        .enumerate()
        .map(|(i, (name, cpu_f64))| Row {
            name,
            seed: seed_value(name),
            cpu_f64,
            gpu_f32: gpu_q.as_ref().map(|g| g[i].1.clone()),
        })
        .collect())
}

/// The whole `worked-example --json` document: the adapter (`null` without a GPU) and the rows.
pub fn report_json(adapter: Option<&AdapterSummary>, rows: &[Row]) -> Value {
    json!({
        "adapter": adapter.map(|a| json!({"name": a.name, "backend": a.backend, "device_type": a.device_type})),
        "quantities": rows_json(rows),
    })
}

/// The rows as the `quantities` array of `--json`.
pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "seed": r.seed.as_ref().map(|s| s.value.to_json()),
                    "cpu_f64": r.cpu_f64.to_json(),
                    "gpu_f32": r.gpu_f32.as_ref().map(Tensor::to_json),
                    "max_abs_diff": r.max_abs_diff(),
                    "seed_agrees": r.seed_agrees(),
                })
            })
            .collect(),
    )
}

/// The rows as a plain-text table.
pub fn rows_table(rows: &[Row]) -> String {
    let mut lines = vec![vec![
        "quantity".to_string(),
        "seed".to_string(),
        "cpu_f64".to_string(),
        "gpu_f32".to_string(),
        "|gpu-cpu|".to_string(),
        "seed agrees".to_string(),
    ]];
    for r in rows {
        lines.push(vec![
            r.name.to_string(),
            r.seed.as_ref().map(|s| s.value.format(s.decimals as usize)).unwrap_or_else(|| "-".into()),
            r.cpu_f64.format(8),
            r.gpu_f32.as_ref().map(|g| g.format(8)).unwrap_or_else(|| "-".into()),
            r.max_abs_diff().map(|d| format!("{d:.1e}")).unwrap_or_else(|| "-".into()),
            match r.seed_agrees() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
