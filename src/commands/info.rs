//! `backprop worked-example` (the seed's network, one step on the CPU and the GPU) and `backprop devices`
//! (every adapter wgpu finds, with its limits).

use backprop::device::BackendChoice;
use backprop::gpu::{self, GpuMlp};
use backprop::{Backend, Result, worked_example};

use super::args::DeviceArgs;
use super::device::open_gpu;
use super::json;

pub fn worked(device: &DeviceArgs, as_json: bool) -> Result<()> {
    let (ctx, why) = open_gpu(device, true)?;
    if ctx.is_none() && device.backend == BackendChoice::Auto {
        eprintln!("note: {why}; running on the CPU only");
    }
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
        println!("{}", json::pretty(&worked_example::report_json(adapter, &rows)));
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
    let wrong: Vec<&str> = rows.iter().filter(|r| r.seed_agrees() == Some(false)).map(|r| r.name).collect();
    println!(
        "\nThe seed prints {printed} of these; {} disagree with the exact values within its own rounding: {}.",
        wrong.len(),
        wrong.join(", ")
    );
    if let Some(max) = rows.iter().filter_map(|r| r.max_abs_diff()).reduce(f64::max) {
        println!("Largest |GPU f32 - CPU f64| over all quantities: {max:.2e}");
    }
    Ok(())
}

pub fn devices(as_json: bool) -> Result<()> {
    let all: Vec<serde_json::Value> =
        gpu::list_adapters(&gpu::AdapterRequest::default())?.iter().map(|a| a.to_json()).collect();
    if as_json {
        println!("{}", json::pretty(&serde_json::Value::Array(all)));
        return Ok(());
    }
    if all.is_empty() {
        println!("no adapters found: {}", gpu::adapter::NO_ADAPTER_HINT);
        return Ok(());
    }
    // The text shows the JSON's fields, so the two cannot drift apart.
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    for (i, a) in all.iter().enumerate() {
        println!("[{i}] {}", text(&a["name"]));
        println!(
            "    backend: {}   type: {}   driver: {} {}",
            text(&a["backend"]),
            text(&a["device_type"]),
            text(&a["driver"]),
            text(&a["driver_info"])
        );
        for (k, v) in a["limits"].as_object().into_iter().flatten() {
            let unit = if k.ends_with("_size") || k.ends_with("_alignment") { " bytes" } else { "" };
            println!("    {:<38} {v}{unit}", format!("{k}:"));
        }
        let yes = a["timestamp_queries"].as_bool().is_some_and(|t| t);
        println!("    {:<38} {}", "timestamp queries:", if yes { "yes" } else { "no" });
    }
    Ok(())
}
