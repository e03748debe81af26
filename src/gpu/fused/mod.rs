//! The fused training step for narrow networks (`shaders/fused.wgsl`, `shaders/fused_update.wgsl`): one
//! batch size's buffers and launches, made once and encoded every step. Where the step applies and how a
//! batch is cut are `gpu::tune`'s (`Bound`, `Blocking`, `PathKey`); the launches are built in `launch`.

mod launch;

pub use launch::{FusedBuffers, Rows, WorkLayout, trace_len};

use std::collections::HashMap;

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::Dispatch;
use crate::gpu::structs::FusedUpdateParams;
use crate::gpu::tune::Blocking;
use crate::gpu::{buffer, memory};
use crate::model::MlpSpec;
use crate::optim::OptimConfig;

/// The fused step for batches of one size.
pub struct FusedPlan {
    spec: MlpSpec,
    cfg: OptimConfig,
    blocking: Blocking,
    layout: WorkLayout,
    /// The groups' partial gradients and losses, and the update's sums of squares.
    work: wgpu::Buffer,
    /// The first launch on the uploaded batch (row order 0 .. B), then the update launches.
    first: Dispatch,
    update: Vec<Dispatch>,
    /// The first launch on resident data, by the batch's first entry in the data's row order.
    resident: HashMap<usize, Dispatch>,
    /// The first launch writing the trace, and the trace (made on first use).
    traced: Option<(Dispatch, wgpu::Buffer)>,
    /// The uploaded batch's X and Y, and its row order 0 .. B.
    batch: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
}

impl FusedPlan {
    /// The fused step for batches of `rows` rows uploaded into `x` (B, I_0) and `y` (B, O_L), in blocks
    /// of `block_rows` (`PathKey::fused_block_rows`), with the optimizer `cfg` at `lr`, clipping to `clip`.
    pub fn new(
        ctx: &GpuContext,
        spec: &MlpSpec,
        (rows, block_rows): (usize, usize),
        (cfg, lr, clip): (&OptimConfig, f32, Option<f32>),
        bufs: FusedBuffers<'_>,
        (x, y): (&wgpu::Buffer, &wgpu::Buffer),
    ) -> Result<Self> {
        let blocking = Blocking::new(rows, block_rows);
        let layout = WorkLayout::new(ctx, spec.param_layout().len, &blocking)?;
        let requests = [
            ("fused partial gradients".to_string(), memory::f32_bytes(layout.len)),
            ("fused row order".to_string(), memory::f32_bytes(rows)),
        ];
        memory::check(ctx, &format!("the fused step of a batch of {rows}"), &requests, "use a smaller --batch-size")?;
        let work = buffer::storage(ctx, "fused partial gradients", layout.len)?;
        let order = buffer::storage(ctx, "fused row order", rows)?;
        let identity: Vec<u32> = (0..rows as u32).collect();
        ctx.queue.write_buffer(&order, 0, bytemuck::cast_slice(&identity));
        let uploaded = Rows { x, y, order: &order, first: 0, n: rows };
        let shape = (&blocking, &layout);
        let first = launch::forward_backward(ctx, spec, shape, cfg, uploaded, bufs, &work, None)?;
        let update = launch::update(ctx, spec, shape, cfg, (lr, clip), bufs, &work)?;
        let batch = (x.clone(), y.clone(), order);
        Ok(Self {
            spec: spec.clone(),
            cfg: *cfg,
            blocking,
            layout,
            work,
            first,
            update,
            resident: HashMap::new(),
            traced: None,
            batch,
        })
    }

    /// How the batch is cut into blocks and groups.
    pub fn blocking(&self) -> &Blocking {
        &self.blocking
    }

    /// The step on the uploaded batch: the first launch, then the update.
    pub fn step(&self) -> impl Iterator<Item = &Dispatch> {
        std::iter::once(&self.first).chain(&self.update)
    }

    /// The first launch on the uploaded batch alone.
    pub fn first(&self) -> &Dispatch {
        &self.first
    }

    /// The update launches alone: `fused_update`, or `fused_reduce` and `fused_apply`.
    pub fn update(&self) -> &[Dispatch] {
        &self.update
    }

    /// Launches in one step.
    pub fn launches(&self) -> usize {
        1 + self.update.len()
    }

    /// The work buffer: the groups' partial gradients at g·P, then their loss sums (`WorkLayout`).
    pub fn work(&self) -> &wgpu::Buffer {
        &self.work
    }

    /// Makes the first launch on resident data (`rows`: the data set, its row order, and the batch's first
    /// entry in that order, by which the launch is kept), unless it exists.
    pub fn ensure_resident(&mut self, ctx: &GpuContext, rows: Rows<'_>, bufs: FusedBuffers<'_>) -> Result<()> {
        if !self.resident.contains_key(&rows.first) {
            let shape = (&self.blocking, &self.layout);
            let d = launch::forward_backward(ctx, &self.spec, shape, &self.cfg, rows, bufs, &self.work, None)?;
            self.resident.insert(rows.first, d);
        }
        Ok(())
    }

    /// The step on resident data whose batch starts at entry `first` of the row order (`ensure_resident`).
    pub fn resident_step(&self, first: usize) -> Result<impl Iterator<Item = &Dispatch>> {
        let d = self.resident.get(&first).ok_or_else(|| Error::Gpu(format!("no fused launch at row {first}")))?;
        Ok(std::iter::once(d).chain(&self.update))
    }

    /// Forgets the launches on resident data (the data set was replaced).
    pub fn forget_resident(&mut self) {
        self.resident.clear();
    }

    /// The step on the uploaded batch with Z, A and δ of every layer written to the trace (made on first use).
    pub fn traced_step(&mut self, ctx: &GpuContext, bufs: FusedBuffers<'_>) -> Result<impl Iterator<Item = &Dispatch>> {
        if self.traced.is_none() {
            let (rows, len) = (self.blocking.rows, trace_len(&self.spec, self.blocking.rows));
            let requests = [("fused trace".to_string(), memory::f32_bytes(len))];
            memory::check(ctx, "the fused step's trace", &requests, "use a smaller --batch-size")?;
            let trace = buffer::storage(ctx, "fused trace", len)?;
            let (x, y, order) = &self.batch;
            let uploaded = Rows { x, y, order, first: 0, n: rows };
            let shape = (&self.blocking, &self.layout);
            let d =
                launch::forward_backward(ctx, &self.spec, shape, &self.cfg, uploaded, bufs, &self.work, Some(&trace))?;
            self.traced = Some((d, trace));
        }
        let (d, _) = self.traced.as_ref().ok_or_else(|| Error::Gpu("the fused trace was not made".into()))?;
        Ok(std::iter::once(d).chain(&self.update))
    }

    /// Z_l, A_l and δ_l (B, O_l) of every layer from the last traced step.
    pub async fn read_trace(&self, ctx: &GpuContext) -> Result<Vec<[Array2<f32>; 3]>> {
        let (_, trace) = self.traced.as_ref().ok_or_else(|| Error::Gpu("no traced fused step yet".into()))?;
        let b = self.blocking.rows;
        let values = buffer::read_async(ctx, trace, 0, trace_len(&self.spec, b)).await?;
        let mut at = 0;
        let mut out = Vec::new();
        for l in 0..self.spec.layers() {
            let o = self.spec.layer_shape(l).1;
            let mut next = || {
                let m = Array2::from_shape_vec((b, o), values[at..at + b * o].to_vec());
                at += b * o;
                m.map_err(|e| Error::Gpu(format!("fused trace shape: {e}")))
            };
            out.push([next()?, next()?, next()?]);
        }
        Ok(out)
    }

    /// Writes the learning rate into the update launches.
    pub fn set_lr(&mut self, ctx: &GpuContext, lr: f32) {
        for d in &mut self.update {
            d.update_params::<FusedUpdateParams>(ctx, |p| p.optim.lr = lr);
        }
    }
}
