//! The bench tab: a training step of the seed, small and mnist configurations of the library's bench
//! (`bench::STANDARD`, `bench::workload`) on the GPU (WebGPU) and on the CPU reference compiled to wasm,
//! timed on the visitor's machine the way `backprop bench` times them (median after warm-up), awaiting the
//! GPU where `backprop bench` blocks on it.

use std::sync::Arc;

use backprop::bench::{self, Config};
use backprop::gpu::{GpuContext, GpuMlp};
use backprop::model::MlpSpec;
use backprop::{Backend, Error, ReferenceBackend, Result};
use ndarray::Array2;
use serde_json::{Value, json};
use web_time::Instant;

/// The standard configurations a browser runs in seconds (`wide` is left to `backprop bench`).
pub const CONFIGS: [&str; 3] = ["seed", "small", "mnist"];

/// Untimed runs first, then timed ones until there are `MIN_SAMPLES` and `BUDGET_S` has passed (or 50).
const WARMUP: usize = 1;
const MIN_SAMPLES: usize = 3;
const BUDGET_S: f64 = 1.0;
/// A browser's clock ticks in steps of 0.1 ms or so: runs shorter than this are timed many to a sample.
const MIN_SAMPLE_MS: f64 = 5.0;

/// Milliseconds per run of `f`, one sample per `reps` runs back to back (after `WARMUP` untimed runs;
/// `reps` grows until a sample lasts `MIN_SAMPLE_MS`).
async fn time<F: AsyncFnMut() -> Result<()>>(mut f: F) -> Result<Vec<f64>> {
    for _ in 0..WARMUP {
        f().await?;
    }
    let mut reps = 1usize;
    let mut sample = async |reps: usize| -> Result<f64> {
        let t = Instant::now();
        for _ in 0..reps {
            f().await?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e3 / reps as f64)
    };
    let mut first = sample(reps).await?;
    while first * (reps as f64) < MIN_SAMPLE_MS && reps < 1 << 16 {
        reps *= 8;
        first = sample(reps).await?;
    }
    let start = Instant::now();
    let mut samples = vec![first];
    while samples.len() < MIN_SAMPLES || (samples.len() < 50 && start.elapsed().as_secs_f64() < BUDGET_S) {
        samples.push(sample(reps).await?);
    }
    Ok(samples)
}

fn config(name: &str) -> Result<Config> {
    bench::STANDARD
        .into_iter()
        .find(|c| c.name == name && CONFIGS.contains(&name))
        .ok_or_else(|| Error::Invalid(format!("unknown configuration '{name}' (expected {})", CONFIGS.join(", "))))
}

/// One configuration on the GPU (`gpu` given) or on the CPU reference in f32 (the GPU's precision).
/// GPU: `ms_per_step` is one step with its batch uploaded and its loss read back, waiting for each, and
/// `train_ms_per_step` steps as training runs them (data resident, up to 32 steps a submit, one read-back).
pub async fn run(gpu: Option<&Arc<GpuContext>>, name: &str) -> Result<Value> {
    let c = config(name)?;
    let (spec, params, x, y) = bench::workload(&c, c.batch)?;
    let Some(ctx) = gpu else {
        let mut r = ReferenceBackend::<f32>::new(spec.clone(), &params)?;
        let step = bench::median(&mut time(async || r.step(x.view(), y.view(), 0.1, false).map(drop)).await?);
        return Ok(result(&c, &spec, false, step, None));
    };
    let mut m = GpuMlp::new(ctx.clone(), spec.clone(), &params)?;
    let step = bench::median(&mut time(async || m.step_async(x.view(), y.view(), 0.1, true).await.map(drop)).await?);
    // Groups of about 0.3 s, as `backprop bench`; a step longer than that has no group to time.
    let k = ((300.0 / step.max(1e-3)) as usize).min(32);
    if k < 2 {
        return Ok(result(&c, &spec, true, step, None));
    }
    let tile = |a: &Array2<f32>| ndarray::concatenate(ndarray::Axis(0), &vec![a.view(); k]).map_err(shape);
    let (tx, ty) = (tile(&x)?, tile(&y)?);
    m.set_data(tx.view(), ty.view())?;
    let order: Vec<usize> = (0..k * c.batch).collect();
    let mut groups = time(async || {
        m.run_steps(&order, c.batch, 0.1)?;
        m.take_loss_sum_async().await.map(drop)
    })
    .await?;
    Ok(result(&c, &spec, true, step, Some((bench::median(&mut groups) / k as f64, k))))
}

/// One row of the bench as JSON; `train` is (ms per step, steps per group) where it was measured.
fn result(c: &Config, spec: &MlpSpec, gpu: bool, step: f64, train: Option<(f64, usize)>) -> Value {
    json!({
        "config": c.name,
        "sizes": c.sizes,
        "batch": c.batch,
        "backend": if gpu { "webgpu" } else { "cpu reference (f32, wasm)" },
        "ms_per_step": step,
        "train_ms_per_step": train.map(|t| t.0),
        "train_group": train.map(|t| t.1),
        "gflops": spec.step_flops(c.batch) / (train.map_or(step, |t| t.0) * 1e6),
    })
}

fn shape(e: ndarray::ShapeError) -> Error {
    Error::Invalid(format!("bench data: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use backprop::gpu::wait::ready_now;

    #[test]
    fn the_reference_times_a_configuration_and_unknown_ones_are_errors() {
        let r = ready_now("bench", run(None, "seed")).unwrap();
        assert_eq!((r["config"].as_str(), r["batch"].as_u64()), (Some("seed"), Some(1)));
        assert!(r["ms_per_step"].as_f64().unwrap() > 0.0 && r["train_ms_per_step"].is_null());
        assert!(
            ready_now("bench", run(None, "wide")).unwrap_err().to_string().contains("unknown configuration 'wide'")
        );
    }
}
