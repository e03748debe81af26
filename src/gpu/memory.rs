//! What a group of buffers (a model's, a batch's, a data set's) will take, checked before any of them is
//! made: each against the device's largest buffer, and all of them together against the memory they come
//! from where that is known (a CPU adapter such as lavapipe allocates device buffers in host memory), so an
//! oversized request is one clear error instead of gigabytes allocated first.

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;

/// One buffer to be made: its label and its size in bytes.
pub type Request = (String, u64);

/// Checks `buffers`, which `what` needs (say "a batch of 512 rows"), before any is made; `fix` says what to
/// change when they do not fit (say "use a smaller --batch-size").
pub fn check(ctx: &GpuContext, what: &str, buffers: &[Request], fix: &str) -> Result<()> {
    let max = ctx.limits().max_buffer_size;
    if let Some((label, bytes)) = buffers.iter().find(|(_, bytes)| *bytes > max) {
        return Err(Error::DeviceLimit {
            what: format!("buffer {label} of {what} ({fix})"),
            limit: "max_buffer_size",
            requested: *bytes,
            available: max,
        });
    }
    let total = buffers.iter().fold(0u64, |t, (_, b)| t.saturating_add(*b));
    match budget(ctx) {
        Some((available, source)) if total > available => Err(Error::Invalid(format!(
            "{what} needs {total} bytes of GPU buffers and {source} has {available}: {fix}"
        ))),
        _ => Ok(()),
    }
}

/// The bytes one group of buffers may take, and where that figure comes from: the budget set with
/// `GpuContext::with_memory_budget`, else, on a CPU adapter (whose buffers are host memory), the host's
/// available memory; `None` where it is not known (a GPU's own memory: wgpu does not say).
pub fn budget(ctx: &GpuContext) -> Option<(u64, String)> {
    if let Some(b) = ctx.memory_budget() {
        return Some((b, "the memory budget set for this device".into()));
    }
    let adapter = ctx.adapter();
    if adapter.device_type != "cpu" {
        return None;
    }
    let source = format!("the host's available memory (where {} makes its buffers)", adapter.name);
    host_available().map(|b| (b, source))
}

/// The host's available memory in bytes (`MemAvailable` of /proc/meminfo), where the system says.
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of `values` f32 values.
pub fn f32_bytes(values: usize) -> u64 {
    (values as u64).saturating_mul(4)
}
