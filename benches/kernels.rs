//! Single GPU kernels on the adapter wgpu picks: the matrix product in every tiling and all three
//! orientations of a layer, the output layer's δ, the bias gradient and the Adam update. Each iteration submits one
//! dispatch and waits for it, so launch and wait are in the timed region (as they are in a step).
//!
//! `cargo bench --bench kernels`; BACKPROP_BENCH_SIZE=1024 (default 256) sets B = I = O.

use std::sync::Arc;

use backprop::gpu::ops::{self, Epilogue, Strided};
use backprop::gpu::shaders::Tile;
use backprop::gpu::{AdapterRequest, GpuContext, buffer};
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, environment};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn kernels(c: &mut Criterion) {
    let Ok(ctx) = GpuContext::new(&AdapterRequest::default()) else {
        eprintln!("no GPU adapter: nothing to benchmark (see README: scripts/test installs lavapipe)");
        return;
    };
    let ctx = Arc::new(ctx);
    // Unset or empty: 256; anything but a whole number is an error (`backprop::environment`'s rule).
    let n: usize = match environment::read("BACKPROP_BENCH_SIZE").unwrap_or_else(|e| panic!("{e}")) {
        None => 256,
        Some(v) => {
            v.parse().unwrap_or_else(|_| panic!("{}", environment::invalid("BACKPROP_BENCH_SIZE", &v, &["a size"])))
        }
    };
    let buf = |len: usize| buffer::storage_init(&ctx, "bench", &vec![0.5f32; len]).expect("buffer");
    let (a, w, out, z) = (buf(n * n), buf(n * n), buf(n * n), buf(n * n));
    let mut group = c.benchmark_group(format!("kernels/{n}"));
    group.sample_size(20);
    group.throughput(Throughput::Elements((2 * n * n * n) as u64));
    for tile in Tile::ALL {
        let products = [
            (
                "forward A·W",
                Strided::rows(&a, 0, n),
                Strided::rows(&w, 0, n),
                Epilogue::Forward { bias: (&w, 0).into(), pre: (&z, 0).into(), activation: Activation::Sigmoid },
            ),
            (
                "input grad δ·Wᵀ ⊙ f'",
                Strided::rows(&a, 0, n),
                Strided::transposed(&w, 0, n),
                Epilogue::Derivative { z: (&z, 0).into(), activation: Activation::Sigmoid },
            ),
            ("weight grad Aᵀ·δ", Strided::transposed(&a, 0, n), Strided::rows(&w, 0, n), Epilogue::Store),
        ];
        for (name, sa, sb, epi) in products {
            let d = ops::matmul(&ctx, tile, (n, n, n), sa, sb, epi, Strided::rows(&out, 0, n)).expect("dispatch");
            group.bench_function(format!("{name} {tile:?}"), |b| b.iter(|| ops::run(&ctx, &[&d]).expect("run")));
        }
    }
    group.throughput(Throughput::Elements((n * n) as u64));
    // δ_L = 2 (A − Y) / (B·O) ⊙ f'(Z) over an (n, n) output.
    let whole = ops::Piece::whole(n);
    let d = ops::mse_delta(&ctx, (n, n), whole, Activation::Sigmoid, &a, &z, &out).expect("dispatch");
    group.bench_function("loss_grad", |b| b.iter(|| ops::run(&ctx, &[&d]).expect("run")));
    // db = Σ_b δ_b over an (n, n) δ.
    let d = ops::bias_grad(&ctx, (n, n), &a, (&out, 0)).expect("dispatch");
    group.bench_function("bias_grad", |b| b.iter(|| ops::run(&ctx, &[&d]).expect("run")));
    let adam = OptimConfig { kind: OptimizerKind::default_for("adam").expect("adam"), weight_decay: 0.0 };
    let (m, v, loss) = (buf(n * n), buf(n * n), buf(2));
    let sc = buffer::storage_struct(&ctx, "step state", &backprop::optim::StepState::START).expect("buffer");
    let partials = buf(1);
    let state = ops::OptimBuffers { m: Some(&m), v: Some(&v), step: &sc, loss: &loss, partials: &partials };
    let upd = ops::optimizer(&ctx, &adam, n * n, 1e-3, None, &a, &out, state).expect("dispatch");
    group.bench_function("adam", |b| b.iter(|| ops::run(&ctx, &upd.iter().collect::<Vec<_>>()).expect("run")));
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
