//! Burn baseline for `backprop bench`: the four standard configurations of DESIGN.md (sigmoid `nn::Linear`
//! layers, `MseLoss` mean, SGD lr 0.1, fp32) on Burn 0.22's autodiff wgpu or ndarray backend, printed with the
//! columns of `benches/pytorch_baseline.py`. GFLOP/s counts 6·B·Σ I·O per step, as `backprop bench` does.
//!
//!     cargo run --release -- --device wgpu            # the adapter backprop picks (WGPU_BACKEND, WGPU_ADAPTER_NAME)
//!     cargo run --release -- --device ndarray --json  # one JSON object, like `pytorch_baseline.py --json`
//!
//! Never needed by the tests or by CI.

mod adapter;
mod measure;

use clap::{Parser, ValueEnum};
use measure::{Budget, CONFIGS, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// `Autodiff<Wgpu>`, on the adapter `backprop` picks.
    Wgpu,
    /// `Autodiff<NdArray>`, on the CPU.
    Ndarray,
}

#[derive(Parser, Debug)]
#[command(about = "Burn 0.22 baseline: the standard configurations, timed as benches/pytorch_baseline.py")]
struct Args {
    /// wgpu or ndarray
    #[arg(long, value_enum, default_value = "ndarray")]
    device: Backend,
    /// Comma-separated configurations: seed, small, mnist, wide.
    #[arg(long, default_value = "seed,small,mnist,wide", value_delimiter = ',', value_parser = config_index)]
    configs: Vec<usize>,
    /// Timed steps (fewer when a step is slow; at least 3).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Time budget per configuration, in seconds.
    #[arg(long, default_value_t = 3.0)]
    max_seconds: f64,
    /// One JSON object, with the fields of `pytorch_baseline.py --json`.
    #[arg(long)]
    json: bool,
}

fn config_index(s: &str) -> Result<usize, String> {
    CONFIGS
        .iter()
        .position(|(name, _, _)| *name == s.trim())
        .ok_or_else(|| format!("unknown configuration '{s}' (expected seed, small, mnist, wide)"))
}

const BURN_VERSION: &str = "0.22.1";

fn row_json(r: &Row, backend: &str, adapter: &str) -> serde_json::Value {
    serde_json::json!({
        "config": r.config,
        "backend": backend,
        "adapter": adapter,
        "batch": r.batch,
        "steps": r.steps,
        "ms_per_step": r.ms_per_step,
        "gflops": r.gflops,
        "train_ms_per_step": r.train_ms_per_step,
        "train_group": r.train_group,
    })
}

fn run(args: &Args) -> Result<(), String> {
    let (backend, chosen) = match args.device {
        Backend::Wgpu => ("burn-wgpu", adapter::choose()?),
        Backend::Ndarray => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            #[allow(deprecated)] // NdArray is the CPU backend this baseline measures, as issued.
            let device = burn::tensor::Device::ndarray().autodiff();
            ("burn-ndarray", adapter::Chosen { label: format!("{threads} threads"), device })
        }
    };
    let budget = Budget { steps: args.steps, warmup: args.warmup, max_seconds: args.max_seconds };
    let mut rows = Vec::new();
    for &c in &args.configs {
        rows.push(measure::measure(c, &chosen.device, &budget)?);
    }
    if args.json {
        let results: Vec<_> = rows.iter().map(|r| row_json(r, backend, &chosen.label)).collect();
        let out = serde_json::json!({ "burn": BURN_VERSION, "results": results });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("burn {BURN_VERSION}");
    println!(
        "{:<6} {:<13} {:>5} {:>6} {:>11} {:>9} {:>14}  device",
        "config", "back", "batch", "steps", "ms/step", "GFLOP/s", "train ms/step"
    );
    for r in &rows {
        let train = format!("{:.4} ({})", r.train_ms_per_step, r.train_group);
        println!(
            "{:<6} {:<13} {:>5} {:>6} {:>11.4} {:>9.2} {:>14}  {}",
            r.config, backend, r.batch, r.steps, r.ms_per_step, r.gflops, train, chosen.label
        );
    }
    println!("ms/step: one step at a time, synchronised; train ms/step: (N) steps back to back, one synchronisation");
    Ok(())
}

fn main() {
    let args = Args::parse();
    if args.steps == 0 {
        eprintln!("error: --steps must be at least 1");
        std::process::exit(2);
    }
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
