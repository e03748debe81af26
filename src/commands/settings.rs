//! From `train`'s flags to the library's builder. Each flag is given to the builder once, and only when
//! it was given on the command line, so that resuming keeps the checkpoint's settings and refuses a
//! flag that differs from them. A flag that does not apply (a setting of another optimizer or schedule,
//! a tolerance without --verify) is an error rather than ignored.

use backprop::checkpoint::Checkpoint;
use backprop::data::{Bundled, Dataset};
use backprop::optim::{OptimConfig, OptimizerKind, Schedule};
use backprop::train::{Network, Trainer, Verify};
use backprop::{Error, Result};

use super::args::TrainArgs;

/// The builder for `args` on `data`, continuing `resumed` when given.
pub fn trainer(args: &TrainArgs, data: Dataset, resumed: Option<Checkpoint>) -> Result<Trainer> {
    let base = resumed.as_ref().and_then(|c| c.training.as_ref()).map(|t| t.optimizer);
    let optimizer = optimizer(args, base)?;
    let schedule = schedule(args)?;
    let verify = verify(args)?;
    let network = Network {
        sizes: args.layers.as_ref().map(|w| w.0.clone()),
        hidden: args.activation,
        output: args.output,
        loss: args.loss,
    };
    let split = args.test_split.unwrap_or(Bundled::from_name(&args.data.data).map_or(0.2, Bundled::test_split));
    let mut t = Trainer::new(data)
        .network(network)
        .epochs(args.epochs)
        .batch_size(args.batch_size)
        .shuffle(!args.no_shuffle)
        .test_split(split)
        .schedule(schedule)
        .max_grad_norm(args.max_grad_norm)
        .verify(verify);
    if let Some(p) = &args.init {
        t = t.init_file(p);
    }
    if let Some(n) = args.normalize {
        t = t.normalization(n);
    }
    if let Some(s) = args.seed {
        t = t.seed(s);
    }
    if let Some(o) = optimizer {
        t = t.optimizer(o);
    }
    if let Some(lr) = args.lr {
        t = t.lr(lr);
    }
    match (resumed, &args.resume) {
        (Some(ck), Some(path)) => t.resume(ck).map_err(|e| Error::Invalid(format!("{}: {e}", path.display()))),
        _ => Ok(t),
    }
}

/// The optimizer the flags describe: `--optimizer` (else the checkpoint's, else Adam) with its settings from
/// the flags, else from the checkpoint when it has the same optimizer, else PyTorch's defaults. `None` when
/// resuming without an optimizer flag: the checkpoint's is kept as it is.
fn optimizer(args: &TrainArgs, base: Option<OptimConfig>) -> Result<Option<OptimConfig>> {
    let flags = [args.momentum, args.weight_decay, args.beta1, args.beta2, args.eps];
    if base.is_some() && args.optimizer.is_none() && flags.iter().all(Option::is_none) {
        return Ok(None);
    }
    let same = |k: &OptimizerKind| base.filter(|b| b.kind.name() == k.name());
    let mut kind = match args.optimizer {
        Some(k) => same(&k).map_or(k, |b| b.kind),
        None => base.map_or(OptimizerKind::adam(), |b| b.kind),
    };
    let whose = if args.optimizer.is_none() && base.is_some() { " (the checkpoint's)" } else { "" };
    let name = kind.name();
    let misplaced = |flag: &str, owner: &str| {
        Err(Error::Invalid(format!("{flag} applies to --optimizer {owner}, not {name}{whose}")))
    };
    match &mut kind {
        OptimizerKind::Momentum { momentum } => *momentum = args.momentum.unwrap_or(*momentum),
        OptimizerKind::Adam { beta1, beta2, eps } => {
            *beta1 = args.beta1.unwrap_or(*beta1);
            *beta2 = args.beta2.unwrap_or(*beta2);
            *eps = args.eps.unwrap_or(*eps);
        }
        OptimizerKind::Sgd => {}
    }
    if args.momentum.is_some() && !matches!(kind, OptimizerKind::Momentum { .. }) {
        return misplaced("--momentum", "momentum");
    }
    let adam_flag = [("--beta1", args.beta1), ("--beta2", args.beta2), ("--eps", args.eps)];
    if let Some((flag, _)) = adam_flag.iter().find(|(_, v)| v.is_some()) {
        if !matches!(kind, OptimizerKind::Adam { .. }) {
            return misplaced(flag, "adam");
        }
    }
    let weight_decay = args.weight_decay.or(base.map(|b| b.weight_decay)).unwrap_or(0.0);
    Ok(Some(OptimConfig::new(kind).with_weight_decay(weight_decay)))
}

/// `--schedule` with its settings; a setting of another schedule is an error.
fn schedule(args: &TrainArgs) -> Result<Schedule> {
    let s = match args.schedule.unwrap_or(Schedule::Constant) {
        Schedule::Step { step_size, gamma } => {
            Schedule::Step { step_size: args.lr_step.unwrap_or(step_size), gamma: args.lr_gamma.unwrap_or(gamma) }
        }
        Schedule::Cosine { min_lr } => Schedule::Cosine { min_lr: args.lr_min.unwrap_or(min_lr) },
        Schedule::Constant => Schedule::Constant,
    };
    let step = matches!(s, Schedule::Step { .. });
    let cosine = matches!(s, Schedule::Cosine { .. });
    for (flag, given, applies, owner) in [
        ("--lr-step", args.lr_step.is_some(), step, "step"),
        ("--lr-gamma", args.lr_gamma.is_some(), step, "step"),
        ("--lr-min", args.lr_min.is_some(), cosine, "cosine"),
    ] {
        if given && !applies {
            return Err(Error::Invalid(format!("{flag} applies to --schedule {owner}, not {}", s.name())));
        }
    }
    Ok(s)
}

/// `--verify` with its tolerances; a tolerance without `--verify` is an error.
fn verify(args: &TrainArgs) -> Result<Option<Verify>> {
    match args.verify {
        Some(every) => {
            Ok(Some(Verify { every, atol: args.verify_atol.unwrap_or(1e-4), rtol: args.verify_rtol.unwrap_or(1e-2) }))
        }
        None if args.verify_atol.is_some() || args.verify_rtol.is_some() => {
            Err(Error::Invalid("--verify-atol and --verify-rtol apply with --verify".into()))
        }
        None => Ok(None),
    }
}
