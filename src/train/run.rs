//! A prepared run and its result: the network with its starting parameters, the normalised split and the
//! settings ([`Run`], from [`super::Trainer::prepare`]), trained on a backend into a [`Trained`] model.

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};

use super::{Evaluation, Observer, Silent, TrainConfig, check_data, evaluate, predict, widen_classes};
#[cfg(not(target_arch = "wasm32"))]
use crate::CpuBackend;
use crate::backend::Backend;
use crate::checkpoint::{Checkpoint, Model, TrainingState};
use crate::data::Dataset;
#[cfg(not(target_arch = "wasm32"))]
use crate::distributed::job;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuMlp};
use crate::model::{MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};
use crate::report::EpochMetrics;

/// Where a run trains.
#[derive(Clone)]
pub enum Device {
    /// The CPU backend (`CpuBackend`; native only).
    #[cfg(not(target_arch = "wasm32"))]
    Cpu,
    /// The GPU backend ([`GpuMlp`]) on this device.
    Gpu(Arc<GpuContext>),
}

impl Device {
    /// A backend here for `spec`, starting from `params`.
    pub fn backend(&self, spec: MlpSpec, params: &Params<f32>) -> Result<Box<dyn Backend>> {
        Ok(match self {
            #[cfg(not(target_arch = "wasm32"))]
            Device::Cpu => Box::new(CpuBackend::new(spec, params.clone())?),
            Device::Gpu(ctx) => Box::new(GpuMlp::new(ctx.clone(), spec, params)?),
        })
    }
}

/// A run ready to train: the network and its starting parameters, the normalised split, the settings.
#[derive(Clone, Debug)]
pub struct Run {
    /// The network, its starting parameters, the fitted normalisation and the task.
    pub model: Model,
    /// The training rows, normalised.
    pub train_set: Dataset,
    /// The held-out rows, normalised (none with a test split of 0).
    pub test_set: Option<Dataset>,
    pub config: TrainConfig,
    pub optimizer: OptimConfig,
    /// The optimizer state to continue from, when resuming.
    pub state: Option<OptimState>,
    /// Epochs already trained (the checkpoint's, when resuming).
    pub start_epoch: usize,
    /// `--max-grad-norm`.
    pub clip: Option<f32>,
    /// Warnings about the data (labels that leave most classes without a row).
    pub notes: Vec<String>,
}

impl Run {
    /// A backend on `device` holding the starting parameters. In a process that `mpirun` or `srun` started
    /// as one of several ranks (`distributed::job`, native only), this rank's part of a data-parallel backend.
    pub fn backend(&self, device: &Device) -> Result<Box<dyn Backend>> {
        let (spec, params) = (self.model.spec.clone(), &self.model.params);
        #[cfg(not(target_arch = "wasm32"))]
        return match device {
            Device::Cpu => job::data_parallel(CpuBackend::new(spec, params.clone())?),
            Device::Gpu(ctx) => job::data_parallel(GpuMlp::new(ctx.clone(), spec, params)?),
        };
        #[cfg(target_arch = "wasm32")]
        device.backend(spec, params)
    }

    /// Gives `backend` the optimizer (and its state when resuming) and the clipping.
    pub fn configure(&self, backend: &mut dyn Backend) -> Result<()> {
        backend.set_optimizer(self.optimizer)?;
        backend.set_grad_clip(self.clip)?;
        if let Some(s) = &self.state {
            backend.set_optimizer_state(s)?;
        }
        Ok(())
    }

    /// [`Run::configure`], then trains, telling `observer` about every batch and epoch. Returns one row of
    /// metrics per epoch trained.
    pub fn train(&self, backend: &mut dyn Backend, observer: &mut dyn Observer) -> Result<Vec<EpochMetrics>> {
        self.configure(backend)?;
        super::train(backend, &self.train_set, self.test_set.as_ref(), &self.config, self.start_epoch, observer)
    }

    /// Where training stands in `backend` after `epoch` epochs, as a checkpoint.
    pub fn checkpoint(&self, backend: &mut dyn Backend, epoch: usize) -> Result<Checkpoint> {
        let model = Model { params: backend.params()?, ..self.model.clone() };
        let state = backend.optimizer_state()?;
        let training = TrainingState { optimizer: backend.optimizer(), state, epoch, seed: self.config.seed };
        Ok(Checkpoint { model, training: Some(training) })
    }

    /// Trains on `device` with no observer.
    pub fn fit(self, device: Device) -> Result<Trained> {
        let mut backend = self.backend(&device)?;
        let history = self.train(backend.as_mut(), &mut Silent)?;
        let checkpoint = self.checkpoint(backend.as_mut(), self.config.epochs)?;
        Ok(Trained { checkpoint, history, backend })
    }
}

/// A trained model, still on its backend.
pub struct Trained {
    /// The model and where training stands, ready for [`crate::checkpoint::save`].
    pub checkpoint: Checkpoint,
    /// One row per epoch trained.
    pub history: Vec<EpochMetrics>,
    backend: Box<dyn Backend>,
}

impl Trained {
    /// The trained network, parameters and normalisation.
    pub fn model(&self) -> &Model {
        &self.checkpoint.model
    }

    /// Loss, accuracy and confusion matrix on raw (not yet normalised) data, as `backprop eval` scores it.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        let mut data = data.clone();
        prepare_inputs(&self.checkpoint.model, &mut data)?;
        evaluate(self.backend.as_mut(), &data, 256)
    }

    /// The network's outputs for raw (not yet normalised) features (N, F).
    pub fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let mut x = x.to_owned();
        if let Some(n) = &self.checkpoint.model.normalizer {
            n.apply(&mut x)?;
        }
        predict(self.backend.as_mut(), x.view(), 256)
    }
}

/// Makes a raw data set ready for `model`: one-hot rows as wide as its output, widths checked, features
/// normalised as in training.
pub fn prepare_inputs(model: &Model, data: &mut Dataset) -> Result<()> {
    widen_classes(data, model.spec.output_width());
    check_data(&model.spec, data)?;
    match &model.normalizer {
        Some(n) => n.apply(&mut data.x),
        None => Ok(()),
    }
}
