//! Whole training steps, CPU backend against GPU backend, on the standard configurations of DESIGN.md
//! (sigmoid, MSE, SGD lr 0.1). The GPU step waits for the device inside the timed region (the loss read-back
//! of `step(.., want_loss = true)` is the fence).
//!
//! `cargo bench --bench step` runs seed and small; set BACKPROP_BENCH_CONFIGS=seed,small,mnist,wide for all.

use std::sync::Arc;

use backprop::environment;
use backprop::gpu::{AdapterRequest, GpuContext};
use backprop::{Activation, Backend, CpuBackend, GpuMlp, Loss, MlpSpec, Params};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;

const CONFIGS: [(&str, &[usize], usize); 4] = [
    ("seed", &[2, 2, 1], 1),
    ("small", &[64, 64, 64, 1], 64),
    ("mnist", &[784, 256, 256, 10], 256),
    ("wide", &[1024, 4096, 4096, 1024], 1024),
];

fn steps(c: &mut Criterion) {
    // Unset or empty: seed and small; names in any case, an unknown one an error (`backprop::environment`).
    const NAME: &str = "BACKPROP_BENCH_CONFIGS";
    let list = environment::read(NAME).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| "seed,small".into());
    let names: Vec<(&str, &str)> = CONFIGS.iter().map(|c| (c.0, c.0)).collect();
    let wanted: Vec<&str> = list
        .split(',')
        .filter_map(|w| environment::choice_value(NAME, Some(w), &names).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let gpu = GpuContext::new(&AdapterRequest::default()).ok().map(Arc::new);
    for (name, sizes, batch) in CONFIGS {
        if !wanted.contains(&name) {
            continue;
        }
        let spec = MlpSpec::uniform(sizes.to_vec(), Activation::Sigmoid, Loss::Mse).expect("valid spec");
        let params = Params::init(&spec, 1);
        let x = Array2::<f32>::from_elem((batch, sizes[0]), 0.5);
        let y = Array2::<f32>::from_elem((batch, sizes[sizes.len() - 1]), 0.25);
        let mut group = c.benchmark_group(format!("step/{name}"));
        group.throughput(Throughput::Elements(spec.step_flops(batch) as u64));
        let mut cpu = CpuBackend::new(spec.clone(), params.clone()).expect("cpu backend");
        group.bench_function("cpu", |b| b.iter(|| cpu.step(x.view(), y.view(), 0.1, true).expect("cpu step")));
        if let Some(ctx) = &gpu {
            let mut g = GpuMlp::new(ctx.clone(), spec.clone(), &params).expect("gpu model");
            group.bench_function(format!("gpu ({})", ctx.adapter().name), |b| {
                b.iter(|| g.step(x.view(), y.view(), 0.1, true).expect("gpu step"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, steps);
criterion_main!(benches);
