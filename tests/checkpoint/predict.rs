//! Save, load, predict: a reloaded model predicts what the trained backend predicts, on the CPU and the
//! GPU, and a run resumed from a checkpoint continues exactly as one that never stopped.

use std::path::PathBuf;

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::optim::OptimConfig;
use backprop::{Backend, CpuBackend, GpuMlp, Loss, MlpSpec};
use ndarray::Array2;

use super::common::{self, assert_same_checkpoint, bits, gpu, random, rng};
use super::{adam, ce_model, momentum, mse_model};

fn batch(spec: &MlpSpec, n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut r = rng(seed);
    let x = random(&mut r, n, spec.input_width(), 1.0).mapv(|v| v as f32);
    let o = spec.output_width();
    let y = match spec.loss() {
        Loss::CrossEntropy => Array2::from_shape_fn((n, o), |(b, j)| if (b * 5 + 1) % o == j { 1.0 } else { 0.0 }),
        Loss::Mse => random(&mut r, n, o, 1.0).mapv(|v| (v * 0.5 + 0.5) as f32),
    };
    (x, y)
}

#[test]
fn save_load_predict_matches_the_trained_backend_on_cpu_and_gpu() {
    let dir = tempfile::tempdir().unwrap();
    for (name, model, cfg, lr) in [("ce", ce_model(), adam(), 0.01f32), ("mse", mse_model(), momentum(), 0.1)] {
        let mut params = model.params.clone();
        // Keep the planted f32::MAX out of a network that has to predict.
        params.weights.iter_mut().for_each(|w| w.mapv_inplace(|v| v.clamp(-1.0, 1.0)));
        let mut cpu = CpuBackend::new(model.spec.clone(), params).unwrap();
        cpu.set_optimizer(cfg).unwrap();
        let (x, y) = batch(&model.spec, 7, 60);
        for _ in 0..5 {
            cpu.step(x.view(), y.view(), lr, false).unwrap();
        }
        let trained = Model { params: cpu.params().unwrap(), ..model.clone() };
        let state = cpu.optimizer_state().unwrap();
        assert_eq!(state.step, 5);
        let ck = Checkpoint {
            model: trained.clone(),
            training: Some(TrainingState { optimizer: cfg, state, epoch: 1, seed: 5 }),
        };
        let path = dir.path().join(format!("{name}.safetensors"));
        checkpoint::save(&path, &ck).unwrap();
        let loaded = checkpoint::load(&path).unwrap();
        assert_same_checkpoint(&loaded, &ck, name);

        let (xt, _) = batch(&model.spec, 9, 61);
        let want = cpu.predict(xt.view()).unwrap();
        let mut cpu2 = CpuBackend::new(loaded.model.spec.clone(), loaded.model.params.clone()).unwrap();
        let got = cpu2.predict(xt.view()).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}: CPU predictions from the loaded checkpoint"
        );
        let mut g = GpuMlp::new(gpu(), loaded.model.spec.clone(), &loaded.model.params).unwrap();
        let got = g.predict(xt.view()).unwrap();
        let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        common::assert_close(&format!("{name}: GPU predictions"), got.as_slice().unwrap(), &want64, 1e-5, 0.0);
    }
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [adam(), momentum(), OptimConfig::sgd()] {
        let model = mse_model();
        let (x, y) = batch(&model.spec, 7, 70);
        let lr = 0.02f32;
        let mut straight = CpuBackend::new(model.spec.clone(), model.params.clone()).unwrap();
        straight.set_optimizer(cfg).unwrap();
        for _ in 0..10 {
            straight.step(x.view(), y.view(), lr, false).unwrap();
        }

        let mut first = CpuBackend::new(model.spec.clone(), model.params.clone()).unwrap();
        first.set_optimizer(cfg).unwrap();
        for _ in 0..4 {
            first.step(x.view(), y.view(), lr, false).unwrap();
        }
        let ck = Checkpoint {
            model: Model { params: first.params().unwrap(), ..model.clone() },
            training: Some(TrainingState {
                optimizer: first.optimizer(),
                state: first.optimizer_state().unwrap(),
                epoch: 4,
                seed: 1,
            }),
        };
        let path: PathBuf = dir.path().join(format!("resume-{}.safetensors", cfg.kind.name()));
        checkpoint::save(&path, &ck).unwrap();
        drop(first);

        let loaded = checkpoint::load(&path).unwrap();
        let t = loaded.training.unwrap();
        assert_eq!(t.state.step, 4);
        let mut resumed = CpuBackend::new(loaded.model.spec, loaded.model.params).unwrap();
        resumed.set_optimizer(t.optimizer).unwrap();
        resumed.set_optimizer_state(&t.state).unwrap();
        for _ in 0..6 {
            resumed.step(x.view(), y.view(), lr, false).unwrap();
        }
        let name = cfg.kind.name();
        assert_eq!(
            bits(&resumed.params().unwrap().to_flat()),
            bits(&straight.params().unwrap().to_flat()),
            "{name}: resumed parameters"
        );
        assert_eq!(resumed.optimizer_state().unwrap(), straight.optimizer_state().unwrap(), "{name}: state");
    }
}
