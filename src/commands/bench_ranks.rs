//! `backprop bench` under `mpirun`/`srun` (the `mpi` feature): each standard configuration's step on every
//! rank, split into compute, copies and the gradient sum, against one process (`distributed::bench`).
//! Rank 0 prints.

use std::sync::Arc;

use backprop::bench::Config;
use backprop::distributed::bench::{Scaling, Workload, scaling};
use backprop::distributed::job;
use backprop::gpu::{GpuContext, GpuMlp};
use backprop::{CpuBackend, MlpSpec, Params};
use backprop::{Error, Result};

use super::args::BenchArgs;
use super::json;

/// `configs` (named by the user when `named`) on the CPU backend where the flags ask for it, and on
/// `ctx`'s GPU when given; on the GPU with the gradients summed after the backward pass and during it.
pub fn bench(args: &BenchArgs, configs: &[Config], named: bool, ctx: Option<Arc<GpuContext>>) -> Result<()> {
    let unused = [
        ("--crossover-max", args.crossover_max.is_some()),
        ("--peak-gflops", args.peak_gflops.is_some()),
        ("--cpu-peak-gflops", args.cpu_peak_gflops.is_some()),
    ];
    if let Some((flag, _)) = unused.iter().find(|f| f.1) {
        return Err(Error::Invalid(format!(
            "{flag} does not apply under mpirun/srun, where bench times each configuration's scaling over the ranks"
        )));
    }
    let mut rows: Vec<Scaling> = Vec::new();
    let mut notes = Vec::new();
    let budget = (args.warmup, args.steps);
    for c in configs {
        let work = Workload { name: c.name, sizes: c.sizes, batch: c.batch };
        if args.backend.cpu() {
            let make = |s: &MlpSpec, p: &Params<f32>| CpuBackend::new(s.clone(), p.clone());
            rows.push(scaling(&work, "cpu", make, job::exchange()?, false, budget)?);
        }
        if let Some(ctx) = &ctx {
            if let Some(note) = backprop::bench::gpu_skip(ctx, c, named)? {
                notes.push(note);
                continue;
            }
            let gpu = |s: &MlpSpec, p: &Params<f32>| GpuMlp::new(ctx.clone(), s.clone(), p);
            for overlap in [false, true] {
                rows.push(scaling(&work, "gpu", gpu, job::exchange()?, overlap, budget)?);
            }
        }
    }
    if !job::speaks() {
        return Ok(());
    }
    if args.json {
        let out =
            serde_json::json!({ "results": rows.iter().map(Scaling::to_json).collect::<Vec<_>>(), "notes": notes });
        println!("{}", json::pretty(&out));
        return Ok(());
    }
    print!("{}", Scaling::table(&rows));
    println!(
        "1-proc: one process, the whole batch; ms/step: {} ranks, each its share of the rows (gpu+o: each layer's \
         gradients summed while the backward pass goes on); compute: forward, backward and update; copies: \
         gradients device<->host; wait: for the slowest rank; allreduce: the rank-order sum (MB per step, bus \
         bandwidth 2(N-1)/N * MB / time); eff: 1-proc / (ranks * ms/step)",
        rows.first().map_or(0, |r| r.ranks)
    );
    for n in &notes {
        println!("note: {n}");
    }
    Ok(())
}
