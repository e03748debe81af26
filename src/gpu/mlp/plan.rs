//! A model's buffers and dispatch lists for one batch size, and how they split where a batch or a weight
//! matrix is larger than one storage binding.

use super::GpuMlp;
use crate::error::{Error, Result};
use crate::gpu::buffer;
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch, Epilogue, Span, Strided};
use crate::gpu::structs::{GradParams, MatmulParams};
use crate::model::{Loss, MlpSpec};

/// Buffers and dispatches for one batch size.
pub(super) struct BatchPlan {
    pub(super) x: wgpu::Buffer,
    pub(super) y: wgpu::Buffer,
    /// Per layer: Z_l, A_l, δ_l, each (B, O_l).
    pub(super) pre: Vec<wgpu::Buffer>,
    pub(super) post: Vec<wgpu::Buffer>,
    pub(super) delta: Vec<wgpu::Buffer>,
    /// Rows per piece of the batch: the whole batch unless its buffers exceed one storage binding.
    pub(super) piece_rows: usize,
    /// The forward pass of every piece, then their losses, then their backward passes.
    pub(super) forward: Vec<Dispatch>,
    pub(super) loss: Vec<Dispatch>,
    pub(super) backward: Vec<Dispatch>,
    /// The backward pass with plain SGD fused in (the weight and bias gradients added into the parameters,
    /// scaled by −lr, as they are computed), for a batch taken in one piece; `None` otherwise.
    pub(super) backward_sgd: Option<Vec<Dispatch>>,
    /// Positions in `backward_sgd` of its products and of its bias sums, whose uniforms carry −lr.
    pub(super) sgd_products: Vec<usize>,
    pub(super) sgd_biases: Vec<usize>,
}

impl BatchPlan {
    /// Writes −lr into the fused SGD dispatches.
    pub(super) fn set_sgd_lr(&mut self, ctx: &GpuContext, lr: f32) {
        if let Some(list) = self.backward_sgd.as_mut() {
            for &i in &self.sgd_products {
                list[i].update_params::<MatmulParams>(ctx, |p| p.scale = -lr);
            }
            for &i in &self.sgd_biases {
                list[i].update_params::<GradParams>(ctx, |p| p.scale = -lr);
            }
        }
    }
}

impl GpuMlp {
    /// Rows per piece of a batch of `b`: the whole batch where every batch buffer fits one storage
    /// binding, else the most rows that do, rounded down to the offset alignment so every piece starts on
    /// an aligned offset.
    pub(super) fn piece_rows(&self, b: usize) -> Result<usize> {
        let ctx = &*self.ctx;
        let widest =
            (0..self.spec.layers()).map(|l| self.spec.layer_shape(l).1).fold(self.spec.input_width(), usize::max);
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

    /// The buffers and dispatches for batch size `b`. A batch whose buffers exceed one storage binding
    /// is taken in pieces of rows (the weight and bias gradients summed over the pieces), and a weight
    /// matrix larger than one binding in pieces of its rows (the forward product summed over them).
    pub(super) fn build_plan(&self, b: usize) -> Result<BatchPlan> {
        let ctx = &*self.ctx;
        let spec = &self.spec;
        let n_layers = spec.layers();
        let last = n_layers - 1;
        let xent = spec.loss() == Loss::CrossEntropy;
        let out_w = spec.output_width();
        let x = buffer::storage(ctx, "input batch", b * spec.input_width())?;
        let y = buffer::storage(ctx, "target batch", b * out_w)?;
        let (mut pre, mut post, mut delta) = (Vec::new(), Vec::new(), Vec::new());
        for l in 0..n_layers {
            let o = spec.layer_shape(l).1;
            pre.push(buffer::storage(ctx, &format!("Z{l}"), b * o)?);
            post.push(buffer::storage(ctx, &format!("A{l}"), b * o)?);
            delta.push(buffer::storage(ctx, &format!("delta{l}"), b * o)?);
        }
        let piece_rows = self.piece_rows(b)?;
        let row_pieces = ops::pieces(b, piece_rows);
        let w_pieces = (0..n_layers).map(|l| weight_pieces(ctx, spec, l)).collect::<Result<Vec<_>>>()?;

        let mut forward = Vec::new();
        for rows in &row_pieces {
            let (r0, mb) = (rows.start, rows.len());
            for l in 0..n_layers {
                let (i, o) = spec.layer_shape(l);
                let off = self.layout.layers[l];
                let input = if l == 0 { &x } else { &post[l - 1] };
                let act = spec.activations()[l];
                let (z, a) = (Span::from((&pre[l], r0 * o)), Span::from((&post[l], r0 * o)));
                let bias = Span::from((&self.params, off.b));
                let n_k = w_pieces[l].len();
                // Z = A_prev · W + b; A = f(Z). Split along K where W exceeds a binding: the partial sums
                // build up in Z, and the last piece applies f.
                for (j, ks) in w_pieces[l].iter().enumerate() {
                    let a_in = ops::Strided { buffer: input, offset: r0 * i + ks.start, row_stride: i, col_stride: 1 };
                    let w = Strided::rows(&self.params, off.w + ks.start * o, o);
                    let (epilogue, dst) = match (j, n_k) {
                        (_, 1) => (Epilogue::Forward { bias, pre: z, activation: act }, a),
                        (0, _) => (Epilogue::Bias { bias }, z),
                        (j, n) if j + 1 < n => (Epilogue::AddScaled(1.0), z),
                        _ => (Epilogue::FinishForward { pre: z, activation: act }, a),
                    };
                    let dst = Strided::rows(dst.buffer, dst.offset, o);
                    forward.push(product(ctx, (mb, o, ks.len()), a_in, w, epilogue, dst)?);
                }
            }
            if xent {
                // A_L = softmax(Z_L), overwriting the identity output of the product.
                let at = r0 * out_w;
                forward.push(ops::softmax_rows(ctx, (mb, out_w), (&pre[last], at), (&post[last], at))?);
            }
        }

        // The backward pass of one piece of the batch into `list`. With `sgd`, plain SGD is fused in: each
        // layer's δ_prev is computed first (it needs W as the forward pass used it), then `W += −lr·A_prevᵀ·δ`
        // is one product adding into W and `b += −lr·Σδ` one column sum; their positions in `list` go to
        // `lr_slots` (products, biases), whose uniforms carry −lr.
        let backward_piece = |rows: &std::ops::Range<usize>,
                              sgd: bool,
                              list: &mut Vec<Dispatch>,
                              lr_slots: &mut (Vec<usize>, Vec<usize>)|
         -> Result<()> {
            let (r0, mb) = (rows.start, rows.len());
            let piece = ops::Piece { batch: b, first: r0 == 0 };
            let at = r0 * out_w;
            let shape = (mb, out_w);
            // δ_L in one kernel: the loss gradient times the output activation's derivative (MSE), or the
            // fused softmax cross-entropy gradient.
            let (pred, target, d_last) = ((&post[last], at), (&y, at), (&delta[last], at));
            list.push(match spec.loss() {
                Loss::Mse => ops::mse_delta(ctx, shape, piece, spec.activations()[last], pred, target, d_last)?,
                Loss::CrossEntropy => ops::xent_grad(ctx, shape, piece, pred, target, d_last)?,
            });
            for l in (0..n_layers).rev() {
                let (i, o) = spec.layer_shape(l);
                let off = self.layout.layers[l];
                let input = if l == 0 { &x } else { &post[l - 1] };
                let d = (&delta[l], r0 * o);
                // δ_prev[:, ks] = (δ · W[ks]ᵀ) ⊙ f'(Z_prev[:, ks]), the derivative fused into the epilogue
                let input_grads = |list: &mut Vec<Dispatch>| -> Result<()> {
                    if l == 0 {
                        return Ok(());
                    }
                    for ks in &w_pieces[l] {
                        let z = Span::from((&pre[l - 1], r0 * i + ks.start));
                        list.push(product(
                            ctx,
                            (mb, ks.len(), o),
                            Strided::rows(d.0, d.1, o),
                            Strided::transposed(&self.params, off.w + ks.start * o, o),
                            Epilogue::Derivative { z, activation: spec.activations()[l - 1] },
                            Strided::rows(&delta[l - 1], r0 * i + ks.start, i),
                        )?);
                    }
                    Ok(())
                };
                if sgd {
                    input_grads(list)?;
                }
                let acc = if piece.first { Epilogue::Store } else { Epilogue::AddScaled(1.0) };
                for ks in &w_pieces[l] {
                    // dW[ks] = A_prev[:, ks]ᵀ · δ, summed over the pieces of the batch; or W[ks] −= lr·that
                    let a_t = ops::Strided { buffer: input, offset: r0 * i + ks.start, row_stride: 1, col_stride: i };
                    let (epilogue, target) = if sgd {
                        lr_slots.0.push(list.len());
                        (Epilogue::AddScaled(0.0), &self.params)
                    } else {
                        (acc, &self.grads)
                    };
                    let (shape, d_rows) = ((ks.len(), o, mb), Strided::rows(d.0, d.1, o));
                    let out = Strided::rows(target, off.w + ks.start * o, o);
                    list.push(product(ctx, shape, a_t, d_rows, epilogue, out)?);
                }
                // db = Σ_b δ_b; or b −= lr·that
                if sgd {
                    lr_slots.1.push(list.len());
                    list.push(ops::bias_sgd(ctx, (mb, o), 0.0, d, (&self.params, off.b))?);
                } else {
                    list.push(ops::bias_grad_piece(ctx, (mb, o), piece.first, d, (&self.grads, off.b))?);
                    input_grads(list)?;
                }
            }
            Ok(())
        };

        let mut loss = Vec::new();
        let mut backward = Vec::new();
        let mut unused = (Vec::new(), Vec::new());
        for rows in &row_pieces {
            let (r0, mb) = (rows.start, rows.len());
            let piece = ops::Piece { batch: b, first: r0 == 0 };
            let (at, shape) = (r0 * out_w, (mb, out_w));
            loss.push(match spec.loss() {
                Loss::Mse => ops::mse_loss(ctx, shape, piece, (&post[last], at), (&y, at), &self.loss, b as f32)?,
                Loss::CrossEntropy => {
                    ops::xent_loss(ctx, shape, piece, (&pre[last], at), (&y, at), &self.loss, b as f32)?
                }
            });
            backward_piece(rows, false, &mut backward, &mut unused)?;
        }
        // Fused SGD needs every piece's δ_prev before any W changes, so it is built for whole batches only.
        let mut sgd_slots = (Vec::new(), Vec::new());
        let backward_sgd = if row_pieces.len() == 1 {
            let mut list = Vec::new();
            backward_piece(&row_pieces[0], true, &mut list, &mut sgd_slots)?;
            Some(list)
        } else {
            None
        };
        Ok(BatchPlan {
            x,
            y,
            pre,
            post,
            delta,
            piece_rows,
            forward,
            loss,
            backward,
            backward_sgd,
            sgd_products: sgd_slots.0,
            sgd_biases: sgd_slots.1,
        })
    }
}

/// Row ranges of layer `l`'s weights, each small enough for one storage binding; an error where even one
/// row is too large.
pub(super) fn weight_pieces(ctx: &GpuContext, spec: &MlpSpec, l: usize) -> Result<Vec<std::ops::Range<usize>>> {
    let (i, o) = spec.layer_shape(l);
    match ops::rows_per_binding(ctx, o) {
        0 => Err(Error::DeviceLimit {
            what: format!("one row of layer {}'s weights ({o} values)", l + 1),
            limit: "max_storage_buffer_binding_size",
            requested: (o * 4) as u64,
            available: ctx.limits().max_storage_buffer_binding_size,
        }),
        rows => Ok(ops::pieces(i, rows)),
    }
}

/// A product with the tiling the device's tuner picks for it (measuring it first, once per device and key,
/// where the tuner's strategy says so).
fn product(
    ctx: &GpuContext,
    shape: (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    epilogue: Epilogue<'_>,
    out: Strided<'_>,
) -> Result<Dispatch> {
    let tile = ops::tile_for(ctx, shape, &a, &b)?;
    ops::matmul(ctx, tile, shape, a, b, epilogue, out)
}
