//! `backprop bench`: the standard configurations timed on the CPU and GPU backends, then the batch size
//! at which the GPU step beats the CPU step; progress on stderr as it goes.

use std::sync::Arc;
use std::time::Duration;

use backprop::bench::{self, BenchResult, Budget, Crossover};
use backprop::gpu::{self, GpuContext};
use backprop::{Error, Result};
use serde_json::json;

use super::args::BenchArgs;
use super::json;
use super::parse::BenchBackends;

/// Largest batch of the crossover search unless `--crossover-max` says otherwise.
const CROSSOVER_MAX: usize = 1024;

pub fn bench(args: &BenchArgs) -> Result<()> {
    check_flags(args)?;
    let named = args.configs.is_some();
    let configs = args.configs.as_ref().map_or_else(|| bench::STANDARD.to_vec(), |c| c.0.clone());
    super::device::check_adapter_applies(args.adapter.as_deref(), args.backend.gpu())?;
    let ctx = match args.backend.gpu() {
        true => {
            let req = gpu::AdapterRequest { name: args.adapter.clone(), ..Default::default() };
            Some(Arc::new(GpuContext::new(&req)?))
        }
        false => None,
    };
    #[cfg(feature = "mpi")]
    if backprop::distributed::job::ranks().is_some() {
        // Under mpirun/srun: the step on every rank, and how it scales.
        return super::bench_ranks::bench(args, &configs, named, ctx);
    }
    let progress = |what: String| {
        if !args.quiet {
            eprintln!("bench: {what}");
        }
    };
    let budget = Budget { warmup: args.warmup, steps: args.steps, max_time: Duration::from_secs(3) };
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for c in &configs {
        if args.backend.cpu() {
            progress(format!("{} on the cpu, batch {}", c.name, c.batch));
            results.push(bench::cpu(c, c.batch, &budget, args.cpu_peak_gflops)?);
        }
        if let Some(ctx) = &ctx {
            match bench::gpu_skip(ctx, c, named)? {
                Some(note) => notes.push(note),
                None => {
                    progress(format!("{} on the gpu, batch {}", c.name, c.batch));
                    results.push(bench::gpu(ctx, c, c.batch, &budget, args.peak_gflops)?);
                }
            }
        }
    }
    let crossover = match (&ctx, args.backend.cpu() && !args.no_crossover) {
        (Some(ctx), true) => {
            let mnist = bench::STANDARD[2];
            let max = args.crossover_max.unwrap_or(CROSSOVER_MAX);
            let batches: Vec<usize> = (0..).map(|k| 1usize << k).take_while(|&b| b <= max).collect();
            match bench::forced_fused_skip(ctx, &mnist, &batches)? {
                Some(why) => {
                    notes.push(format!("crossover search on {} skipped: {why}", mnist.name));
                    None
                }
                None => {
                    let quick = Budget { warmup: 2, steps: 10, max_time: Duration::from_secs(1) };
                    let mut before = |b| progress(format!("crossover on {}, batch {b} of up to {max}", mnist.name));
                    Some(bench::crossover_with(ctx, &mnist, &batches, &quick, &mut before)?)
                }
            }
        }
        _ => None,
    };
    print(args, &results, &notes, crossover)
}

/// Refuses, before anything is timed, a flag that does not apply to the backends asked for (or to a
/// search that does not run), rather than ignoring it.
fn check_flags(args: &BenchArgs) -> Result<()> {
    let (backend, crossover_max) = (args.backend, args.crossover_max.is_some());
    let not = format!("not --backend {}", backend.name());
    let refused = [
        (
            args.adapter.is_some() && !backend.gpu(),
            format!(
                "--adapter {} chooses a GPU adapter and does not apply to --backend {}",
                args.adapter.as_deref().unwrap_or_default(),
                backend.name()
            ),
        ),
        (
            args.peak_gflops.is_some() && !backend.gpu(),
            format!("--peak-gflops (the GPU's peak) applies to the GPU backend, {not}; the CPU's is --cpu-peak-gflops"),
        ),
        (
            args.cpu_peak_gflops.is_some() && !backend.cpu(),
            format!("--cpu-peak-gflops applies to the CPU backend, {not}"),
        ),
        (
            crossover_max && args.no_crossover,
            "--crossover-max applies to the crossover search, which --no-crossover skips".into(),
        ),
        (
            crossover_max && backend != BenchBackends::Both,
            format!("--crossover-max applies to the crossover search, which needs both backends, {not}"),
        ),
    ];
    match refused.into_iter().find(|r| r.0) {
        Some((_, why)) => Err(Error::Invalid(why)),
        None => Ok(()),
    }
}

fn print(args: &BenchArgs, results: &[BenchResult], notes: &[String], crossover: Option<Crossover>) -> Result<()> {
    if args.json {
        let out = json!({
            "results": results.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "crossover": crossover.as_ref().map(|c| json!({
                "config": c.config,
                "first_gpu_win": c.first_gpu_win,
                "points": c.points.iter().map(|(b, cpu, gpu)| json!({"batch": b, "cpu_ms": cpu, "gpu_ms": gpu})).collect::<Vec<_>>(),
            })),
            "notes": notes,
        });
        println!("{}", json::pretty(&out));
        return Ok(());
    }
    println!(
        "{:<6} {:<4} {:>5} {:>6} {:>11} {:>9} {:>6}  {:<28} {:>14} {:>8} {:<7}  device",
        "config",
        "back",
        "batch",
        "steps",
        "ms/step",
        "GFLOP/s",
        "%peak",
        "upload / kernels / readback ms",
        "train ms/step",
        "launches",
        "path"
    );
    for r in results {
        let peak = r.peak_fraction.map(|p| format!("{:.1}", 100.0 * p)).unwrap_or_else(|| "-".into());
        let split = r
            .split
            .map(|s| format!("{:.3} / {:.3} ({}) / {:.3}", s.upload_ms, s.kernel_ms, s.kernel_timer, s.readback_ms))
            .unwrap_or_else(|| "-".into());
        let train = match (r.train_ms_per_step, r.train_group) {
            (Some(t), Some(k)) => format!("{t:.4} ({k})"),
            _ => "-".into(),
        };
        let launches = r.dispatches_per_step.map_or_else(|| "-".into(), |n| n.to_string());
        let path = r.gpu_path.unwrap_or("-");
        println!(
            "{:<6} {:<4} {:>5} {:>6} {:>11.4} {:>9.2} {:>6}  {:<28} {:>14} {:>8} {:<7}  {}",
            r.config,
            r.backend,
            r.batch,
            r.steps,
            r.ms_per_step,
            r.gflops,
            peak,
            split,
            train,
            launches,
            path,
            r.adapter
        );
    }
    println!(
        "ms/step: one step at a time, waiting for each; train ms/step: steps as `train` runs them (data resident, \
         (N) steps a group, one read-back per group); launches: GPU kernels per such step; path: the GPU step that \
         ran, fused or unfused (BACKPROP_GPU_PATH=fused|unfused forces one)"
    );
    for n in notes {
        println!("note: {n}");
    }
    if let Some(c) = crossover {
        let pts: Vec<String> = c.points.iter().map(|(b, cpu, gpu)| format!("{b}: {cpu:.3}/{gpu:.3}")).collect();
        println!("crossover ({} network, batch: cpu/gpu ms): {}", c.config, pts.join(", "));
        match c.first_gpu_win {
            Some(b) => println!("the GPU step beats the CPU step from batch {b}"),
            None => println!(
                "the GPU step did not beat the CPU step at any batch up to {}",
                c.points.last().map(|p| p.0).unwrap_or(0)
            ),
        }
    }
    Ok(())
}
