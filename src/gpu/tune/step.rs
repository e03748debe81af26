//! Which training step a batch runs: the fused step (two launches, three when clipping, whatever the
//! depth) or the unfused one (a launch per layer and operation). The two sum in different orders, so they
//! agree to rounding, not bit for bit; the default choice is therefore a rule on the key alone (the
//! network's sizes, the batch, the device's limits and its graphics API), never a timing, and two processes
//! with the same inputs on the same adapter take the same step. Timing both is an explicit opt-in
//! (`PathStrategy::Timed`).

use std::str::FromStr;

use crate::environment;
use crate::error::{Error, Result};
use crate::gpu::shaders::{FUSED_WORKGROUP, MAX_BLOCK_ROWS, MAX_FUSED_LAYERS, fused_act_capacity};
use crate::model::MlpSpec;

/// Fewest rows a block of the fused step must hold for the step to apply.
pub const MIN_BLOCK_ROWS: usize = 4;

/// Steps of at most this many multiply-adds (batch × Σ I·O) take the fused step by default, where the
/// network is within its bound: 2^27, just above the largest step measured (`examples/step_paths.rs`, on
/// lavapipe: the fused step faster or level at every network and batch tried, up to 1.06e8). Past it the
/// unfused step is kept: its products gain workgroups with the batch, while the fused first launch stops
/// at `MAX_GROUPS` and its workgroups take more blocks in turn (DESIGN.md).
pub const FUSED_MAX_MACS: usize = 1 << 27;

/// Graphics APIs on which the rule keeps the unfused step whatever the network: wgpu's GL backend, where
/// Mesa's llvmpipe GL driver spent over a minute compiling the fused kernel without finishing
/// (`worked-example --backend gl`, its shader cache off), and the whole command took 3.5–5.2 s on the
/// unfused step (DESIGN.md).
pub const UNFUSED_APIS: [wgpu::Backend; 1] = [wgpu::Backend::Gl];

/// Where the fused step applies on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The widest layer: `FUSED_WORKGROUP`, or 0 where the device allows fewer invocations a workgroup.
    pub max_width: usize,
    /// f32 values of workgroup memory for a block's X and activations (`ACT_CAP` in `fused.wgsl`).
    pub act_capacity: usize,
}

impl Bound {
    pub fn of(limits: &wgpu::Limits) -> Self {
        let invocations = limits.max_compute_invocations_per_workgroup.min(limits.max_compute_workgroup_size_x);
        let max_width = if invocations as usize >= FUSED_WORKGROUP { FUSED_WORKGROUP } else { 0 };
        Self { max_width, act_capacity: fused_act_capacity(limits) as usize }
    }

    /// The largest I_0 + Σ O_l that a block of `MIN_BLOCK_ROWS` rows holds.
    pub fn max_values_per_row(&self) -> usize {
        self.act_capacity / MIN_BLOCK_ROWS
    }

    /// Rows per block for `spec`: as many as fit workgroup memory, at most `MAX_BLOCK_ROWS`; or why the
    /// fused step does not take it on this device.
    pub fn block_rows(&self, spec: &MlpSpec) -> std::result::Result<usize, String> {
        if spec.layers() > MAX_FUSED_LAYERS {
            return Err(format!("{} layers exceed the fused step's {MAX_FUSED_LAYERS}", spec.layers()));
        }
        let widest = (0..spec.layers()).map(|l| spec.layer_shape(l).1).max().unwrap_or(0);
        if widest > self.max_width {
            return Err(format!(
                "a layer {widest} wide exceeds the fused step's width bound of {} on this device",
                self.max_width
            ));
        }
        let per_row = values_per_row(spec);
        let rows = self.act_capacity / per_row.max(1);
        if rows < MIN_BLOCK_ROWS {
            return Err(format!(
                "{per_row} values a row (input and every layer's width) exceed the fused step's bound of {} on \
                 this device ({MIN_BLOCK_ROWS} rows in {} bytes of workgroup memory)",
                self.max_values_per_row(),
                self.act_capacity * 4
            ));
        }
        Ok(rows.min(MAX_BLOCK_ROWS))
    }
}

/// I_0 + Σ O_l: the values one row of a block keeps in workgroup memory.
pub fn values_per_row(spec: &MlpSpec) -> usize {
    spec.input_width() + (0..spec.layers()).map(|l| spec.layer_shape(l).1).sum::<usize>()
}

/// Most workgroups in the fused step's first launch; a batch of more blocks gives each workgroup several,
/// in order.
pub const MAX_GROUPS: usize = 256;

/// How the fused step cuts a batch: blocks of `block_rows` rows, `blocks_per_group` consecutive blocks to
/// each of `groups` workgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub rows: usize,
    pub block_rows: usize,
    pub blocks: usize,
    pub blocks_per_group: usize,
    pub groups: usize,
}

impl Blocking {
    /// A batch of `rows` in blocks of `block_rows` (at most `MAX_GROUPS` workgroups).
    pub fn new(rows: usize, block_rows: usize) -> Self {
        let block_rows = block_rows.clamp(1, MAX_BLOCK_ROWS).min(rows.max(1));
        let blocks = rows.div_ceil(block_rows).max(1);
        let blocks_per_group = blocks.div_ceil(MAX_GROUPS);
        let groups = blocks.div_ceil(blocks_per_group);
        Self { rows, block_rows, blocks, blocks_per_group, groups }
    }

    /// The rows of the batch that workgroup `g` takes.
    pub fn group_rows(&self, g: usize) -> std::ops::Range<usize> {
        let per = self.blocks_per_group * self.block_rows;
        (g * per).min(self.rows)..((g + 1) * per).min(self.rows)
    }

    /// f32 values of the work buffer for `params` parameters: each group's partial gradient and loss sum,
    /// then one Σ g² per workgroup of the update (`norm_parts`).
    pub fn work_len(&self, params: usize, norm_parts: usize) -> usize {
        self.groups.saturating_mul(params).saturating_add(self.groups).saturating_add(norm_parts)
    }
}

/// Checks that the fused step's buffers for a batch of `batch` uploaded rows each fit one storage binding
/// on a device with `limits` (X, Y, the parameters and the work buffer are bound whole).
fn bindings_fit(
    spec: &MlpSpec,
    batch: usize,
    block_rows: usize,
    limits: &wgpu::Limits,
) -> std::result::Result<usize, String> {
    let params = spec.param_layout().len;
    // One Σ g² per workgroup of the update, WG = 256 parameters each.
    let work = Blocking::new(batch, block_rows).work_len(params, params.div_ceil(256));
    let widest = [batch.saturating_mul(spec.input_width()), batch.saturating_mul(spec.output_width()), params, work];
    let bytes = widest.into_iter().max().unwrap_or(0).saturating_mul(4) as u64;
    if bytes > limits.max_storage_buffer_binding_size {
        return Err(format!(
            "its buffers for a batch of {batch} need {bytes} bytes in one binding, more than the device's \
             max_storage_buffer_binding_size of {}",
            limits.max_storage_buffer_binding_size
        ));
    }
    Ok(block_rows)
}

/// The training step a batch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuPath {
    /// Every block of rows through the whole network in one workgroup, then one update launch (two with
    /// clipping).
    Fused,
    /// One launch per layer and operation (gather, products, loss, bias sums, optimizer).
    Unfused,
}

impl GpuPath {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fused => "fused",
            Self::Unfused => "unfused",
        }
    }
}

/// How the step is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathStrategy {
    /// `PathKey::rule`: deterministic, the default.
    Rule,
    /// Always this step (the fused one is an error where the network is outside its bound).
    Fixed(GpuPath),
    /// Both steps timed where the network is within the bound, the faster kept per device and key. Two
    /// processes can choose differently, and so differ in the last bits of their parameters.
    Timed,
}

impl PathStrategy {
    /// The strategy `BACKPROP_GPU_PATH` asks for: `fused` or `unfused` fix the step, `timed` times them,
    /// `rule` (or unset, or blank) is the default; any case.
    pub fn from_env_value(value: Option<&str>) -> Result<Self> {
        let names = [
            ("rule", Self::Rule),
            ("fused", Self::Fixed(GpuPath::Fused)),
            ("unfused", Self::Fixed(GpuPath::Unfused)),
            ("timed", Self::Timed),
        ];
        Ok(environment::choice_value("BACKPROP_GPU_PATH", value, &names)?.unwrap_or(Self::Rule))
    }
}

impl FromStr for PathStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_env_value(Some(s))
    }
}

/// What the choice of step depends on: the network's sizes, the batch, the device's graphics API, and
/// where the device's limits put the fused step's bound (its rows per block, or why it does not apply: too
/// deep, too wide, too many values a row for workgroup memory, or buffers too large for one binding).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathKey {
    pub sizes: Vec<usize>,
    pub batch: usize,
    /// The adapter's graphics API (`AdapterSummary::api`): the rule keeps the unfused step on `UNFUSED_APIS`.
    pub api: wgpu::Backend,
    pub block_rows: std::result::Result<usize, String>,
}

impl PathKey {
    /// The key of batches of `batch` rows of `spec` on a device with `limits`, through `api`
    /// (`GpuContext::path_key` gives a device's).
    pub fn new(spec: &MlpSpec, batch: usize, limits: &wgpu::Limits, api: wgpu::Backend) -> Self {
        let block_rows = Bound::of(limits).block_rows(spec).and_then(|r| bindings_fit(spec, batch, r, limits));
        Self { sizes: spec.sizes().to_vec(), batch, api, block_rows }
    }

    /// Multiply-adds of the step's forward pass: batch × Σ I·O.
    pub fn macs(&self) -> usize {
        let weights: usize = self.sizes.windows(2).map(|w| w[0].saturating_mul(w[1])).sum();
        self.batch.saturating_mul(weights)
    }

    /// The default choice: the fused step where the network is within its bound, the step is at most
    /// `FUSED_MAX_MACS` multiply-adds and the API is not one of `UNFUSED_APIS`; the unfused step otherwise.
    pub fn rule(&self) -> GpuPath {
        let fused = self.block_rows.is_ok() && self.macs() <= FUSED_MAX_MACS && !UNFUSED_APIS.contains(&self.api);
        if fused { GpuPath::Fused } else { GpuPath::Unfused }
    }

    /// The fused step's rows per block, or an error that says why it cannot take this network.
    pub fn fused_block_rows(&self) -> Result<usize> {
        self.block_rows.clone().map_err(|why| {
            let sizes: Vec<String> = self.sizes.iter().map(|s| s.to_string()).collect();
            Error::Invalid(format!("the fused GPU step cannot take the {} network: {why}", sizes.join("-")))
        })
    }
}

impl super::Tuner {
    /// How this device's models choose their training step unless one says otherwise.
    pub fn path_strategy(&self) -> PathStrategy {
        self.path_strategy
    }

    /// Timings of training steps taken so far (each a call of a `gpu_path` timer).
    pub fn path_timings(&self) -> usize {
        self.path_timings.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The step for `key` under `strategy`. Only `Timed` calls `time(path, runs)` (seconds for `runs`
    /// steps back to back in one submit, on the caller's model): for a key within the fused step's bound,
    /// each step is timed as `matmul_tile` times a tiling, the faster cached per key.
    pub fn gpu_path(
        &self,
        key: &PathKey,
        strategy: PathStrategy,
        mut time: impl FnMut(GpuPath, usize) -> Result<f64>,
    ) -> Result<GpuPath> {
        match strategy {
            PathStrategy::Rule => return Ok(key.rule()),
            PathStrategy::Fixed(GpuPath::Fused) => return key.fused_block_rows().map(|_| GpuPath::Fused),
            PathStrategy::Fixed(GpuPath::Unfused) => return Ok(GpuPath::Unfused),
            PathStrategy::Timed if key.block_rows.is_err() => return Ok(GpuPath::Unfused),
            PathStrategy::Timed => {}
        }
        let poisoned = || Error::Gpu("the step cache was poisoned by a panic in another thread".into());
        if let Some(&path) = self.paths.lock().map_err(|_| poisoned())?.get(key) {
            return Ok(path);
        }
        let mut timed = |path, runs| {
            self.path_timings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            time(path, runs)
        };
        let mut best = (f64::INFINITY, GpuPath::Unfused);
        for path in [GpuPath::Unfused, GpuPath::Fused] {
            timed(path, 1)?;
            let runs = super::repetitions(timed(path, 1)?);
            for _ in 0..3 {
                let s = timed(path, runs)? / runs as f64;
                if s < best.0 {
                    best = (s, path);
                }
            }
        }
        self.paths.lock().map_err(|_| poisoned())?.insert(key.clone(), best.1);
        Ok(best.1)
    }
}

#[cfg(test)]
mod tests;
