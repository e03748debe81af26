//! The `backprop` command line: a thin layer over the library.

use std::process::ExitCode;
use std::sync::Arc;

use backprop::backend::BackendChoice;
use backprop::gpu::{self, GpuContext, GpuMlp};
use backprop::{Backend, Error, Result, worked_example};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "backprop",
    version,
    about = "Train multilayer perceptrons with explicit backpropagation in WGSL on any GPU, checked against a CPU reference",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where to run, shared by every command that computes.
#[derive(clap::Args)]
struct DeviceArgs {
    /// auto (a GPU if one is found, else the CPU), cpu, gpu (any adapter, software ones included),
    /// or a GPU through one API: vulkan, metal, dx12, gl. WGPU_BACKEND also limits the APIs.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    backend: BackendChoice,
    /// Use the adapter whose name contains this text (case-insensitive); default: WGPU_ADAPTER_NAME, else
    /// the best adapter (discrete, integrated, virtual, then CPU). `backprop devices` lists them.
    #[arg(long)]
    adapter: Option<String>,
}

fn parse_backend(s: &str) -> std::result::Result<BackendChoice, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

#[derive(Subcommand)]
enum Command {
    /// Run the seed document's 2-2-1 sigmoid network for one SGD step on the CPU (f64) and the GPU (f32),
    /// and print every quantity beside the value the seed prints.
    WorkedExample {
        #[command(flatten)]
        device: DeviceArgs,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// List every adapter wgpu finds, with the limits that matter for training.
    Devices {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::WorkedExample { device, json } => worked(device, json),
        Command::Devices { json } => devices(json),
    }
}

/// Opens a GPU for `device`; `Ok(None)` when the CPU was chosen, or when `auto` finds no adapter.
fn open_gpu(device: &DeviceArgs) -> Result<Option<Arc<GpuContext>>> {
    let Some(req) = device.backend.adapter_request(device.adapter.clone()) else {
        return Ok(None);
    };
    match GpuContext::new(&req) {
        Ok(ctx) => Ok(Some(Arc::new(ctx))),
        Err(e @ Error::NoAdapter { .. })
            if device.backend == BackendChoice::Auto && device.adapter.is_none() =>
        {
            eprintln!("note: {e}; running on the CPU only");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn worked(device: DeviceArgs, as_json: bool) -> Result<()> {
    let ctx = open_gpu(&device)?;
    let rows = match &ctx {
        Some(ctx) => {
            let (spec, params) = worked_example::network()?;
            let mut gpu = GpuMlp::new(ctx.clone(), spec, &params.to_f32())?;
            worked_example::run(Some(&mut gpu as &mut dyn Backend))?
        }
        None => worked_example::run(None)?,
    };
    let adapter = ctx.as_ref().map(|c| c.adapter());
    if as_json {
        let out = json!({
            "adapter": adapter.map(|a| json!({"name": a.name, "backend": a.backend, "device_type": a.device_type})),
            "quantities": worked_example::rows_json(&rows),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Error::Invalid(e.to_string()))?
        );
        return Ok(());
    }
    match adapter {
        Some(a) => println!("GPU: {} ({}, {})", a.name, a.backend, a.device_type),
        None => println!("GPU: none (CPU reference only)"),
    }
    println!(
        "seed network 2-2-1 sigmoid, x = [{}, {}], y = {}, lr = {}, MSE; one SGD step\n",
        worked_example::INPUT[0],
        worked_example::INPUT[1],
        worked_example::TARGET,
        worked_example::LEARNING_RATE
    );
    println!("{}", worked_example::rows_table(&rows));
    let printed = rows.iter().filter(|r| r.seed.is_some()).count();
    let wrong: Vec<&str> = rows
        .iter()
        .filter(|r| r.seed_agrees() == Some(false))
        .map(|r| r.name)
        .collect();
    println!(
        "\nThe seed prints {printed} of these; {} disagree with the exact values within its own rounding: {}.",
        wrong.len(),
        wrong.join(", ")
    );
    if let Some(max) = rows
        .iter()
        .filter_map(|r| r.max_abs_diff())
        .reduce(f64::max)
    {
        println!("Largest |GPU f32 - CPU f64| over all quantities: {max:.2e}");
    }
    Ok(())
}

fn devices(as_json: bool) -> Result<()> {
    let all = gpu::list_adapters(&gpu::AdapterRequest::default());
    if as_json {
        let v: Vec<_> = all.iter().map(|a| a.to_json()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()))?
        );
        return Ok(());
    }
    if all.is_empty() {
        println!("no adapters found: {}", gpu::context::NO_ADAPTER_HINT);
        return Ok(());
    }
    for (i, a) in all.iter().enumerate() {
        let l = &a.limits;
        println!("[{i}] {}", a.name);
        println!(
            "    backend: {}   type: {}   driver: {} {}",
            a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "    max_storage_buffer_binding_size:       {} bytes",
            l.max_storage_buffer_binding_size
        );
        println!(
            "    max_buffer_size:                       {} bytes",
            l.max_buffer_size
        );
        println!(
            "    max_compute_workgroup_storage_size:    {} bytes",
            l.max_compute_workgroup_storage_size
        );
        println!(
            "    max_compute_invocations_per_workgroup: {}",
            l.max_compute_invocations_per_workgroup
        );
        println!(
            "    max_compute_workgroups_per_dimension:  {}",
            l.max_compute_workgroups_per_dimension
        );
        println!(
            "    timestamp queries:                     {}",
            if a.timestamp_queries { "yes" } else { "no" }
        );
    }
    Ok(())
}
