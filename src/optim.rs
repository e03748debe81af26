//! Optimizers with PyTorch's definitions and defaults, over one flat parameter vector, and learning-rate
//! schedules. The update rules themselves (`rules`) are the reference for the kernels in
//! `shaders/optim.wgsl`, each function named as its kernel.

mod rules;

pub use rules::{
    AdamStep, StepScalars, StepState, adam, clip_coefficient, grad_norm, grad_norm_finish, momentum, optim_prepare,
    sgd, update,
};

use std::str::FromStr;

use crate::error::{Error, Result};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `θ ← θ − lr·g`.
    Sgd,
    /// PyTorch `SGD(momentum=μ)` (dampening 0, not Nesterov): `b ← μ·b + g`, `θ ← θ − lr·b`.
    Momentum { momentum: f64 },
    /// PyTorch `Adam` (not AMSGrad): bias-corrected first and second moments.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Momentum { .. } => "momentum",
            Self::Adam { .. } => "adam",
        }
    }

    /// Adam with PyTorch's defaults: β1 0.9, β2 0.999, ε 1e-8.
    pub fn adam() -> Self {
        Self::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    /// SGD with momentum `momentum` (PyTorch's dampening 0, not Nesterov).
    pub fn momentum(momentum: f64) -> Self {
        Self::Momentum { momentum }
    }

    /// The learning rate used when none is given: 0.1 for SGD, 0.01 with momentum, 0.001 for Adam.
    pub fn default_lr(&self) -> f64 {
        match self {
            Self::Sgd => 0.1,
            Self::Momentum { .. } => 0.01,
            Self::Adam { .. } => 0.001,
        }
    }

    /// PyTorch's defaults for an optimizer given by name (momentum 0.9, which PyTorch leaves to the user);
    /// for names read from text. In code, [`OptimizerKind::adam`], [`OptimizerKind::momentum`] and
    /// [`OptimizerKind::Sgd`] say the same without a string.
    pub fn default_for(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Ok(Self::Sgd),
            "momentum" => Ok(Self::momentum(0.9)),
            "adam" => Ok(Self::adam()),
            _ => Err(Error::Invalid(format!("unknown optimizer '{name}' (expected sgd, momentum or adam)"))),
        }
    }
}

/// An optimizer: its rule plus the coupled L2 weight decay PyTorch's `weight_decay` adds to the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
}

impl OptimConfig {
    pub fn sgd() -> Self {
        Self::new(OptimizerKind::Sgd)
    }

    /// `kind` without weight decay.
    pub fn new(kind: OptimizerKind) -> Self {
        Self { kind, weight_decay: 0.0 }
    }

    /// The same rule with PyTorch's coupled L2 `weight_decay`.
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        Self { weight_decay, ..self }
    }

    /// Checks the hyper-parameters are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("--weight-decay must be a finite number >= 0, got {}", self.weight_decay));
        }
        match self.kind {
            OptimizerKind::Sgd => Ok(()),
            OptimizerKind::Momentum { momentum } if !(0.0..1.0).contains(&momentum) => {
                bad(format!("--momentum must be in [0, 1), got {momentum}"))
            }
            OptimizerKind::Adam { beta1, beta2, eps } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    bad(format!("Adam's betas must be in [0, 1), got {beta1}, {beta2}"))
                } else if !(eps > 0.0 && eps.is_finite()) {
                    bad(format!("--eps must be a finite number > 0, got {eps}"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// As JSON, for checkpoint metadata.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"name": self.kind.name(), "weight_decay": self.weight_decay});
        match self.kind {
            OptimizerKind::Sgd => {}
            OptimizerKind::Momentum { momentum } => v["momentum"] = momentum.into(),
            OptimizerKind::Adam { beta1, beta2, eps } => {
                v["beta1"] = beta1.into();
                v["beta2"] = beta2.into();
                v["eps"] = eps.into();
            }
        }
        v
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let name = v["name"].as_str().ok_or_else(|| Error::Invalid("optimizer has no name".into()))?;
        let num = |k: &str| v[k].as_f64().ok_or_else(|| Error::Invalid(format!("optimizer {name} lacks '{k}'")));
        let kind = match name {
            "sgd" => OptimizerKind::Sgd,
            "momentum" => OptimizerKind::Momentum { momentum: num("momentum")? },
            "adam" => OptimizerKind::Adam { beta1: num("beta1")?, beta2: num("beta2")?, eps: num("eps")? },
            other => return Err(Error::Invalid(format!("unknown optimizer '{other}'"))),
        };
        let cfg = Self { kind, weight_decay: num("weight_decay")? };
        cfg.validate()?;
        Ok(cfg)
    }

    /// How many state vectors of the parameters' length the rule keeps (0, 1 or 2).
    pub fn state_vectors(&self) -> usize {
        match self.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum { .. } => 1,
            OptimizerKind::Adam { .. } => 2,
        }
    }
}

/// The optimizer's state: momentum buffer or Adam's moments (`m`, `v`), and the number of steps taken.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimState {
    /// Momentum buffer, or Adam's first moment; empty for SGD.
    pub m: Vec<f32>,
    /// Adam's second moment; empty otherwise.
    pub v: Vec<f32>,
    /// Steps taken so far.
    pub step: u64,
}

impl OptimState {
    /// The state before the first step, for `n` parameters.
    pub fn new(cfg: &OptimConfig, n: usize) -> Self {
        let k = cfg.state_vectors();
        Self {
            m: if k >= 1 { vec![0.0; n] } else { Vec::new() },
            v: if k >= 2 { vec![0.0; n] } else { Vec::new() },
            step: 0,
        }
    }

    /// Checks that this state fits `cfg` over `n` parameters: a vector for each one the rule keeps, none
    /// for the others. (A backend also checks the step count against [`MAX_STEPS`] when it takes the state.)
    pub fn check(&self, cfg: &OptimConfig, n: usize) -> Result<()> {
        let k = cfg.state_vectors();
        let fits = |len: usize, used: bool| if used { len == n } else { len == 0 };
        if !fits(self.m.len(), k >= 1) || !fits(self.v.len(), k >= 2) {
            return Err(Error::shape(
                format!("{} optimizer state", cfg.kind.name()),
                format!("{k} vector(s) of {n}"),
                format!("m of {}, v of {}", self.m.len(), self.v.len()),
            ));
        }
        Ok(())
    }
}

/// The most optimizer steps a run can take, on either backend: the GPU counts them in 32 bits.
pub const MAX_STEPS: u64 = u32::MAX as u64;

/// Checks that `more` steps after `taken` stay within [`MAX_STEPS`].
pub fn check_steps(taken: u64, more: usize) -> Result<()> {
    match taken.checked_add(more as u64) {
        Some(t) if t <= MAX_STEPS => Ok(()),
        _ => Err(Error::Invalid(format!(
            "the step count would pass {MAX_STEPS} (it is {taken}, with {more} more steps asked for): \
             start a new run from the checkpoint's weights with --init instead of --resume"
        ))),
    }
}

/// A learning-rate schedule over epochs, as PyTorch's `StepLR` and `CosineAnnealingLR` define them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// `lr · gamma^⌊epoch / step_size⌋`.
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// `min_lr + (lr − min_lr)(1 + cos(π·epoch / epochs)) / 2`.
    Cosine {
        min_lr: f64,
    },
}

impl Schedule {
    /// The learning rate for `epoch` (0-based) of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Self::Constant => base,
            Self::Step { step_size, gamma } => {
                base * gamma.powi((epoch / step_size.max(1)).min(i32::MAX as usize) as i32)
            }
            Self::Cosine { min_lr } => {
                let t = epoch as f64 / epochs.max(1) as f64;
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Step { .. } => "step",
            Self::Cosine { .. } => "cosine",
        }
    }
}

impl FromStr for Schedule {
    type Err = Error;
    /// `constant`, `step` (every 10 epochs × 0.1), `cosine` (to 0); `--lr-step`, `--lr-gamma` refine them.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "constant" => Ok(Self::Constant),
            "step" => Ok(Self::Step { step_size: 10, gamma: 0.1 }),
            "cosine" => Ok(Self::Cosine { min_lr: 0.0 }),
            _ => Err(Error::Invalid(format!("unknown schedule '{s}' (expected constant, step or cosine)"))),
        }
    }
}
