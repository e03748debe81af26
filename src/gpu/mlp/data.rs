//! A training set uploaded once: X and Y stay on the GPU, the host writes only the row order of a group of
//! steps, and each batch is gathered from it on the GPU (`gather_rows`) before its step.

use std::collections::HashMap;

use ndarray::ArrayView2;

use super::plan::BatchPlan;
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch};
use crate::gpu::{buffer, memory};

/// X (N, I_0), Y (N, O_L), and the row order of the current group of steps.
pub(super) struct ResidentData {
    pub(super) x: wgpu::Buffer,
    pub(super) y: wgpu::Buffer,
    pub(super) rows: usize,
    /// I_0 and O_L: the values in a row of X and of Y.
    widths: (usize, usize),
    pub(super) order: wgpu::Buffer,
    /// Gathers keyed by (batch rows, offset into the row order): X's rows, then Y's, into that batch's
    /// buffers (one dispatch per piece of the batch and of the data set, where they exceed a binding).
    gathers: HashMap<(usize, usize), Vec<Dispatch>>,
}

impl ResidentData {
    /// Uploads X (N, I_0) and Y (N, O_L), checked against the device's limits before.
    pub(super) fn new(ctx: &GpuContext, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<Self> {
        let n = x.nrows();
        let requests = [
            ("training inputs".to_string(), memory::f32_bytes(x.len())),
            ("training targets".to_string(), memory::f32_bytes(y.len())),
            ("row order".to_string(), memory::f32_bytes(n)),
        ];
        memory::check(ctx, &format!("a training set of {n} rows"), &requests, "use a smaller data set")?;
        Ok(Self {
            x: buffer::storage_init(ctx, "training inputs", &contiguous(x))?,
            y: buffer::storage_init(ctx, "training targets", &contiguous(y))?,
            rows: n,
            widths: (x.ncols(), y.ncols()),
            order: buffer::storage(ctx, "row order", n)?,
            gathers: HashMap::new(),
        })
    }

    /// Makes the gathers of a batch of `b` rows (`plan`'s) at offset `off` of the row order, if not made
    /// yet: X's rows, then Y's, piece by piece of the batch.
    pub(super) fn prepare(&mut self, ctx: &GpuContext, plan: &BatchPlan, b: usize, off: usize) -> Result<()> {
        if !self.gathers.contains_key(&(b, off)) {
            let list = self.gathers_into(ctx, plan, b, off)?;
            self.gathers.insert((b, off), list);
        }
        Ok(())
    }

    /// The gathers of `b` rows, at offset `off` of the row order, into `plan`'s batch buffers: X's rows,
    /// then Y's, piece by piece of the batch.
    pub(super) fn gathers_into(
        &self,
        ctx: &GpuContext,
        plan: &BatchPlan,
        b: usize,
        off: usize,
    ) -> Result<Vec<Dispatch>> {
        let (bufs, (i, o)) = (&plan.buffers, self.widths);
        let mut list = Vec::new();
        for rows in ops::pieces(b, bufs.piece_rows) {
            let (r0, order) = (rows.start, (&self.order, off + rows.start));
            list.extend(ops::gather_rows(ctx, (rows.len(), i), (&self.x, self.rows), order, (&bufs.x, r0 * i))?);
            list.extend(ops::gather_rows(ctx, (rows.len(), o), (&self.y, self.rows), order, (&bufs.y, r0 * o))?);
        }
        Ok(list)
    }

    /// The gathers `prepare` made for the batch of `b` rows at offset `off`.
    pub(super) fn gathers(&self, b: usize, off: usize) -> &[Dispatch] {
        self.gathers.get(&(b, off)).map(Vec::as_slice).unwrap_or_else(|| panic!("no gathers prepared for ({b}, {off})"))
    }

    /// The gathers of a step on batches of `b` at the start of the row order, if prepared.
    pub(super) fn gathers_per_step(&self, b: usize) -> Option<usize> {
        self.gathers.get(&(b, 0)).map(Vec::len)
    }

    /// Writes the row order of the next group of steps.
    pub(super) fn write_order(&self, ctx: &GpuContext, rows: &[usize]) {
        let order: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        ctx.queue.write_buffer(&self.order, 0, bytemuck::cast_slice(&order));
    }
}

/// The values of `a` in row-major order: borrowed where they already are, copied otherwise.
pub(super) fn contiguous<'a>(a: ArrayView2<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match a.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}
