//! One builder from a network description and a data set to a trained model, with the command line's
//! defaults (normalisation fitted on the training rows, a seeded split, PyTorch's optimizer defaults),
//! each setting given once. `backprop train` runs through it too.
//!
//! Resuming keeps the checkpoint's network, normalisation, optimizer and seed; a setting given beside
//! [`Trainer::resume`] that differs from the checkpoint's is an error, never half of each.

use super::run::{Device, Run, Trained};
use super::{TrainConfig, Verify, check_data, widen_classes};
use crate::backend::check_clip;
use crate::checkpoint::{Checkpoint, Model, TrainingState};
use crate::data::{self, Dataset, Normalization, Normalizer, Task};
use crate::error::{Error, Result};
use crate::model::{Activation, Loss, MlpSpec, Output, Params};
use crate::optim::{OptimConfig, OptimizerKind, Schedule};

/// The network to build for a data set: every setting left `None` takes the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Network {
    /// Every width, input first (default: the data's features, one hidden layer of 64, its classes or targets).
    pub sizes: Option<Vec<usize>>,
    /// The hidden layers' activation (default relu).
    pub hidden: Option<Activation>,
    /// The output layer (default softmax for classes, identity for regression targets).
    pub output: Option<Output>,
    /// The loss (default cross-entropy after softmax, MSE otherwise).
    pub loss: Option<Loss>,
}

impl Network {
    /// The network for `data`, its unset settings defaulted.
    pub fn spec_for(&self, data: &Dataset) -> Result<MlpSpec> {
        let sizes = self.sizes.clone().unwrap_or_else(|| vec![data.features(), 64, data.target_width()]);
        let output = self.output.unwrap_or(match data.task {
            Task::Classification { .. } => Output::Softmax,
            Task::Regression { .. } => Output::Identity,
        });
        let loss = self.loss.unwrap_or(if output == Output::Softmax { Loss::CrossEntropy } else { Loss::Mse });
        MlpSpec::with_output(sizes, self.hidden.unwrap_or(Activation::Relu), output, loss)
    }
}

/// Starting weights given instead of the seeded initialisation.
#[derive(Clone, Debug)]
enum Init {
    Params(Params<f32>),
    /// A safetensors file read by `checkpoint::load_init` once the network is known (native only).
    #[cfg(not(target_arch = "wasm32"))]
    File(std::path::PathBuf),
}

/// The builder: `Trainer::new(data)`, settings, then [`Trainer::fit`] (or [`Trainer::prepare`] to choose
/// the backend and watch the epochs).
#[derive(Clone, Debug)]
pub struct Trainer {
    data: Dataset,
    network: Network,
    init: Option<Init>,
    normalization: Option<Normalization>,
    optimizer: Option<OptimConfig>,
    lr: Option<f64>,
    schedule: Schedule,
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
    seed: Option<u64>,
    test_split: f64,
    max_grad_norm: Option<f32>,
    verify: Option<Verify>,
    resume: Option<(Model, TrainingState)>,
}

/// The seed when none is given.
pub const DEFAULT_SEED: u64 = 42;

impl Trainer {
    /// Training on `data` with the defaults: the [`Network`] defaults, standard normalisation, Adam at lr
    /// 0.001, 30 epochs of batches of 32 in a seeded shuffle, 20% held out, seed 42.
    pub fn new(data: Dataset) -> Self {
        Trainer {
            data,
            network: Network::default(),
            init: None,
            normalization: None,
            optimizer: None,
            lr: None,
            schedule: Schedule::Constant,
            epochs: 30,
            batch_size: 32,
            shuffle: true,
            seed: None,
            test_split: 0.2,
            max_grad_norm: None,
            verify: None,
            resume: None,
        }
    }

    /// The whole network description at once.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }
    /// Every width, input first.
    pub fn layers(mut self, sizes: impl Into<Vec<usize>>) -> Self {
        self.network.sizes = Some(sizes.into());
        self
    }
    pub fn activation(mut self, hidden: Activation) -> Self {
        self.network.hidden = Some(hidden);
        self
    }
    pub fn output(mut self, output: Output) -> Self {
        self.network.output = Some(output);
        self
    }
    pub fn loss(mut self, loss: Loss) -> Self {
        self.network.loss = Some(loss);
        self
    }
    /// Starting weights instead of the seeded initialisation.
    pub fn init(mut self, params: Params<f32>) -> Self {
        self.init = Some(Init::Params(params));
        self
    }
    /// Starting weights from a safetensors file in `nn.Linear` layout (PyTorch's `save_file(state_dict)`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn init_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.init = Some(Init::File(path.into()));
        self
    }
    /// How the features are normalised (fitted on the training rows).
    pub fn normalization(mut self, kind: Normalization) -> Self {
        self.normalization = Some(kind);
        self
    }
    pub fn optimizer(mut self, optimizer: OptimConfig) -> Self {
        self.optimizer = Some(optimizer);
        self
    }
    /// The base learning rate (default: the optimizer's, [`OptimizerKind::default_lr`]).
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = Some(lr);
        self
    }
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }
    /// The epoch to train up to (a resumed run counts the checkpoint's epochs).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// A seeded shuffle every epoch (default), or the rows in order.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// The seed of the weights, the split and the shuffles.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The fraction of rows held out (0 keeps every row for training).
    pub fn test_split(mut self, fraction: f64) -> Self {
        self.test_split = fraction;
        self
    }
    /// Clip the gradient's global L2 norm before every update.
    pub fn max_grad_norm(mut self, max_norm: Option<f32>) -> Self {
        self.max_grad_norm = max_norm;
        self
    }
    /// Check steps against the f64 reference.
    pub fn verify(mut self, verify: Option<Verify>) -> Self {
        self.verify = verify;
        self
    }

    /// Continues the run a checkpoint holds: its network, parameters, normalisation, optimizer and its
    /// state, seed and epoch. Errors if it holds no training state.
    pub fn resume(mut self, checkpoint: Checkpoint) -> Result<Self> {
        let state = checkpoint.training.ok_or_else(|| {
            Error::Invalid("holds no optimizer state to resume from (a model saved without it)".into())
        })?;
        self.resume = Some((checkpoint.model, state));
        Ok(self)
    }

    /// Checks every setting, builds the network, splits and normalises the data.
    pub fn prepare(self) -> Result<Run> {
        if let Some((model, state)) = &self.resume {
            self.check_resume(model, state)?;
        }
        let Trainer { mut data, network, init, normalization, optimizer, lr, resume, .. } = self;
        let (spec, params, normalizer, optimizer, resumed, seed) = match resume {
            Some((m, t)) => (m.spec, Some(m.params), m.normalizer, t.optimizer, Some((t.epoch, t.state)), t.seed),
            None => {
                let spec = network.spec_for(&data)?;
                let init = match init {
                    #[cfg(not(target_arch = "wasm32"))]
                    Some(Init::File(path)) => Some(crate::checkpoint::load_init(&path, &spec)?),
                    Some(Init::Params(p)) => Some(p),
                    None => None,
                };
                let optimizer = optimizer.unwrap_or(OptimConfig::new(OptimizerKind::adam()));
                (spec, init, None, optimizer, None, self.seed.unwrap_or(DEFAULT_SEED))
            }
        };
        optimizer.validate()?;
        check_clip(self.max_grad_norm)?;
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: lr.unwrap_or(optimizer.kind.default_lr()),
            schedule: self.schedule,
            shuffle: self.shuffle,
            seed,
            verify: self.verify,
        };
        config.validate()?;
        let start_epoch = resumed.as_ref().map_or(0, |r| r.0);
        if start_epoch >= config.epochs {
            return Err(Error::Invalid(format!(
                "the checkpoint has already trained {start_epoch} epochs; ask for more with --epochs"
            )));
        }
        // The labels are judged by the classes they imply, before a wider output widens them.
        let notes = label_notes(&data)?;
        widen_classes(&mut data, spec.output_width());
        check_data(&spec, &data)?;
        let params = match params {
            Some(p) => {
                p.check(&spec)?;
                p
            }
            None => Params::init(&spec, seed),
        };
        let (mut train_set, mut test_set) = data::split(&data, self.test_split, seed)?;
        drop(data); // the split holds the rows now
        let normalizer = normalizer
            .unwrap_or_else(|| Normalizer::fit(normalization.unwrap_or(Normalization::Standard), &train_set.x));
        normalizer.apply(&mut train_set.x)?;
        if let Some(t) = test_set.as_mut() {
            normalizer.apply(&mut t.x)?;
        }
        let model = Model { spec, params, normalizer: Some(normalizer), task: Some(train_set.task) };
        let state = resumed.map(|r| r.1);
        Ok(Run { model, train_set, test_set, config, optimizer, state, start_epoch, clip: self.max_grad_norm, notes })
    }

    /// [`Trainer::prepare`], then trains on `device`.
    pub fn fit(self, device: Device) -> Result<Trained> {
        self.prepare()?.fit(device)
    }

    /// Refuses a setting that differs from the checkpoint it resumes.
    fn check_resume(&self, model: &Model, state: &TrainingState) -> Result<()> {
        let conflict = |what: &str, flag: &str, given: String, theirs: String| {
            Err(Error::Invalid(format!(
                "{flag} {given} differs from the checkpoint's {what} {theirs}; when resuming, leave {flag} out \
                 (the checkpoint's is kept) or give the same"
            )))
        };
        let spec = &model.spec;
        let join = |s: &[usize]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",");
        if let Some(sizes) = self.network.sizes.as_deref().filter(|s| *s != spec.sizes()) {
            return conflict("layers", "--layers", join(sizes), join(spec.sizes()));
        }
        let hidden = spec.activations().first().filter(|_| spec.layers() > 1);
        if let (Some(a), Some(b)) = (self.network.hidden, hidden.copied()) {
            if a != b {
                return conflict("activation", "--activation", a.name().into(), b.name().into());
            }
        }
        if let Some(o) = self.network.output.filter(|&o| o != spec.output()) {
            return conflict("output", "--output", o.name().into(), spec.output().name().into());
        }
        if let Some(l) = self.network.loss.filter(|&l| l != spec.loss()) {
            return conflict("loss", "--loss", l.name().into(), spec.loss().name().into());
        }
        if self.init.is_some() {
            return Err(Error::Invalid("--init and --resume both give the starting weights: give one".into()));
        }
        let theirs = model.normalizer.as_ref().map_or(Normalization::None, |n| n.kind);
        if let Some(n) = self.normalization.filter(|&n| n != theirs) {
            return conflict("normalisation", "--normalize", n.name().into(), theirs.name().into());
        }
        if let Some(s) = self.seed.filter(|&s| s != state.seed) {
            return conflict("seed", "--seed", s.to_string(), state.seed.to_string());
        }
        match self.optimizer {
            Some(o) if o != state.optimizer => {
                let (what, flag, given, theirs) = optimizer_difference(&o, &state.optimizer);
                conflict(what, flag, given, theirs)
            }
            _ => Ok(()),
        }
    }
}

/// The first setting in which two optimizers differ: (its name, its flag, `a`'s value, `b`'s value).
fn optimizer_difference(a: &OptimConfig, b: &OptimConfig) -> (&'static str, &'static str, String, String) {
    use OptimizerKind::{Adam, Momentum};
    let pair = |name, flag, x: f64, y: f64| (name, flag, x.to_string(), y.to_string());
    match (a.kind, b.kind) {
        (x, y) if x.name() != y.name() => ("optimizer", "--optimizer", x.name().into(), y.name().into()),
        (Momentum { momentum: x }, Momentum { momentum: y }) if x != y => pair("momentum", "--momentum", x, y),
        (Adam { beta1: x, .. }, Adam { beta1: y, .. }) if x != y => pair("beta1", "--beta1", x, y),
        (Adam { beta2: x, .. }, Adam { beta2: y, .. }) if x != y => pair("beta2", "--beta2", x, y),
        (Adam { eps: x, .. }, Adam { eps: y, .. }) if x != y => pair("eps", "--eps", x, y),
        _ => pair("weight decay", "--weight-decay", a.weight_decay, b.weight_decay),
    }
}

/// Refuses training data with a single class; notes labels that leave most classes without a row.
fn label_notes(data: &Dataset) -> Result<Vec<String>> {
    let (Some(labels), Task::Classification { classes }) = (&data.labels, data.task) else { return Ok(vec![]) };
    let mut seen = vec![false; classes];
    for &l in labels {
        if let Some(s) = seen.get_mut(l) {
            *s = true;
        }
    }
    let used = seen.iter().filter(|&&s| s).count();
    match (used, labels.first()) {
        (1, Some(l)) => Err(Error::Invalid(format!(
            "{}: every row has label {l}; a classifier needs at least two classes",
            data.name
        ))),
        _ if used * 2 < classes => Ok(vec![format!(
            "{}: the labels use {used} of {classes} classes (0..={}): the output layer gets a unit for every class \
             up to the largest label, so is a label wrong?",
            data.name,
            classes - 1
        )]),
        _ => Ok(vec![]),
    }
}
