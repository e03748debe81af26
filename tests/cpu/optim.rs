//! Optimizer configuration on the CPU: PyTorch's bias corrections, the learning-rate schedules, the
//! hyper-parameter checks and the JSON a checkpoint stores. (The update rules against numbers worked out
//! by hand, on both backends, are in the GPU suite, `tests/gpu/optimizers.rs`.)

use backprop::optim::{OptimConfig, OptimizerKind, Schedule, StepScalars};
use backprop::{Activation, Backend, CpuBackend, Loss, MlpSpec, Params};

const ADAM: OptimizerKind = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const MOMENTUM: OptimizerKind = OptimizerKind::Momentum { momentum: 0.9 };

#[test]
fn step_scalars_are_pytorch_bias_corrections() {
    let cfg = OptimConfig { kind: ADAM, weight_decay: 0.0 };
    let s = StepScalars::new(&cfg, 0.01, 1);
    assert!((s.bias_correction1 - 0.1).abs() < 1e-15);
    assert!((s.bias_correction2_sqrt - 0.001f64.sqrt()).abs() < 1e-15);
    let s = StepScalars::new(&cfg, 0.01, 3);
    assert!((s.bias_correction1 - 0.271).abs() < 1e-15);
    assert!((s.bias_correction2_sqrt - 0.002997001f64.sqrt()).abs() < 1e-15);
    assert_eq!(s.lr, 0.01);
    // Far along, the corrections go to 1 (and a huge step count does not overflow).
    let s = StepScalars::new(&cfg, 0.01, u64::MAX);
    assert_eq!((s.bias_correction1, s.bias_correction2_sqrt), (1.0, 1.0));
    for cfg in [OptimConfig::sgd(), OptimConfig { kind: MOMENTUM, weight_decay: 0.0 }] {
        let s = StepScalars::new(&cfg, 0.5, 7);
        assert_eq!((s.lr, s.bias_correction1, s.bias_correction2_sqrt), (0.5, 1.0, 1.0));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------------------

fn rel_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
}

#[test]
fn step_schedule() {
    let s = Schedule::Step { step_size: 10, gamma: 0.1 };
    for e in 0..30 {
        let want = if e < 10 {
            0.1
        } else if e < 20 {
            0.01
        } else {
            0.001
        };
        assert!(rel_eq(s.lr(0.1, e, 30), want), "epoch {e}: {} vs {want}", s.lr(0.1, e, 30));
    }
    // Past the last epoch the formula simply continues.
    assert!(rel_eq(s.lr(0.1, 30, 30), 0.0001));
    assert!(rel_eq(s.lr(0.1, 39, 30), 0.0001));
    // step_size 1 decays every epoch; step_size 0 is treated as 1 (no division by zero).
    let every = Schedule::Step { step_size: 1, gamma: 0.5 };
    assert!(rel_eq(every.lr(1.0, 3, 10), 0.125));
    assert!(rel_eq(Schedule::Step { step_size: 0, gamma: 0.5 }.lr(1.0, 3, 10), 0.125));
    assert_eq!("step".parse::<Schedule>().unwrap(), s, "the named step schedule is every 10 epochs × 0.1");
}

#[test]
fn cosine_schedule() {
    let (lr, min, epochs) = (0.1, 0.001, 40);
    let s = Schedule::Cosine { min_lr: min };
    assert!(rel_eq(s.lr(lr, 0, epochs), lr), "starts at lr: {}", s.lr(lr, 0, epochs));
    assert!(rel_eq(s.lr(lr, epochs / 2, epochs), (lr + min) / 2.0), "half way: {}", s.lr(lr, 20, epochs));
    assert!((s.lr(lr, epochs, epochs) - min).abs() < 1e-15, "ends at min: {}", s.lr(lr, epochs, epochs));
    let last = s.lr(lr, epochs - 1, epochs);
    assert!(last > min && last - min < (lr - min) * 0.01, "the last epoch is close to min: {last}");
    // Monotone decreasing, always within [min, lr], symmetric around the middle.
    let all: Vec<f64> = (0..=epochs).map(|e| s.lr(lr, e, epochs)).collect();
    assert!(all.windows(2).all(|w| w[1] < w[0]), "{all:?}");
    assert!(all.iter().all(|&v| (min..=lr).contains(&v)));
    for e in 0..=epochs {
        let mirror = lr + min - all[epochs - e];
        assert!((all[e] - mirror).abs() < 1e-15, "cosine is symmetric: epoch {e}");
    }
    // A quarter of the way: min + (lr − min)(1 + cos(π/4))/2.
    let q = min + (lr - min) * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
    assert!(rel_eq(s.lr(lr, 10, epochs), q));
    // The named cosine schedule goes to 0.
    assert_eq!("cosine".parse::<Schedule>().unwrap(), Schedule::Cosine { min_lr: 0.0 });
    assert!(rel_eq("cosine".parse::<Schedule>().unwrap().lr(0.2, 5, 10), 0.1));
    // epochs = 0 does not divide by zero.
    assert!(s.lr(lr, 0, 0).is_finite());
}

#[test]
fn constant_schedule_and_names() {
    let s = Schedule::Constant;
    for e in [0, 1, 9, 10, 99, 1000] {
        assert_eq!(s.lr(0.05, e, 100), 0.05);
    }
    for (name, want) in [
        ("constant", Schedule::Constant),
        ("step", Schedule::Step { step_size: 10, gamma: 0.1 }),
        ("cosine", Schedule::Cosine { min_lr: 0.0 }),
        ("Cosine", Schedule::Cosine { min_lr: 0.0 }),
        ("CONSTANT", Schedule::Constant),
    ] {
        let got: Schedule = name.parse().unwrap();
        assert_eq!(got, want, "{name}");
        assert_eq!(got.name(), name.to_ascii_lowercase());
    }
    for bad in ["", "linear", "exp", "cosine ", "steps"] {
        let e = bad.parse::<Schedule>().unwrap_err().to_string();
        assert!(e.contains("unknown schedule") && e.contains(&format!("'{bad}'")), "{bad:?}: {e}");
        assert!(e.contains("constant") && e.contains("step") && e.contains("cosine"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

fn adam_cfg(beta1: f64, beta2: f64, eps: f64, wd: f64) -> OptimConfig {
    OptimConfig { kind: OptimizerKind::Adam { beta1, beta2, eps }, weight_decay: wd }
}

#[test]
fn validate_rejects_out_of_range_hyper_parameters() {
    let ok = [
        OptimConfig::sgd(),
        OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.5 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.0 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.99 }, weight_decay: 1e-4 },
        adam_cfg(0.9, 0.999, 1e-8, 0.0),
        adam_cfg(0.0, 0.0, 1e-12, 0.0),
    ];
    for cfg in ok {
        cfg.validate().unwrap_or_else(|e| panic!("{cfg:?} should be valid: {e}"));
    }
    let bad: Vec<(OptimConfig, &str)> = vec![
        (adam_cfg(1.0, 0.999, 1e-8, 0.0), "betas"),
        (adam_cfg(-0.1, 0.999, 1e-8, 0.0), "betas"),
        (adam_cfg(0.9, 1.0, 1e-8, 0.0), "betas"),
        (adam_cfg(0.9, 1.5, 1e-8, 0.0), "betas"),
        (adam_cfg(f64::NAN, 0.999, 1e-8, 0.0), "betas"),
        (adam_cfg(0.9, f64::NAN, 1e-8, 0.0), "betas"),
        (adam_cfg(0.9, 0.999, 0.0, 0.0), "eps"),
        (adam_cfg(0.9, 0.999, -1e-8, 0.0), "eps"),
        (adam_cfg(0.9, 0.999, f64::NAN, 0.0), "eps"),
        (adam_cfg(0.9, 0.999, f64::INFINITY, 0.0), "eps"),
        (adam_cfg(0.9, 0.999, 1e-8, -0.01), "weight-decay"),
        (OptimConfig { kind: OptimizerKind::Sgd, weight_decay: -1e-9 }, "weight-decay"),
        (OptimConfig { kind: OptimizerKind::Sgd, weight_decay: f64::NAN }, "weight-decay"),
        (OptimConfig { kind: OptimizerKind::Sgd, weight_decay: f64::INFINITY }, "weight-decay"),
        (OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: -0.1 }, "weight-decay"),
        (OptimConfig { kind: OptimizerKind::Momentum { momentum: 1.0 }, weight_decay: 0.0 }, "momentum"),
        (OptimConfig { kind: OptimizerKind::Momentum { momentum: -0.5 }, weight_decay: 0.0 }, "momentum"),
        (OptimConfig { kind: OptimizerKind::Momentum { momentum: f64::NAN }, weight_decay: 0.0 }, "momentum"),
    ];
    for (cfg, word) in bad {
        let e = cfg.validate().expect_err(&format!("{cfg:?} should be rejected")).to_string();
        assert!(e.contains(word), "{cfg:?}: the error should mention {word}: {e}");
    }
    // A backend refuses an invalid optimizer and keeps the one it had.
    let spec = MlpSpec::uniform(vec![2, 2], Activation::Identity, Loss::Mse).unwrap();
    let mut cpu = CpuBackend::new(spec.clone(), Params::init(&spec, 1)).unwrap();
    assert!(cpu.set_optimizer(adam_cfg(1.0, 0.999, 1e-8, 0.0)).is_err());
    assert_eq!(cpu.optimizer(), OptimConfig::sgd());
}

#[test]
fn optimizer_json_round_trips_and_rejects_bad_input() {
    let cfgs = [
        OptimConfig::sgd(),
        OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.1 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 },
        OptimConfig { kind: OptimizerKind::Momentum { momentum: 1.0 / 3.0 }, weight_decay: 1e-5 },
        adam_cfg(0.9, 0.999, 1e-8, 0.0),
        adam_cfg(0.8, 0.99, 1e-6, 0.05),
        adam_cfg(0.123456789012345, 0.987654321098765, 3.3e-9, 7e-7),
    ];
    for cfg in cfgs {
        let j = cfg.to_json();
        let back = OptimConfig::from_json(&j).unwrap_or_else(|e| panic!("{j}: {e}"));
        assert_eq!(back, cfg, "{j}");
        // Through text too, as the checkpoint stores it.
        let text = j.to_string();
        let back: OptimConfig = OptimConfig::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, cfg, "{text}");
        assert_eq!(j["name"], cfg.kind.name());
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        let want: &[&str] = match cfg.kind {
            OptimizerKind::Sgd => &["name", "weight_decay"],
            OptimizerKind::Momentum { .. } => &["name", "weight_decay", "momentum"],
            OptimizerKind::Adam { .. } => &["name", "weight_decay", "beta1", "beta2", "eps"],
        };
        assert_eq!(keys, want);
    }
    use serde_json::json;
    for bad in [
        json!({}),
        json!({"name": "rmsprop", "weight_decay": 0.0}),
        json!({"name": "sgd"}),
        json!({"name": "momentum", "weight_decay": 0.0}),
        json!({"name": "adam", "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999}),
        json!({"name": "adam", "weight_decay": 0.0, "beta1": 1.0, "beta2": 0.999, "eps": 1e-8}),
        json!({"name": "adam", "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 0.0}),
        json!({"name": "sgd", "weight_decay": -0.5}),
        json!({"name": "sgd", "weight_decay": "0.1"}),
        json!({"name": 3, "weight_decay": 0.0}),
        json!(null),
    ] {
        assert!(OptimConfig::from_json(&bad).is_err(), "{bad} should be rejected");
    }
    // PyTorch's defaults by name.
    assert_eq!(OptimizerKind::default_for("adam").unwrap(), ADAM);
    assert_eq!(OptimizerKind::default_for("Momentum").unwrap(), MOMENTUM);
    assert_eq!(OptimizerKind::default_for("SGD").unwrap(), OptimizerKind::Sgd);
    assert!(OptimizerKind::default_for("adamw").is_err());
}
