//! Opening the device a command asks for: the CPU, or a GPU adapter (`--backend auto` takes only a
//! hardware one).

use std::sync::Arc;

use backprop::device::BackendChoice;
use backprop::gpu::GpuContext;
use backprop::{Device, Error, Result};

use super::args::DeviceArgs;

/// `--adapter` chooses a GPU adapter: an error where no GPU runs (`gpu` false), rather than a flag ignored.
pub fn check_adapter_applies(adapter: Option<&str>, gpu: bool) -> Result<()> {
    match adapter {
        Some(name) if !gpu => {
            Err(Error::Invalid(format!("--adapter {name} chooses a GPU adapter and does not apply to --backend cpu")))
        }
        _ => Ok(()),
    }
}

/// Opens the GPU the flags ask for. `Ok((None, why))` means the CPU: chosen, or, under `auto`, no hardware GPU
/// found (a software adapter is taken when named, by `--adapter` or `WGPU_ADAPTER_NAME`, or when
/// `software_ok`; `--backend gpu` takes any), or none that `WGPU_ADAPTER_NAME` names, `why` listing those
/// found. `--adapter` naming none is an error.
pub fn open_gpu(device: &DeviceArgs, software_ok: bool) -> Result<(Option<Arc<GpuContext>>, String)> {
    check_adapter_applies(device.adapter.as_deref(), device.backend != BackendChoice::Cpu)?;
    let Some(req) = device.backend.adapter_request(device.adapter.clone()) else {
        return Ok((None, "as asked by --backend cpu".into()));
    };
    let auto = device.backend == BackendChoice::Auto && device.adapter.is_none();
    let named = req.name_filter().is_some();
    match GpuContext::new(&req) {
        Ok(ctx) if auto && !named && !software_ok && ctx.adapter().device_type == "cpu" => {
            let why = format!(
                "no hardware GPU found; {} is a software renderer, which --backend gpu uses anyway",
                ctx.adapter().name
            );
            Ok((None, why))
        }
        Ok(ctx) => Ok((Some(Arc::new(ctx)), String::new())),
        Err(Error::NoAdapter { filter, hint }) if auto && named => {
            Ok((None, format!("no GPU adapter found{filter}: {hint}")))
        }
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
