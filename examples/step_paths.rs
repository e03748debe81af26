//! Times the fused and the unfused GPU training step against each other on narrow networks over a range
//! of batch sizes, in alternating rounds, as `train` runs them (the data resident on the device, up to 32
//! steps a submit, one read-back a group): the measurements behind the default rule's threshold
//! (`gpu::tune::FUSED_MAX_MACS`, DESIGN.md).
//!
//! `cargo run --release --example step_paths -- [ROUNDS] [CONFIGS]`, e.g. `-- 3 small,mid`; the default
//! adapter (`WGPU_ADAPTER_NAME` picks another). Prints one line per network and batch: multiply-adds a
//! step, the median ms a step of each path over the rounds, and the median of the per-round ratios.

use std::sync::Arc;
use std::time::Instant;

use backprop::gpu::{AdapterRequest, GpuContext, GpuMlp, GpuPath, PathStrategy};
use backprop::{Activation, Backend, Loss, MlpSpec, Params};
use ndarray::Array2;

/// (name, sizes, batches): narrow networks, each within the fused step's bound on WebGPU's default limits.
const NETWORKS: [(&str, &[usize], &[usize]); 4] = [
    ("seed", &[2, 2, 1], &[1, 64, 1024]),
    ("small", &[64, 64, 64, 1], &[16, 64, 256, 1024, 4096]),
    ("mid", &[64, 128, 128, 10], &[16, 64, 256, 1024, 4096]),
    ("deep", &[32, 64, 64, 64, 64, 64, 64, 1], &[64, 256, 1024, 4096]),
];

/// Milliseconds a step of `path` takes on batches of `batch` rows: the median of three groups of steps
/// on resident data, each group of at most 32 steps and about 2^25 multiply-adds, after one warm-up group.
fn ms_per_step(ctx: &Arc<GpuContext>, spec: &MlpSpec, batch: usize, path: GpuPath) -> backprop::Result<f64> {
    let mut model = GpuMlp::new(ctx.clone(), spec.clone(), &Params::init(spec, 1))?;
    model.set_path_strategy(PathStrategy::Fixed(path))?;
    let macs = ctx.path_key(spec, batch).macs().max(1);
    let steps = ((1usize << 25) / (3 * macs)).clamp(1, 32);
    let rows = batch * steps;
    let x = Array2::<f32>::from_shape_fn((rows, spec.input_width()), |(r, c)| ((r * 7 + c) % 13) as f32 / 13.0);
    let y = Array2::<f32>::from_shape_fn((rows, spec.output_width()), |(r, c)| ((r + c) % 2) as f32);
    model.set_data(x.view(), y.view())?;
    let order: Vec<usize> = (0..rows).collect();
    let mut times = Vec::new();
    for group in 0..4 {
        let t = Instant::now();
        model.run_steps(&order, batch, 0.01)?;
        model.take_loss_sum()?; // the read-back waits for the group
        if group > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    Ok(median(&mut times))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> backprop::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let wanted = args.get(1).cloned().unwrap_or_else(|| "seed,small,mid,deep".into());
    let ctx = Arc::new(GpuContext::new(&AdapterRequest::default())?);
    println!("adapter: {} ({:?} reductions), {rounds} alternating rounds", ctx.adapter().name, ctx.reductions());
    println!("{:<6} {:>6} {:>12} {:>12} {:>12} {:>8}  rule", "net", "batch", "MACs", "unfused ms", "fused ms", "ratio");
    for (name, sizes, batches) in NETWORKS.iter().filter(|(n, ..)| wanted.split(',').any(|w| w == *n)) {
        let spec = MlpSpec::uniform(sizes.to_vec(), Activation::Sigmoid, Loss::Mse)?;
        for &batch in *batches {
            let key = ctx.path_key(&spec, batch);
            let (mut unfused, mut fused, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let u = ms_per_step(&ctx, &spec, batch, GpuPath::Unfused)?;
                let f = ms_per_step(&ctx, &spec, batch, GpuPath::Fused)?;
                unfused.push(u);
                fused.push(f);
                ratios.push(f / u);
            }
            let (u, f, r) = (median(&mut unfused), median(&mut fused), median(&mut ratios));
            let rule = key.rule().name();
            println!("{name:<6} {batch:>6} {:>12} {u:>12.4} {f:>12.4} {r:>8.2}  {rule}", key.macs());
        }
    }
    Ok(())
}
