//! The GPU step taken apart for data-parallel training (`GradientBackend`): one rank's share of a batch
//! runs forward, loss and backward with the loss scaled by the whole batch; the gradients come back to the
//! host in one copy (or one per layer, while the backward pass goes on), and the update runs from whatever
//! the host writes back.

use std::collections::HashMap;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use ndarray::ArrayView2;

use super::GpuMlp;
use super::data::contiguous;
use super::plan::BatchPlan;
use crate::backend::{self, Batches};
use crate::distributed::{BucketReady, GradientBackend, layer_buckets};
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch};
use crate::optim;

const F32: u64 = size_of::<f32>() as u64;

/// Plans for shares of batches, by (rows of the share, rows of the whole batch), and their gathers from
/// the resident data set (reading the row order from its start).
#[derive(Default)]
pub(super) struct Shares {
    plans: HashMap<(usize, usize), BatchPlan>,
    gathers: HashMap<(usize, usize), Vec<Dispatch>>,
    staging: Option<wgpu::Buffer>,
    /// One staging buffer per layer's gradients, last layer first.
    buckets: Vec<wgpu::Buffer>,
}

impl Shares {
    /// Forgets the gathers, which read the previous resident data set.
    pub(super) fn data_changed(&mut self) {
        self.gathers.clear();
    }

    /// The whole batches whose shares have plans (each one's gradients ran, or were about to).
    pub(super) fn batches(&self) -> impl Iterator<Item = usize> + '_ {
        self.plans.keys().map(|&(_, global)| global)
    }
}

impl GpuMlp {
    fn ensure_share(&mut self, b: usize, global: usize) -> Result<()> {
        if global < b {
            return Err(Error::shape("rows of the whole batch", format!("at least {b}"), global));
        }
        if !self.shares.plans.contains_key(&(b, global)) {
            let plan = self.make_plan(b, global, &format!("making the buffers for {b} rows of a batch of {global}"))?;
            self.shares.plans.insert((b, global), plan);
        }
        Ok(())
    }

    fn share(&self, key: (usize, usize)) -> Result<&BatchPlan> {
        self.shares.plans.get(&key).ok_or_else(|| Error::Gpu(format!("no buffers for a share of {key:?}")))
    }

    /// Checks `rows`, makes the share's plan and gathers, and writes the row order: ready to submit.
    fn prepare_rows(&mut self, rows: &[usize], global: usize) -> Result<(usize, usize)> {
        let n = self.data.as_ref().map(|d| d.rows).ok_or_else(backend::no_data)?;
        Batches::new(rows, rows.len().max(1), n)?;
        let key = (rows.len(), global);
        self.ensure_share(key.0, global)?;
        let data = self.data.as_ref().ok_or_else(backend::no_data)?;
        if !self.shares.gathers.contains_key(&key) {
            let gathers = data.gathers_into(&self.ctx, self.share(key)?, key.0, 0)?;
            self.shares.gathers.insert(key, gathers);
        }
        data.write_order(&self.ctx, rows);
        Ok(key)
    }

    /// Encodes `first` (gathers, or nothing) and the share's forward, loss and backward in one submit.
    fn submit_share(&self, key: (usize, usize), first: &[Dispatch]) -> Result<()> {
        let plan = self.share(key)?;
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gradients") });
        let list = first.iter().chain(&plan.forward).chain(&plan.loss).chain(&plan.backward.dispatches);
        ops::encode_all(ctx, &mut enc, list);
        ctx.queue.submit([enc.finish()]);
        ctx.check()
    }

    fn share_gathers(&self, key: (usize, usize)) -> Result<&[Dispatch]> {
        self.shares.gathers.get(&key).map(Vec::as_slice).ok_or_else(|| Error::Gpu("no gathers for a share".into()))
    }
}

impl GradientBackend for GpuMlp {
    fn compute_gradients(&mut self, x: ArrayView2<f32>, y: ArrayView2<f32>, global: usize) -> Result<()> {
        self.spec.check_batch(x.dim(), Some(y.dim()))?;
        let key = (x.nrows(), global);
        self.ensure_share(key.0, global)?;
        let bufs = &self.share(key)?.buffers;
        self.ctx.queue.write_buffer(&bufs.x, 0, bytemuck::cast_slice(&contiguous(x)));
        self.ctx.queue.write_buffer(&bufs.y, 0, bytemuck::cast_slice(&contiguous(y)));
        self.submit_share(key, &[])
    }

    fn compute_gradients_rows(&mut self, rows: &[usize], global: usize) -> Result<()> {
        let key = self.prepare_rows(rows, global)?;
        self.submit_share(key, self.share_gathers(key)?)
    }

    /// One submit per layer, last first: the first runs the gather, forward, loss and backward until the
    /// last layer's gradients are complete, each later one the backward until the next layer's are; each
    /// ends by copying its layer's gradients to a staging buffer. The host waits for the first submit
    /// only, hands that bucket on, then waits for the next, while the GPU goes on.
    fn compute_gradients_in_buckets(&mut self, rows: &[usize], global: usize, ready: &mut BucketReady) -> Result<()> {
        let key = self.prepare_rows(rows, global)?;
        let buckets = layer_buckets(&self.spec);
        if self.shares.buckets.len() != buckets.len() {
            let ctx = &*self.ctx;
            let staging = |r: &std::ops::Range<usize>| buffer::staging(ctx, "gradient bucket", r.len() as u64 * F32);
            self.shares.buckets = buckets.iter().map(staging).collect();
        }
        let (ctx, plan, gathers) = (&*self.ctx, self.share(key)?, self.share_gathers(key)?);
        let mut submits = Vec::new();
        let mut from = 0;
        for (k, range) in buckets.iter().enumerate() {
            let to = plan.backward.ready[k];
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bucket") });
            let backward = plan.backward.dispatches[from..to].iter();
            match k {
                0 => ops::encode_all(
                    ctx,
                    &mut enc,
                    gathers.iter().chain(&plan.forward).chain(&plan.loss).chain(backward),
                ),
                _ => ops::encode_all(ctx, &mut enc, backward),
            }
            let (at, len) = (range.start as u64 * F32, range.len() as u64 * F32);
            enc.copy_buffer_to_buffer(&self.model.grads, at, &self.shares.buckets[k], 0, len);
            submits.push(ctx.queue.submit([enc.finish()]));
            from = to;
        }
        ctx.check()?;
        for ((range, staging), idx) in buckets.into_iter().zip(&self.shares.buckets).zip(submits) {
            let mut g = read_after(ctx, staging, range.len(), idx)?;
            ready(range.clone(), &mut g)?;
            ctx.queue.write_buffer(&self.model.grads, range.start as u64 * F32, bytemuck::cast_slice(&g));
        }
        Ok(())
    }

    fn read_gradients(&mut self, out: &mut [f32]) -> Result<()> {
        let n = self.layout.len;
        if out.len() != n {
            return Err(Error::shape("gradient vector", n, out.len()));
        }
        let ctx = &*self.ctx;
        let staging =
            self.shares.staging.get_or_insert_with(|| buffer::staging(ctx, "gradients read-back", n as u64 * F32));
        let mut enc =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gradients out") });
        enc.copy_buffer_to_buffer(&self.model.grads, 0, staging, 0, n as u64 * F32);
        ctx.wait(ctx.queue.submit([enc.finish()]))?;
        out.copy_from_slice(&buffer::read_staging(ctx, staging, n)?);
        Ok(())
    }

    fn write_gradients(&mut self, g: &[f32]) -> Result<()> {
        if g.len() != self.layout.len {
            return Err(Error::shape("gradient vector", self.layout.len, g.len()));
        }
        self.ctx.queue.write_buffer(&self.model.grads, 0, bytemuck::cast_slice(g));
        Ok(())
    }

    /// The optimizer's dispatches (`optim_prepare`, the clip, the update) over the gradient buffer.
    fn apply_gradients(&mut self, lr: f32) -> Result<()> {
        optim::check_steps(self.step, 1)?;
        self.set_lr(lr);
        self.step += 1;
        let ctx = &*self.ctx;
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("update") });
        ops::encode_all(ctx, &mut enc, self.optimizer.dispatches(false).iter());
        ctx.queue.submit([enc.finish()]);
        ctx.check()
    }

    fn wait_idle(&mut self) -> Result<()> {
        self.ctx.wait_all()
    }
}

/// Maps `staging` once submission `idx` (which fills it) is done, without waiting for later submissions,
/// and copies out `len` values.
fn read_after(ctx: &GpuContext, staging: &wgpu::Buffer, len: usize, idx: wgpu::SubmissionIndex) -> Result<Vec<f32>> {
    let slice = staging.slice(0..len.max(1) as u64 * F32);
    let (tx, rx) = channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait(idx)?;
    // The answer comes from whichever thread polls the device next (another rank's thread, where ranks
    // share a device): poll until it is here.
    let start = Instant::now();
    let mapped = loop {
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok(r) => break r,
            Err(RecvTimeoutError::Timeout) if start.elapsed().as_secs() < 600 => {
                ctx.device.poll(wgpu::PollType::Poll).map_err(|e| Error::Gpu(format!("polling the GPU: {e}")))?;
            }
            Err(_) => return Err(Error::Gpu("a gradient bucket's read-back was not answered".into())),
        }
    };
    mapped.map_err(|e| Error::Gpu(format!("mapping a gradient bucket: {e}")))?;
    let out = {
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading a gradient bucket: {e}")))?;
        bytemuck::cast_slice::<u8, f32>(&view)[..len].to_vec()
    };
    staging.unmap();
    Ok(out)
}
