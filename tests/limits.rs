//! Device limits: a model or batch that does not fit the device's storage-binding limit is a typed error
//! naming the limit and the sizes, raised before any work is submitted. Tested on the real adapter with the
//! limit lowered artificially.

use std::sync::Arc;

use backprop::gpu::{AdapterRequest, GpuContext};
use backprop::{Activation, Backend, Error, GpuMlp, Loss, MlpSpec, Params};
use ndarray::Array2;

fn small_device(cap: u64) -> Arc<GpuContext> {
    let req = AdapterRequest { max_storage_binding: Some(cap), ..Default::default() };
    Arc::new(GpuContext::new(&req).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
}

fn expect_limit(e: Error) -> (u64, u64) {
    let text = e.to_string();
    match e {
        Error::DeviceLimit { limit, requested, available, .. } => {
            assert_eq!(limit, "max_storage_buffer_binding_size", "{text}");
            assert!(text.contains(&requested.to_string()) && text.contains(&available.to_string()), "{text}");
            (requested, available)
        }
        other => panic!("expected a DeviceLimit error, got: {other}"),
    }
}

#[test]
fn the_device_is_opened_with_the_lowered_limit() {
    let ctx = small_device(64 << 10);
    assert_eq!(ctx.limits().max_storage_buffer_binding_size as u64, 64 << 10);
}

#[test]
fn parameters_larger_than_a_binding_are_refused_with_the_sizes() {
    let ctx = small_device(64 << 10);
    // 128·256 + 256 floats = 132 KiB of parameters > 64 KiB.
    let spec = MlpSpec::uniform(vec![128, 256], Activation::Sigmoid, Loss::Mse).unwrap();
    let e = GpuMlp::new(ctx, spec.clone(), &Params::init(&spec, 1)).err().expect("too large");
    let (requested, available) = expect_limit(e);
    assert_eq!(requested, (128 * 256 + 256) * 4);
    assert_eq!(available, 64 << 10);
}

#[test]
fn a_batch_larger_than_a_binding_fails_before_any_step_and_smaller_ones_still_train() {
    let ctx = small_device(64 << 10);
    let spec = MlpSpec::uniform(vec![8, 64, 4], Activation::Tanh, Loss::Mse).unwrap();
    let init = Params::init(&spec, 1);
    let mut model = GpuMlp::new(ctx, spec, &init).unwrap();
    // 300 rows of 64 activations = 75 KiB > 64 KiB.
    let (x, y) = (Array2::<f32>::zeros((300, 8)), Array2::<f32>::zeros((300, 4)));
    expect_limit(model.step(x.view(), y.view(), 0.1, true).unwrap_err());
    assert_eq!(model.params().unwrap(), init, "nothing ran");
    let (x, y) = (Array2::<f32>::from_elem((200, 8), 0.5), Array2::<f32>::from_elem((200, 4), 0.25));
    let loss = model.step(x.view(), y.view(), 0.1, true).unwrap().unwrap();
    assert!(loss.is_finite());
}
