//! The playground's training session: the library's prepared run (`Trainer::prepare`) trained epoch by
//! epoch on the engine through `train::epoch_steps`, as `backprop train` runs it (the same row orders, 32
//! steps a call, one read-back of the loss an epoch, awaited); the held-out evaluation (`train::score`);
//! the network's output over the plot (decision boundary or fitted curve); and one step checked against
//! the f64 reference (`train::check_step`).

use std::sync::Arc;

use backprop::data::{Dataset, Normalizer};
use backprop::gpu::GpuContext;
use backprop::train::{self, Run, Silent, StepRecord, Verify, VerifyReport};
use backprop::{Error, Result};
use ndarray::{Array2, Axis};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::setup::Setup;

/// `--verify`'s default tolerances: atol + rtol·|ref|.
pub const VERIFY: Verify = Verify { every: 1, atol: 1e-4, rtol: 1e-2 };

/// One training run on the page.
pub struct Playground {
    pub setup: Setup,
    run: Run,
    engine: Engine,
    /// Epochs trained so far.
    epoch: usize,
}

/// How the model does on the held-out rows (the training rows for xor, which has none).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub held_out: bool,
}

impl Playground {
    /// The prepared run (data, split, normalisation, seeded starting weights) on its engine, the GPU when
    /// there is one, with the run's optimizer and the training rows resident.
    pub fn new(setup: Setup, gpu: Option<&Arc<GpuContext>>) -> Result<Playground> {
        let run = setup.trainer()?.prepare()?;
        let mut engine = Engine::new(gpu, run.model.spec.clone(), &run.model.params)?;
        run.configure(engine.backend())?;
        engine.backend().set_data(run.train_set.x.view(), run.train_set.y.view())?;
        Ok(Playground { setup, run, engine, epoch: 0 })
    }

    pub fn epoch(&self) -> usize {
        self.epoch
    }

    pub fn done(&self) -> bool {
        self.epoch >= self.run.config.epochs
    }

    pub fn backend_label(&self) -> &'static str {
        self.engine.label()
    }

    fn normalizer(&self) -> Option<&Normalizer> {
        self.run.model.normalizer.as_ref()
    }

    /// One epoch; returns its mean training loss (read back once, after the epoch's last step).
    pub async fn train_epoch(&mut self) -> Result<f64> {
        let n = self.run.train_set.len();
        train::epoch_steps(self.engine.backend(), n, &self.run.config, self.epoch, &mut Silent)?;
        let (sum, diverged) = self.engine.take_epoch_stats().await?;
        self.epoch += 1;
        if let Some(step) = diverged {
            return Err(Error::Diverged { step, epoch: self.epoch });
        }
        Ok(sum / n as f64)
    }

    /// Loss (as `backprop train` reports it) and accuracy (classification) on the held-out rows.
    pub async fn evaluate(&mut self) -> Result<Evaluation> {
        let set = self.run.test_set.as_ref().unwrap_or(&self.run.train_set);
        let out = self.engine.predict(set.x.view()).await?;
        let e = train::score(&self.run.model.spec, set, out);
        Ok(Evaluation { loss: e.loss, accuracy: e.accuracy, held_out: self.run.test_set.is_some() })
    }

    /// The inputs of `ds` as they were before normalisation (for drawing).
    fn raw(&self, ds: &Dataset) -> Array2<f32> {
        let mut x = ds.x.clone();
        if let Some(n) = self.normalizer() {
            for mut row in x.axis_iter_mut(Axis(0)) {
                row.iter_mut().zip(&n.offset).zip(&n.scale).for_each(|((v, o), s)| *v = *v / s + o);
            }
        }
        x
    }

    /// The points to draw: raw inputs, and the class or target of each, training and held-out rows.
    pub fn points_json(&self) -> Value {
        let rows = |ds: &Dataset| -> Vec<Value> {
            let label = |i: usize| ds.labels.as_ref().map_or(json!(ds.y[[i, 0]]), |l| json!(l[i]));
            self.raw(ds).outer_iter().enumerate().map(|(i, r)| json!([r.to_vec(), label(i)])).collect()
        };
        let test = self.run.test_set.as_ref().map(rows);
        json!({ "features": self.run.model.spec.input_width(), "train": rows(&self.run.train_set), "test": test })
    }

    /// The network's output over the plot, in the raw coordinates of the data: for 2 inputs an `n`×`n` grid
    /// (rows from the top, the probability of class 1, or the single output), for 1 input `n` points along
    /// the line (the fitted curve). Inputs go through the same normalisation as the training rows.
    pub async fn field(&mut self, n: usize) -> Result<Value> {
        let n = n.clamp(2, 256);
        let raw = self.raw(&self.run.train_set);
        let range = |c: usize| {
            let col = raw.column(c);
            let (lo, hi) = col.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let pad = 0.1 * (hi - lo).max(1e-3);
            (lo - pad, hi + pad)
        };
        let at = |(lo, hi): (f32, f32), i: usize| lo + (hi - lo) * i as f32 / (n - 1) as f32;
        let (mut grid, xr, yr) = match self.run.model.spec.input_width() {
            1 => (Array2::from_shape_fn((n, 1), |(i, _)| at(range(0), i)), range(0), None),
            2 => {
                let (xr, yr) = (range(0), range(1));
                let g = Array2::from_shape_fn(
                    (n * n, 2),
                    |(k, c)| if c == 0 { at(xr, k % n) } else { at(yr, n - 1 - k / n) },
                );
                (g, xr, Some(yr))
            }
            w => return Err(Error::Invalid(format!("a plot needs 1 or 2 inputs, this network has {w}"))),
        };
        if let Some(norm) = self.normalizer() {
            norm.apply(&mut grid)?;
        }
        let out = self.engine.predict(grid.view()).await?;
        let column = if out.ncols() == 2 { 1 } else { 0 };
        let values: Vec<f32> = out.index_axis(Axis(1), column).to_vec();
        Ok(json!({ "n": n, "x": [xr.0, xr.1], "y": yr.map(|r| [r.0, r.1]), "values": values }))
    }

    /// `--verify` on the page: the next batch of this epoch's order trained as one step with every tensor
    /// read back, and the same step on the f64 reference from the same parameters and optimizer state.
    /// The step counts as training (it updates the model) but its loss stays out of the epoch's mean.
    pub async fn verify(&mut self) -> Result<VerifyReport> {
        let cfg = &self.run.config;
        let lr = cfg.schedule.lr(cfg.lr, self.epoch, cfg.epochs) as f32;
        let order = train::epoch_order(self.run.train_set.len(), cfg.shuffle, cfg.seed, self.epoch);
        let rows = &order[..cfg.batch_size.min(order.len())];
        let set = &self.run.train_set;
        let (x, y) = (set.x.select(Axis(0), rows), set.y.select(Axis(0), rows));
        let (params_before, state_before) = (self.engine.params().await?, self.engine.optimizer_state().await?);
        let trace = self.engine.traced_step(x.view(), y.view(), lr).await?;
        let record = StepRecord {
            spec: self.run.model.spec.clone(),
            optimizer: self.engine.backend().optimizer(),
            grad_clip: self.engine.backend().grad_clip(),
            params_before,
            state_before,
            trace,
            params_after: self.engine.params().await?,
        };
        self.engine.take_epoch_stats().await?;
        train::check_step(&record, x.view(), y.view(), lr, &VERIFY)
    }
}

/// A verify report as JSON: the step, whether it passed, and the largest errors of every tensor.
pub fn verify_json(r: &VerifyReport) -> Value {
    let tensors: Vec<Value> = r
        .tensors
        .iter()
        .map(|t| json!({"name": t.name, "max_abs": t.max_abs, "max_rel": t.max_rel, "worst_ratio": t.worst_ratio}))
        .collect();
    json!({ "step": r.step, "passed": r.passed(), "atol": VERIFY.atol, "rtol": VERIFY.rtol, "tensors": tensors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backprop::gpu::wait::ready_now;

    #[test]
    fn each_data_sets_defaults_train_it_well() {
        for name in crate::setup::DATASETS {
            let mut pg = Playground::new(Setup::defaults(name).unwrap(), None).unwrap();
            let mut last = f64::NAN;
            while !pg.done() {
                last = ready_now("train_epoch", pg.train_epoch()).unwrap();
            }
            let e = ready_now("evaluate", pg.evaluate()).unwrap();
            match name {
                "spirals" => assert!(e.accuracy.unwrap() >= 0.95, "{name}: {e:?}"),
                "digits" => assert!(e.accuracy.unwrap() >= 0.9, "{name}: {e:?}"),
                _ => assert!(e.accuracy.is_none() && last < 1e-3 && e.loss < 1e-3, "{name}: {last} {e:?}"),
            }
            assert_eq!(e.held_out, name != "xor");
        }
    }

    #[test]
    fn the_plot_covers_the_raw_data_and_a_verified_step_passes() {
        let mut pg = Playground::new(Setup::defaults("spirals").unwrap(), None).unwrap();
        let raw = backprop::data::spirals(400, 42).unwrap();
        let points = pg.points_json();
        let first = points["train"][0][0][0].as_f64().unwrap() as f32;
        assert!(raw.x.column(0).iter().any(|&v| (v - first).abs() < 1e-5), "points are drawn in raw coordinates");
        let f = ready_now("field", pg.field(8)).unwrap();
        assert_eq!(f["values"].as_array().unwrap().len(), 64);
        let (x, y) = (f["x"].as_array().unwrap(), f["y"].as_array().unwrap());
        assert!(x[0].as_f64().unwrap() < -0.9 && x[1].as_f64().unwrap() > 0.9 && y[0].as_f64() < y[1].as_f64());
        let report = ready_now("verify", pg.verify()).unwrap();
        assert!(report.passed() && report.step == 1, "{report:?}");
        assert_eq!(pg.epoch(), 0);
        assert_eq!(verify_json(&report)["tensors"].as_array().unwrap().len(), 3 * 3 + 3);

        let mut sine = Playground::new(Setup::defaults("sine").unwrap(), None).unwrap();
        let f = ready_now("field", sine.field(200)).unwrap();
        assert!(f["y"].is_null() && f["values"].as_array().unwrap().len() == 200);
        let mut digits = Playground::new(Setup::defaults("digits").unwrap(), None).unwrap();
        assert!(ready_now("field", digits.field(8)).unwrap_err().to_string().contains("1 or 2 inputs"));
    }
}
