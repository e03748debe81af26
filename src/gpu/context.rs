//! The device: opened on the adapter `adapter::choose` picks, with the adapter's own limits, error capture,
//! its pipelines (each compiled at its first use), and the device's tuner. Everything else takes a
//! `&GpuContext` (or an `Arc` of one), so tests and tools can hand one in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gpu::adapter::{self, AdapterRequest, AdapterSummary};
use crate::gpu::pipelines::Pipelines;
use crate::gpu::shaders::Reductions;
use crate::gpu::tune::{PathKey, Tuner};
use crate::gpu::wait;

type ErrorLog = Arc<Mutex<Vec<String>>>;

/// A device, its queue, the adapter it came from and the compute pipelines, each made once.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    summary: AdapterSummary,
    limits: wgpu::Limits,
    pipelines: Pipelines,
    /// How the kernels sum across a workgroup: with subgroup operations where the device has them.
    reductions: Reductions,
    /// Two 16-byte storage buffers bound where a kernel's binding has nothing to hold (a product's `pre`
    /// when its epilogue stores no pre-activation, the optimizer state SGD keeps none of): two, because
    /// WebGPU refuses one buffer at two writable bindings of a launch.
    scratch: [wgpu::Buffer; 2],
    errors: ErrorLog,
    timeout: Duration,
    /// How matrix products pick their tiling, and the tilings measured on this device.
    tuner: Tuner,
    /// The most bytes one group of buffers may take (`with_memory_budget`); unset, a CPU adapter's is the
    /// host's available memory and a GPU's is not known.
    memory_budget: Option<u64>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.summary.name).finish()
    }
}

impl GpuContext {
    /// Picks the best adapter that matches `req` (discrete, then integrated, virtual, CPU), asks for the
    /// adapter's own limits and installs error handlers (pipelines are compiled when first used).
    pub fn new(req: &AdapterRequest) -> Result<Self> {
        wait::block_on("GpuContext::new", Self::new_async(req))
    }

    /// [`GpuContext::new`] without blocking: the way to open a device on the web, where the browser answers
    /// the adapter and device requests asynchronously.
    pub async fn new_async(req: &AdapterRequest) -> Result<Self> {
        // The environment first: a bad value is an error whether or not an adapter is found.
        let (no_subgroups, tuner) = (req.subgroups_declined()?, Tuner::from_env()?);
        Self::from_adapter(adapter::choose(req).await?, req.max_storage_binding, no_subgroups, tuner).await
    }

    async fn from_adapter(
        adapter: wgpu::Adapter,
        binding_cap: Option<u64>,
        no_subgroups: bool,
        tuner: Tuner,
    ) -> Result<Self> {
        let summary = AdapterSummary::of(&adapter);
        let mut limits = adapter.limits();
        if let Some(cap) = binding_cap {
            let cap = cap.min(limits.max_storage_buffer_binding_size);
            limits.max_storage_buffer_binding_size = cap;
        }
        // Timestamp queries time the kernels in `backprop bench`; subgroup operations sum across a workgroup
        // (`Reductions`). Each is used only where the adapter has it.
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY;
        if !no_subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("backprop"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("could not open a device on '{}': {e}", summary.name)))?;

        let errors: ErrorLog = Arc::default();
        let log = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = log.lock() {
                v.push(e.to_string());
            }
        }));
        let log = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = log.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let reductions =
            if features.contains(wgpu::Features::SUBGROUP) { Reductions::Subgroup } else { Reductions::Workgroup };
        let pipelines = Pipelines::new(&device, reductions);
        let scratch = ["scratch", "second scratch"].map(|label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        let ctx = Self {
            device,
            queue,
            summary,
            limits,
            pipelines,
            reductions,
            scratch,
            errors,
            timeout: Duration::from_secs(600),
            tuner,
            memory_budget: None,
        };
        ctx.check()?;
        Ok(ctx)
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// How matrix products pick their tiling on this device (from the environment unless `with_tuner`
    /// replaced it).
    pub fn tuner(&self) -> &Tuner {
        &self.tuner
    }

    /// The same device with at most `bytes` of buffers allowed in one group (a model's, a batch's or a data
    /// set's), checked before they are made: for tests, and to keep a run within a share of the memory.
    pub fn with_memory_budget(self, bytes: u64) -> Self {
        Self { memory_budget: Some(bytes), ..self }
    }

    /// The budget `with_memory_budget` set, if any (`memory::check` falls back to the host's memory on a
    /// CPU adapter).
    pub fn memory_budget(&self) -> Option<u64> {
        self.memory_budget
    }

    /// The same device with another tuner (another strategy, say), before it is shared.
    pub fn with_tuner(self, tuner: Tuner) -> Self {
        Self { tuner, ..self }
    }

    /// How this device's kernels sum across a workgroup: with subgroup operations, or through workgroup memory.
    pub fn reductions(&self) -> Reductions {
        self.reductions
    }

    /// Whether kernels can be timed with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The limits the device was opened with (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// What the choice of training step reads for batches of `batch` rows of `spec` on this device: the
    /// sizes, the batch, these limits and the adapter's graphics API.
    pub fn path_key(&self, spec: &crate::model::MlpSpec, batch: usize) -> PathKey {
        PathKey::new(spec, batch, &self.limits, self.summary.api)
    }

    pub(crate) fn pipelines(&self) -> &Pipelines {
        &self.pipelines
    }

    /// The buffer bound where a binding has nothing to hold.
    pub(crate) fn scratch(&self) -> &wgpu::Buffer {
        &self.scratch[0]
    }

    /// Another such buffer, for a launch with two writable bindings that hold nothing.
    pub(crate) fn second_scratch(&self) -> &wgpu::Buffer {
        &self.scratch[1]
    }

    /// Returns the first GPU error reported since the last check, if any.
    pub fn check(&self) -> Result<()> {
        let mut v = self.errors.lock().map_err(|_| Error::Gpu("error log poisoned".into()))?;
        if v.is_empty() {
            Ok(())
        } else {
            let first = v.remove(0);
            v.clear();
            Err(Error::Gpu(first))
        }
    }

    /// Waits for a submission, with a timeout, then reports any GPU error.
    pub fn wait(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: Some(self.timeout) })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Runs `f` inside an out-of-memory error scope, so that a failed allocation is this call's typed error
    /// rather than a later, unrelated one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn catch_oom<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let result = f();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("out of GPU memory while {what}: {e}")));
        }
        result
    }

    /// Runs `f`. On the web an error scope answers with a promise that cannot be waited for here, so a failed
    /// allocation reaches the uncaptured-error handler instead, and the next `check` (every submit and
    /// read-back makes one) returns it.
    #[cfg(target_arch = "wasm32")]
    pub fn catch_oom<T>(&self, _what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        f()
    }

    /// Waits, with a timeout, for all submitted work and pending mappings.
    pub fn wait_all(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(self.timeout) })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Fails with a `DeviceLimit` error when a storage binding of `bytes` does not fit.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.limits.max_storage_buffer_binding_size;
        if bytes > max {
            return Err(Error::DeviceLimit {
                what: format!("{what} ({bytes} bytes in one binding)"),
                limit: "max_storage_buffer_binding_size",
                requested: bytes,
                available: max,
            });
        }
        Ok(())
    }

    /// Fails with a `DeviceLimit` error when a buffer of `bytes` cannot be made.
    pub fn check_buffer(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.limits.max_buffer_size {
            return Err(Error::DeviceLimit {
                what: format!("{what} ({bytes} bytes)"),
                limit: "max_buffer_size",
                requested: bytes,
                available: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    /// Fails with a `DeviceLimit` error when a dispatch needs more workgroups in one dimension than allowed.
    pub fn check_workgroups(&self, what: &str, groups: u32) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups > max {
            return Err(Error::DeviceLimit {
                what: what.to_string(),
                limit: "max_compute_workgroups_per_dimension",
                requested: groups as u64,
                available: max as u64,
            });
        }
        Ok(())
    }
}
