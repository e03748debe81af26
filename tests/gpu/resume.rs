//! Resuming is the same as never stopping, bit for bit, for every optimizer and learning-rate schedule on
//! both backends: `train::train` for all its epochs, against the same run stopped after some epochs, its
//! state taken through the `Backend` trait into checkpoint bytes, loaded into a fresh backend, and trained
//! for the rest.

use std::path::Path;

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{self, Dataset};
use backprop::gpu::GpuPath;
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind, Schedule};
use backprop::report::EpochMetrics;
use backprop::train::{self, Observer, TrainConfig};
use backprop::{Activation, Backend, CpuBackend, Error, Loss, MlpSpec, Params};

use crate::common::{BOTH_PATHS, assert_bits_eq, gpu, gpu_model};

const EPOCHS: usize = 5;
/// Where the interrupted run stops (epochs completed).
const STOP: usize = 2;

/// The optimizers resumed: each rule, plain SGD fused and not (weight decay), and clipping.
fn optimizers() -> [(OptimConfig, Option<f32>, f64); 6] {
    let adam = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let momentum = OptimizerKind::Momentum { momentum: 0.9 };
    [
        (OptimConfig::sgd(), None, 0.2),
        (OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.01 }, None, 0.2),
        (OptimConfig { kind: momentum, weight_decay: 0.0 }, None, 0.05),
        (OptimConfig { kind: adam, weight_decay: 0.0 }, None, 0.01),
        (OptimConfig { kind: adam, weight_decay: 0.01 }, Some(0.5), 0.01),
        (OptimConfig { kind: momentum, weight_decay: 0.001 }, Some(0.5), 0.05),
    ]
}

const SCHEDULES: [Schedule; 3] =
    [Schedule::Constant, Schedule::Step { step_size: 2, gamma: 0.5 }, Schedule::Cosine { min_lr: 0.0 }];

/// A backend of `spec` from `params`: the CPU's, or the GPU's taking the given step.
fn backend(on_gpu: Option<GpuPath>, spec: &MlpSpec, params: &Params<f32>) -> Box<dyn Backend> {
    match on_gpu {
        Some(path) => Box::new(gpu_model(spec, params, path)),
        None => Box::new(CpuBackend::new(spec.clone(), params.clone()).unwrap()),
    }
}

/// After `STOP` epochs, writes the run's checkpoint to `path` and stops the run (with an error `train`
/// passes on), as a killed `train --out` leaves it.
struct StopAndSave<'a> {
    path: &'a Path,
    spec: &'a MlpSpec,
    seed: u64,
}

impl Observer for StopAndSave<'_> {
    fn epoch_end(&mut self, backend: &mut dyn Backend, history: &[EpochMetrics]) -> backprop::Result<()> {
        if history.len() < STOP {
            return Ok(());
        }
        let (optimizer, state) = (backend.optimizer(), backend.optimizer_state()?);
        let model = Model { spec: self.spec.clone(), params: backend.params()?, normalizer: None, task: None };
        let training = Some(TrainingState { optimizer, state, epoch: STOP, seed: self.seed });
        checkpoint::save(self.path, &Checkpoint { model, training })?;
        Err(Error::Invalid("stopped".into()))
    }
}

/// The parameters and optimizer state after all `EPOCHS` epochs, straight or stopped and resumed.
fn train_through(
    on_gpu: Option<GpuPath>,
    data: &Dataset,
    spec: &MlpSpec,
    (cfg, optimizer): (&TrainConfig, OptimConfig),
    clip: Option<f32>,
    resume: Option<&Path>,
) -> (Params<f32>, OptimState) {
    let init = Params::init(spec, 3);
    let mut b = backend(on_gpu, spec, &init);
    b.set_optimizer(optimizer).unwrap();
    b.set_grad_clip(clip).unwrap();
    if let Some(path) = resume {
        let mut observer = StopAndSave { path, spec, seed: cfg.seed };
        let e = train::train(&mut *b, data, None, cfg, 0, &mut observer).unwrap_err();
        assert_eq!(e.to_string(), "stopped");
        let ck = checkpoint::load(path).unwrap();
        let t = ck.training.expect("a resumable checkpoint");
        b = backend(on_gpu, spec, &ck.model.params);
        b.set_optimizer(t.optimizer).unwrap();
        b.set_grad_clip(clip).unwrap();
        b.set_optimizer_state(&t.state).unwrap();
        train::train(&mut *b, data, None, cfg, t.epoch, &mut train::Silent).unwrap();
    } else {
        train::train(&mut *b, data, None, cfg, 0, &mut train::Silent).unwrap();
    }
    (b.params().unwrap(), b.optimizer_state().unwrap())
}

fn resumes_exactly(on_gpu: Option<GpuPath>) {
    let dir = tempfile::tempdir().unwrap();
    let data = data::spirals(90, 5).unwrap();
    let spec = MlpSpec::with_output(vec![2, 13, 2], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    for (optimizer, clip, lr) in optimizers() {
        for schedule in SCHEDULES {
            let cfg =
                TrainConfig { epochs: EPOCHS, batch_size: 16, lr, schedule, shuffle: true, seed: 11, verify: None };
            let name = format!(
                "{} {} {:?} clip {clip:?} on the {}",
                optimizer.kind.name(),
                optimizer.weight_decay,
                schedule,
                on_gpu.map_or("CPU".to_string(), |p| format!("GPU ({p:?})"))
            );
            let path = dir.path().join("resume.safetensors");
            let (p1, s1) = train_through(on_gpu, &data, &spec, (&cfg, optimizer), clip, None);
            let (p2, s2) = train_through(on_gpu, &data, &spec, (&cfg, optimizer), clip, Some(&path));
            assert_bits_eq(&format!("{name}: parameters"), &p2.to_flat(), &p1.to_flat());
            assert_bits_eq(&format!("{name}: m"), &s2.m, &s1.m);
            assert_bits_eq(&format!("{name}: v"), &s2.v, &s1.v);
            assert_eq!((s2.step, s1.step), (30, 30), "{name}: steps (6 batches an epoch)");
        }
    }
}

#[test]
fn resuming_on_the_gpu_is_bit_exact_for_every_optimizer_and_schedule() {
    for path in BOTH_PATHS {
        resumes_exactly(Some(path));
    }
}

#[test]
fn resuming_on_the_cpu_is_bit_exact_for_every_optimizer_and_schedule() {
    resumes_exactly(None);
}

/// The GPU keeps Adam's bias corrections as an f32 recurrence; a restored state replays it in the next
/// `optim_prepare`. After 3000 steps, one at a time, and after a restore at step 2999 and one step, the
/// step states are the same bits, whether the recurrence has reached its fixed point (β = 0.9) or not yet
/// (β2 = 0.999), and for SGD, which has no corrections.
#[test]
fn the_bias_corrections_replayed_after_a_restore_are_those_of_every_step() {
    use backprop::gpu::structs::StepState;
    use backprop::gpu::{buffer, ops};
    let ctx = gpu();
    let adam = |beta1, beta2| OptimConfig { kind: OptimizerKind::Adam { beta1, beta2, eps: 1e-8 }, weight_decay: 0.0 };
    for cfg in [adam(0.9, 0.999), adam(0.5, 0.9), OptimConfig::sgd()] {
        let (p, g) = (buffer::storage(&ctx, "θ", 1).unwrap(), buffer::storage(&ctx, "g", 1).unwrap());
        let (m, v, loss) = (
            buffer::storage(&ctx, "m", 1).unwrap(),
            buffer::storage(&ctx, "v", 1).unwrap(),
            buffer::storage(&ctx, "loss", 2).unwrap(),
        );
        let state_after = |start: StepState, steps: usize| {
            let step = buffer::storage_struct(&ctx, "step state", &start).unwrap();
            let partials = buffer::storage(&ctx, "partials", 1).unwrap();
            let buffers = ops::OptimBuffers { m: Some(&m), v: Some(&v), step: &step, loss: &loss, partials: &partials };
            let update = ops::optimizer(&ctx, &cfg, 1, 0.0, None, &g, &p, buffers).unwrap();
            assert_eq!(update[0].kernel(), backprop::gpu::shaders::Kernel::OptimPrepare);
            ops::run(&ctx, &vec![&update[0]; steps]).unwrap();
            buffer::read_struct::<StepState>(&ctx, &step, 0).unwrap()
        };
        let straight = state_after(StepState::START, 3000);
        let resumed = state_after(StepState::resumed(2999), 1);
        assert_eq!(bytemuck::bytes_of(&resumed), bytemuck::bytes_of(&straight), "{cfg:?}: {resumed:?} vs {straight:?}");
        assert_eq!((straight.t, straight.bias_step), (3000, 3000));
    }
}
