//! Whole training runs: the GPU model against the CPU reference from the same initial weights.

mod common;

use backprop::cpu;
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;

use common::{assert_close, f32_exact, gpu, random, rng};

fn flat_f64(p: &Params<f32>) -> Vec<f64> {
    p.to_flat().iter().map(|&v| v as f64).collect()
}

/// `steps` SGD steps on GPU and on the f64 reference from the same start; losses and parameters agree.
fn train_and_compare(sizes: &[usize], acts: &[Activation], batch: usize, steps: usize, lr: f64, seed: u64) {
    let spec = MlpSpec::new(sizes.to_vec(), acts.to_vec(), Loss::Mse).unwrap();
    let init = Params::init(&spec, seed);
    let mut r = rng(seed);
    let x = f32_exact(&random(&mut r, batch, sizes[0], 1.0));
    let y = random(&mut r, batch, *sizes.last().unwrap(), 1.0).mapv(|v| (v as f32 * 0.5 + 0.5) as f64);
    let (x32, y32) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));

    let mut reference = init.to_f64();
    let mut model = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    for step in 0..steps {
        let want = cpu::sgd_step(&spec, &mut reference, x.view(), y.view(), lr).unwrap().loss;
        let got = model.step(x32.view(), y32.view(), lr as f32, true).unwrap().expect("asked for the loss");
        assert_close(&format!("{sizes:?} loss at step {step}"), &[got], &[want], 1e-6, 1e-4);
    }
    let params = model.params().unwrap();
    assert_close(
        &format!("{sizes:?} parameters after {steps} steps"),
        &params.to_flat(),
        &reference.to_flat(),
        1e-5,
        1e-3,
    );
}

#[test]
fn twenty_five_steps_of_a_four_layer_sigmoid_network() {
    train_and_compare(&[7, 13, 5, 3, 2], &[Activation::Sigmoid; 4], 11, 25, 0.5, 1);
}

#[test]
fn mixed_activations_and_a_batch_past_the_tile() {
    let acts = [Activation::Tanh, Activation::Relu, Activation::Identity, Activation::Sigmoid];
    train_and_compare(&[33, 31, 17, 65, 1], &acts, 37, 20, 0.1, 2);
}

#[test]
fn widths_and_batch_of_one() {
    train_and_compare(&[1, 1, 1, 1], &[Activation::Tanh, Activation::Sigmoid, Activation::Identity], 1, 20, 0.3, 3);
}

#[test]
fn loss_is_only_read_when_asked_and_steps_without_it_still_train() {
    let spec = MlpSpec::uniform(vec![4, 6, 3], Activation::Sigmoid, Loss::Mse).unwrap();
    let init = Params::init(&spec, 9);
    let mut r = rng(9);
    let x = random(&mut r, 5, 4, 1.0).mapv(|v| v as f32);
    let y = random(&mut r, 5, 3, 1.0).mapv(|v| v as f32);
    let mut g = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    let mut c = CpuBackend::new(spec, init).unwrap();
    for _ in 0..20 {
        assert_eq!(g.step(x.view(), y.view(), 0.2, false).unwrap(), None);
        c.step(x.view(), y.view(), 0.2, false).unwrap();
    }
    let (gp, cp) = (g.params().unwrap(), c.params().unwrap());
    assert_close("params after 20 silent steps", &gp.to_flat(), &flat_f64(&cp), 1e-5, 1e-4);
    // Predictions agree too, at a batch size the model has not seen yet.
    let x2 = random(&mut r, 3, 4, 1.0).mapv(|v| v as f32);
    let (pg, pc) = (g.predict(x2.view()).unwrap(), c.predict(x2.view()).unwrap());
    assert_close("predictions", pg.as_slice().unwrap(), &pc.iter().map(|&v| v as f64).collect::<Vec<_>>(), 1e-6, 1e-5);
}

#[test]
fn traced_step_matches_the_reference_tensor_by_tensor() {
    let spec = MlpSpec::new(vec![5, 9, 3], vec![Activation::Relu, Activation::Sigmoid], Loss::Mse).unwrap();
    let init = Params::init(&spec, 4);
    let mut r = rng(4);
    let x = f32_exact(&random(&mut r, 6, 5, 1.0));
    let y = f32_exact(&random(&mut r, 6, 3, 1.0));
    let mut reference = init.to_f64();
    let want = cpu::sgd_step(&spec, &mut reference, x.view(), y.view(), 0.1).unwrap();
    let mut model = GpuMlp::new(gpu(), spec.clone(), &init).unwrap();
    let got = model.traced_step(x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view(), 0.1).unwrap();
    let v = |a: &Array2<f64>| a.iter().copied().collect::<Vec<_>>();
    for l in 0..2 {
        assert_close(&format!("Z{l}"), got.pre[l].as_slice().unwrap(), &v(&want.pre[l]), 1e-5, 1e-4);
        assert_close(&format!("A{l}"), got.post[l].as_slice().unwrap(), &v(&want.post[l]), 1e-5, 1e-4);
        assert_close(&format!("delta{l}"), got.delta[l].as_slice().unwrap(), &v(&want.delta[l]), 1e-6, 1e-4);
    }
    assert_close("grads", &got.grads.to_flat(), &want.grads.to_flat(), 1e-6, 1e-4);
    assert_close("loss", &[got.loss], &[want.loss], 1e-7, 1e-5);
}

#[test]
fn wrong_shapes_are_errors_on_the_gpu_too() {
    let spec = MlpSpec::uniform(vec![3, 2], Activation::Sigmoid, Loss::Mse).unwrap();
    let mut g = GpuMlp::new(gpu(), spec.clone(), &Params::init(&spec, 1)).unwrap();
    let x = Array2::<f32>::zeros((4, 5));
    let y = Array2::<f32>::zeros((4, 2));
    let e = g.step(x.view(), y.view(), 0.1, true).unwrap_err();
    assert!(matches!(e, backprop::Error::Shape { .. }), "{e}");
    let x = Array2::<f32>::zeros((0, 3));
    assert!(g.predict(x.view()).is_err());
    let other = MlpSpec::uniform(vec![3, 4], Activation::Sigmoid, Loss::Mse).unwrap();
    assert!(GpuMlp::new(gpu(), spec, &Params::init(&other, 1)).is_err());
}
