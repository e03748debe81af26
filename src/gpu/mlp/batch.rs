//! The buffers of one batch size: X, Y, and per layer Z, A and δ. They are checked against the device's
//! limits and the memory they come from before any is made, and taken in pieces of rows where a layer's
//! values would exceed one storage binding.

use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::{buffer, memory, ops};
use crate::model::MlpSpec;

/// X (B, I_0), Y (B, O_L), and per layer l: Z_l, A_l and δ_l (B, O_l).
pub(super) struct BatchBuffers {
    pub(super) x: wgpu::Buffer,
    pub(super) y: wgpu::Buffer,
    pub(super) pre: Vec<wgpu::Buffer>,
    pub(super) post: Vec<wgpu::Buffer>,
    pub(super) delta: Vec<wgpu::Buffer>,
    /// Rows per piece of the batch: the whole batch unless a layer's values exceed one storage binding.
    pub(super) piece_rows: usize,
}

impl BatchBuffers {
    /// The buffers of a batch of `b` rows, checked (bindings, buffer sizes, memory) before any is made.
    pub(super) fn new(ctx: &GpuContext, spec: &MlpSpec, b: usize) -> Result<Self> {
        let piece_rows = piece_rows(ctx, spec, b)?;
        let requests = requests(spec, b);
        memory::check(ctx, &format!("a batch of {b} rows"), &requests, "use a smaller --batch-size")?;
        let mut made = requests.iter().map(|(label, bytes)| buffer::storage(ctx, label, (*bytes / 4) as usize));
        let mut next = || made.next().expect("one request per buffer");
        let (x, y) = (next()?, next()?);
        let (mut pre, mut post, mut delta) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..spec.layers() {
            pre.push(next()?);
            post.push(next()?);
            delta.push(next()?);
        }
        Ok(Self { x, y, pre, post, delta, piece_rows })
    }
}

/// Every buffer of a batch of `b`, in the order `BatchBuffers::new` makes them: X, Y, then Z_l, A_l, δ_l
/// for each layer.
fn requests(spec: &MlpSpec, b: usize) -> Vec<memory::Request> {
    let values = |w: usize| memory::f32_bytes(b.saturating_mul(w));
    let mut r = vec![
        ("input batch".to_string(), values(spec.input_width())),
        ("target batch".to_string(), values(spec.output_width())),
    ];
    for l in 0..spec.layers() {
        let o = spec.layer_shape(l).1;
        r.extend(["Z", "A", "delta"].map(|name| (format!("{name}{l}"), values(o))));
    }
    r
}

/// Rows per piece of a batch of `b`: the whole batch where every batch buffer fits one storage binding,
/// else the most rows that do, rounded down to the offset alignment so every piece starts on an aligned
/// offset; an error where not even that many rows of the widest layer fit.
fn piece_rows(ctx: &GpuContext, spec: &MlpSpec, b: usize) -> Result<usize> {
    let widest = (0..spec.layers()).map(|l| spec.layer_shape(l).1).fold(spec.input_width(), usize::max);
    if b.saturating_mul(widest) <= ops::binding_capacity(ctx) {
        return Ok(b);
    }
    match ops::aligned_rows_per_binding(ctx, widest) {
        0 => Err(Error::DeviceLimit {
            what: format!(
                "{} rows of the widest layer ({widest} values each), the least a piece of a batch can hold",
                ops::offset_alignment(ctx)
            ),
            limit: "max_storage_buffer_binding_size",
            requested: (ops::offset_alignment(ctx) * widest * 4) as u64,
            available: ctx.limits().max_storage_buffer_binding_size,
        }),
        rows => Ok(rows),
    }
}
