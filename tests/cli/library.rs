//! The library's builder: the command line's defaults, each setting given once, the resume rule, and the
//! typed optimizer choices.

use backprop::checkpoint::{self, Checkpoint};
use backprop::data;
use backprop::model::Activation;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::train::{Device, Trainer};

use super::common::cli::{ok, s};

#[test]
fn the_builder_with_its_defaults_trains_what_the_command_line_trains() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.safetensors");
    ok(&["train", "--epochs", "3", "--backend", "cpu", "--quiet", "--out", &s(&out)]);
    let trained = Trainer::new(data::digits().unwrap()).epochs(3).fit(Device::Cpu).unwrap();
    assert_eq!(trained.history.len(), 3);
    let built = checkpoint::to_bytes(&trained.checkpoint).unwrap();
    assert!(built == std::fs::read(&out).unwrap(), "the builder's checkpoint differs from the command line's");

    // And with settings: the same as the flags that name them.
    let out = dir.path().join("momentum.safetensors");
    let flags = ["--data", "spirals", "--layers", "2,16,2", "--activation", "tanh", "--optimizer", "momentum"];
    ok(&[&["train", "--epochs", "2", "--backend", "cpu", "--quiet", "--seed", "7", "--out", &s(&out)][..], &flags]
        .concat());
    let trained = Trainer::new(data::spirals(400, 7).unwrap())
        .layers([2, 16, 2])
        .activation(Activation::Tanh)
        .optimizer(OptimConfig::new(OptimizerKind::momentum(0.9)))
        .seed(7)
        .epochs(2)
        .fit(Device::Cpu)
        .unwrap();
    assert!(checkpoint::to_bytes(&trained.checkpoint).unwrap() == std::fs::read(&out).unwrap());
}

#[test]
fn resuming_through_the_builder_refuses_a_setting_that_differs() {
    let trained = Trainer::new(data::xor()).test_split(0.0).epochs(2).fit(Device::Cpu).unwrap();
    let ck: Checkpoint = trained.checkpoint.clone();
    let resume = || Trainer::new(data::xor()).test_split(0.0).epochs(4).resume(ck.clone()).unwrap();
    let err = |t: Trainer| t.prepare().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(resume().activation(Activation::Tanh)).contains("--activation tanh"));
    assert!(err(resume().optimizer(OptimConfig::sgd())).contains("--optimizer sgd"));
    assert!(err(resume().seed(1)).contains("--seed 1"));
    assert!(err(resume().init(ck.model.params.clone())).contains("--init"));
    assert!(err(resume().epochs(2)).contains("already trained 2 epochs"));
    // Nothing that differs: the run continues from epoch 2 with the checkpoint's optimizer state.
    let run = resume().prepare().unwrap();
    assert_eq!(run.start_epoch, 2);
    assert_eq!(run.state.as_ref().unwrap().step, 2, "xor: one full batch per epoch");
    let mut bare = ck.clone();
    bare.training = None;
    assert!(Trainer::new(data::xor()).resume(bare).is_err(), "a checkpoint without training state");
}

#[test]
fn typed_optimizers_are_pytorchs_defaults_and_set_the_default_lr() {
    assert_eq!(OptimizerKind::adam(), OptimizerKind::default_for("adam").unwrap());
    assert_eq!(OptimizerKind::momentum(0.9), OptimizerKind::default_for("momentum").unwrap());
    let lr = |k: OptimizerKind| Trainer::new(data::xor()).optimizer(OptimConfig::new(k)).prepare().unwrap().config.lr;
    assert_eq!(lr(OptimizerKind::Sgd), 0.1);
    assert_eq!(lr(OptimizerKind::momentum(0.5)), 0.01);
    assert_eq!(lr(OptimizerKind::adam()), 0.001);
    let run =
        Trainer::new(data::xor()).optimizer(OptimConfig::sgd().with_weight_decay(0.01)).lr(0.3).prepare().unwrap();
    assert_eq!((run.config.lr, run.optimizer.weight_decay), (0.3, 0.01));
}
