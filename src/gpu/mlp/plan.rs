//! One batch size's step, built layer by layer as the reference's `cpu::forward_backward` computes it: the
//! forward pass, the loss, and the backward pass with the update either written as gradients or fused into
//! the products (plain SGD).
//!
//! Work larger than one storage binding is split: a batch into pieces of rows (the losses and gradients
//! scaled by the whole batch, the weight and bias gradients summed over the pieces), a weight matrix into
//! pieces of its rows (forward, the partial sums of K build up in Z; backward, each piece writes its own
//! block of δ_prev's columns or of dW's rows).

use std::ops::Range;

use super::batch::BatchBuffers;
use crate::error::{Error, Result};
use crate::gpu::context::GpuContext;
use crate::gpu::ops::{self, Dispatch, Epilogue, Piece, Span, Strided};
use crate::gpu::structs::{GradParams, MatmulParams};
use crate::model::{Loss, MlpSpec, ParamLayout};

/// What a plan binds of the model it steps: the parameters, the gradients and the loss totals.
pub(super) struct Model<'a> {
    pub(super) ctx: &'a GpuContext,
    pub(super) spec: &'a MlpSpec,
    pub(super) layout: &'a ParamLayout,
    pub(super) params: &'a wgpu::Buffer,
    pub(super) grads: &'a wgpu::Buffer,
    pub(super) loss: &'a wgpu::Buffer,
}

/// The buffers and dispatches of one batch size.
pub(super) struct BatchPlan {
    pub(super) buffers: BatchBuffers,
    /// The forward pass of every piece of the batch, then their losses, then their backward passes.
    pub(super) forward: Vec<Dispatch>,
    pub(super) loss: Vec<Dispatch>,
    pub(super) backward: Backward,
    /// The backward pass with plain SGD fused in, for a batch taken in one piece (fused SGD needs every
    /// piece's δ_prev before any W changes).
    pub(super) fused_sgd: Option<Backward>,
}

/// A backward pass, and which of its dispatches carry the learning rate (as −lr in their uniform's scale).
#[derive(Default)]
pub(super) struct Backward {
    pub(super) dispatches: Vec<Dispatch>,
    products: Vec<usize>,
    biases: Vec<usize>,
    /// Per layer, last layer first, the position in `dispatches` after which its gradients are complete
    /// (its bias gradient in the batch's last piece): data-parallel training hands each on as it is ready.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) ready: Vec<usize>,
}

impl Backward {
    fn push(&mut self, d: Dispatch) {
        self.dispatches.push(d);
    }

    /// A weight product, noted if its uniform carries the learning rate.
    fn push_product(&mut self, d: Dispatch, update: Update) {
        if update == Update::FusedSgd {
            self.products.push(self.dispatches.len());
        }
        self.dispatches.push(d);
    }

    /// A bias sum, noted if its uniform carries the learning rate.
    fn push_bias(&mut self, d: Dispatch, update: Update) {
        if update == Update::FusedSgd {
            self.biases.push(self.dispatches.len());
        }
        self.dispatches.push(d);
    }

    /// Writes −lr into the dispatches that carry the learning rate.
    fn set_lr(&mut self, ctx: &GpuContext, lr: f32) {
        for &i in &self.products {
            self.dispatches[i].update_params::<MatmulParams>(ctx, |p| p.scale = -lr);
        }
        for &i in &self.biases {
            self.dispatches[i].update_params::<GradParams>(ctx, |p| p.scale = -lr);
        }
    }
}

/// Where a layer's weight and bias gradients go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Update {
    /// Into the gradient buffer: the first piece of a batch writes them, later pieces add theirs.
    Gradients { first: bool },
    /// Straight into the parameters, scaled by −lr: `W ← W − lr·dW`, `b ← b − lr·db`.
    FusedSgd,
}

impl BatchPlan {
    /// The plan of a batch of `b` rows: its buffers (checked before any is made) and every dispatch of
    /// its step, built piece by piece and layer by layer. The loss and its gradient are scaled by a batch
    /// of `global` rows: `b` for a whole batch, more for one rank's share of a batch (whose gradients are
    /// summed across ranks before the update, so it has no fused SGD).
    pub(super) fn new(model: &Model<'_>, b: usize, global: usize) -> Result<Self> {
        let w_pieces =
            (0..model.spec.layers()).map(|l| weight_pieces(model.ctx, model.spec, l)).collect::<Result<_>>()?;
        let buffers = BatchBuffers::new(model.ctx, model.spec, b)?;
        let planner = Planner { m: model, bufs: &buffers, batch: global, w_pieces };
        let pieces = ops::pieces(b, buffers.piece_rows);
        let (mut forward, mut loss, mut backward) = (Vec::new(), Vec::new(), Backward::default());
        for rows in &pieces {
            forward.extend(planner.forward(rows)?);
        }
        for rows in &pieces {
            loss.push(planner.loss(rows)?);
            planner.backward(rows, Update::Gradients { first: rows.start == 0 }, &mut backward)?;
        }
        let fused_sgd = match pieces.as_slice() {
            [whole] if global == b => {
                let mut fused = Backward::default();
                planner.backward(whole, Update::FusedSgd, &mut fused)?;
                Some(fused)
            }
            _ => None,
        };
        Ok(Self { buffers, forward, loss, backward, fused_sgd })
    }

    /// Writes −lr into the fused SGD dispatches.
    pub(super) fn set_sgd_lr(&mut self, ctx: &GpuContext, lr: f32) {
        if let Some(fused) = self.fused_sgd.as_mut() {
            fused.set_lr(ctx, lr);
        }
    }
}

/// Builds one plan's dispatches.
struct Planner<'a> {
    m: &'a Model<'a>,
    bufs: &'a BatchBuffers,
    /// Rows of the whole batch (a piece's losses and gradients are scaled by it): of the global batch, for
    /// one rank's share.
    batch: usize,
    /// Per layer, the ranges of W's rows that each fit one binding.
    w_pieces: Vec<Vec<Range<usize>>>,
}

impl Planner<'_> {
    /// The forward pass of the batch's rows `rows`, layer by layer.
    fn forward(&self, rows: &Range<usize>) -> Result<Vec<Dispatch>> {
        let mut list = Vec::new();
        for l in 0..self.m.spec.layers() {
            // Z_l (B, O) = A_{l-1} (B, I) · W_l (I, O) + b_l;  A_l = f_l(Z_l)
            list.extend(self.layer_forward(l, rows)?);
        }
        if self.m.spec.loss() == Loss::CrossEntropy {
            // A_L = softmax(Z_L), over the identity output of the last product
            list.push(self.softmax(rows)?);
        }
        Ok(list)
    }

    /// `Z_l = A_{l-1}·W_l + b_l; A_l = f_l(Z_l)`: one product, or, where W_l exceeds a binding, one per
    /// piece of its rows (of K), the partial sums building up in Z and the last piece applying f.
    fn layer_forward(&self, l: usize, rows: &Range<usize>) -> Result<Vec<Dispatch>> {
        let ((i, o), off, activation) =
            (self.m.spec.layer_shape(l), self.m.layout.layers[l], self.m.spec.activations()[l]);
        let (z, a) = (self.at(&self.bufs.pre[l], rows, o), self.at(&self.bufs.post[l], rows, o));
        let bias = Span::from((self.m.params, off.b));
        let k_pieces = &self.w_pieces[l];
        let mut list = Vec::new();
        for (j, ks) in k_pieces.iter().enumerate() {
            let a_prev =
                Strided { buffer: self.input(l), offset: rows.start * i + ks.start, row_stride: i, col_stride: 1 };
            let w = Strided::rows(self.m.params, off.w + ks.start * o, o);
            let (epilogue, out) = match (j, k_pieces.len()) {
                (_, 1) => (Epilogue::Forward { bias, pre: z, activation }, a),
                (0, _) => (Epilogue::Bias { bias }, z),
                (j, n) if j + 1 < n => (Epilogue::AddScaled(1.0), z),
                _ => (Epilogue::FinishForward { pre: z, activation }, a),
            };
            list.push(self.product((rows.len(), o, ks.len()), a_prev, w, epilogue, out.rows(o))?);
        }
        Ok(list)
    }

    /// `A_L = softmax(Z_L)` per row.
    fn softmax(&self, rows: &Range<usize>) -> Result<Dispatch> {
        let (last, o) = (self.m.spec.layers() - 1, self.m.spec.output_width());
        let (z, a) = (self.at(&self.bufs.pre[last], rows, o), self.at(&self.bufs.post[last], rows, o));
        ops::softmax_rows(self.m.ctx, (rows.len(), o), z, a)
    }

    /// The batch's loss (this piece's share) into the loss totals, adding `loss·B` to the running sum:
    /// `mean((A_L − Y)²)`, or the softmax cross-entropy from the logits Z_L.
    fn loss(&self, rows: &Range<usize>) -> Result<Dispatch> {
        let (ctx, last, o) = (self.m.ctx, self.m.spec.layers() - 1, self.m.spec.output_width());
        let (shape, piece, y) = ((rows.len(), o), self.piece(rows), self.at(&self.bufs.y, rows, o));
        let weight = self.batch as f32;
        match self.m.spec.loss() {
            Loss::Mse => {
                ops::mse_loss(ctx, shape, piece, self.at(&self.bufs.post[last], rows, o), y, self.m.loss, weight)
            }
            Loss::CrossEntropy => {
                ops::xent_loss(ctx, shape, piece, self.at(&self.bufs.pre[last], rows, o), y, self.m.loss, weight)
            }
        }
    }

    /// The backward pass of the batch's rows `rows` into `out`, the layers' updates going to `update`.
    fn backward(&self, rows: &Range<usize>, update: Update, out: &mut Backward) -> Result<()> {
        // δ_L (B, O_L) = 2 (A_L − Y) / (B·O_L) ⊙ f'_L(Z_L) under MSE, (softmax(Z_L) − Y) / B under cross-entropy
        out.push(self.output_delta(rows)?);
        out.ready.clear(); // a later piece's positions replace an earlier one's
        for l in (0..self.m.spec.layers()).rev() {
            // δ_{l-1} (B, I) = (δ_l · W_lᵀ) ⊙ f'_{l-1}(Z_{l-1}), with W_l as the forward pass used it
            if l > 0 {
                self.input_grad(l, rows)?.into_iter().for_each(|d| out.push(d));
            }
            // dW_l (I, O) = A_{l-1}ᵀ · δ_l, the outer products summed over the batch; or W_l −= lr·dW_l
            for d in self.weight_grad(l, rows, update)? {
                out.push_product(d, update);
            }
            // db_l (O) = Σ_b δ_l; or b_l −= lr·db_l
            out.push_bias(self.bias_grad(l, rows, update)?, update);
            out.ready.push(out.dispatches.len());
        }
        Ok(())
    }

    /// The last layer's δ in one kernel: the loss gradient times the output activation's derivative (MSE),
    /// or the fused softmax cross-entropy gradient.
    fn output_delta(&self, rows: &Range<usize>) -> Result<Dispatch> {
        let (ctx, last, o) = (self.m.ctx, self.m.spec.layers() - 1, self.m.spec.output_width());
        let (shape, piece) = ((rows.len(), o), self.piece(rows));
        let (a, y, d) = (
            self.at(&self.bufs.post[last], rows, o),
            self.at(&self.bufs.y, rows, o),
            self.at(&self.bufs.delta[last], rows, o),
        );
        match self.m.spec.loss() {
            Loss::Mse => ops::mse_delta(ctx, shape, piece, self.m.spec.activations()[last], a, y, d),
            Loss::CrossEntropy => ops::xent_grad(ctx, shape, piece, a, y, d),
        }
    }

    /// `δ_{l-1}[:, ks] = (δ_l · W_l[ks]ᵀ) ⊙ f'(Z_{l-1}[:, ks])` for each piece `ks` of W_l's rows, the
    /// derivative fused into the product's epilogue.
    fn input_grad(&self, l: usize, rows: &Range<usize>) -> Result<Vec<Dispatch>> {
        let ((i, o), off, activation) =
            (self.m.spec.layer_shape(l), self.m.layout.layers[l], self.m.spec.activations()[l - 1]);
        let delta = self.at(&self.bufs.delta[l], rows, o).rows(o);
        let mut list = Vec::new();
        for ks in &self.w_pieces[l] {
            let at = rows.start * i + ks.start;
            let z = Span::from((&self.bufs.pre[l - 1], at));
            let w_t = Strided::transposed(self.m.params, off.w + ks.start * o, o);
            let out = Strided::rows(&self.bufs.delta[l - 1], at, i);
            list.push(self.product(
                (rows.len(), ks.len(), o),
                delta,
                w_t,
                Epilogue::Derivative { z, activation },
                out,
            )?);
        }
        Ok(list)
    }

    /// `dW_l[ks] = A_{l-1}[:, ks]ᵀ · δ_l` for each piece `ks` of W_l's rows, into the gradients (summed
    /// over the pieces of a batch), or `W_l[ks] −= lr·dW_l[ks]` with plain SGD fused.
    fn weight_grad(&self, l: usize, rows: &Range<usize>, update: Update) -> Result<Vec<Dispatch>> {
        let ((i, o), off) = (self.m.spec.layer_shape(l), self.m.layout.layers[l]);
        let delta = self.at(&self.bufs.delta[l], rows, o).rows(o);
        let (epilogue, target) = match update {
            Update::Gradients { first: true } => (Epilogue::Store, self.m.grads),
            Update::Gradients { first: false } => (Epilogue::AddScaled(1.0), self.m.grads),
            // −lr is written in later (`Backward::set_lr`).
            Update::FusedSgd => (Epilogue::AddScaled(0.0), self.m.params),
        };
        let mut list = Vec::new();
        for ks in &self.w_pieces[l] {
            let a_t =
                Strided { buffer: self.input(l), offset: rows.start * i + ks.start, row_stride: 1, col_stride: i };
            let out = Strided::rows(target, off.w + ks.start * o, o);
            list.push(self.product((ks.len(), o, rows.len()), a_t, delta, epilogue, out)?);
        }
        Ok(list)
    }

    /// `db_l = Σ_b δ_l` into the gradients (the first piece writes, later ones add), or `b_l −= lr·db_l`.
    fn bias_grad(&self, l: usize, rows: &Range<usize>, update: Update) -> Result<Dispatch> {
        let (ctx, (_, o), off) = (self.m.ctx, self.m.spec.layer_shape(l), self.m.layout.layers[l]);
        let delta = self.at(&self.bufs.delta[l], rows, o);
        match update {
            Update::Gradients { first } => {
                ops::bias_grad_piece(ctx, (rows.len(), o), first, delta, (self.m.grads, off.b))
            }
            Update::FusedSgd => ops::bias_sgd(ctx, (rows.len(), o), 0.0, delta, (self.m.params, off.b)),
        }
    }

    /// A product with the tiling the device's tuner picks for it (measured first, once per device and
    /// key, where the tuner's strategy says so).
    fn product(
        &self,
        shape: (usize, usize, usize),
        a: Strided<'_>,
        b: Strided<'_>,
        epilogue: Epilogue<'_>,
        out: Strided<'_>,
    ) -> Result<Dispatch> {
        let tile = ops::tile_for(self.m.ctx, shape, &a, &b)?;
        ops::matmul(self.m.ctx, tile, shape, a, b, epilogue, out)
    }

    /// Layer `l`'s input: X for the first layer, A_{l-1} after.
    fn input(&self, l: usize) -> &wgpu::Buffer {
        if l == 0 { &self.bufs.x } else { &self.bufs.post[l - 1] }
    }

    /// The rows `rows` of a (B, cols) batch buffer.
    fn at<'b>(&self, buffer: &'b wgpu::Buffer, rows: &Range<usize>, cols: usize) -> Span<'b> {
        Span { buffer, offset: rows.start * cols }
    }

    /// Which rows of the whole batch a loss kernel sees.
    fn piece(&self, rows: &Range<usize>) -> Piece {
        Piece { batch: self.batch, first: rows.start == 0 }
    }
}

/// Row ranges of layer `l`'s weights, each small enough for one storage binding; an error where even one
/// row is too large.
pub(super) fn weight_pieces(ctx: &GpuContext, spec: &MlpSpec, l: usize) -> Result<Vec<Range<usize>>> {
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
