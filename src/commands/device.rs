//! Opening the device a command asks for: the CPU, or a GPU adapter (`--backend auto` takes only a
//! hardware one).

use std::sync::Arc;

use backprop::device::BackendChoice;
use backprop::gpu::GpuContext;
use backprop::{Device, Error, Result};

use super::args::DeviceArgs;

/// Opens the GPU the flags ask for. `Ok((None, why))` means the CPU: chosen, or `auto` found no hardware GPU
/// (software adapters are used only when asked for by name or `--backend gpu`, or when `software_ok`).
pub fn open_gpu(device: &DeviceArgs, software_ok: bool) -> Result<(Option<Arc<GpuContext>>, String)> {
    let Some(req) = device.backend.adapter_request(device.adapter.clone()) else {
        return Ok((None, "as asked by --backend cpu".into()));
    };
    let auto = device.backend == BackendChoice::Auto && device.adapter.is_none();
    match GpuContext::new(&req) {
        Ok(ctx) if auto && !software_ok && ctx.adapter().device_type == "cpu" => {
            let why = format!(
                "no hardware GPU found; {} is a software renderer, which --backend gpu uses anyway",
                ctx.adapter().name
            );
            Ok((None, why))
        }
        Ok(ctx) => Ok((Some(Arc::new(ctx)), String::new())),
        Err(Error::NoAdapter { .. }) if auto => Ok((None, "no GPU adapter found".into())),
        Err(e) => Err(e),
    }
}

/// The device the flags ask for, and a one-line description of it (with why, for the CPU).
pub fn open_device(device: &DeviceArgs) -> Result<(Device, String)> {
    Ok(match open_gpu(device, false)? {
        (Some(ctx), _) => {
            let a = ctx.adapter();
            let line = format!("gpu, {} ({}, {})", a.name, a.backend, a.device_type);
            (Device::Gpu(ctx), line)
        }
        (None, why) => (Device::Cpu, format!("cpu ({why})")),
    })
}
