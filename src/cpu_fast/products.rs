//! The three products of a layer on the CPU, through the `gemm` crate: its AVX-512/AVX2/NEON kernels are
//! chosen at run time, and large products run on every core.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `c = a · b` through the `gemm` crate (AVX-512/AVX2/NEON kernels chosen at run time), on every core
/// when the product is large enough to pay for the threads. a (M, K), b (K, N), c (M, N), any strides.
pub(super) fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    gemm_into(a, b, c, None);
}

/// `c = c + s · a · b`: the product added to what `c` holds, scaled, in the GEMM's own epilogue.
pub(super) fn matmul_add(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, s: f32) {
    gemm_into(a, b, c, Some(s));
}

/// `c = a · b` (`add` None) or `c = c + s · a · b` (`add` Some(s)).
fn gemm_into(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, add: Option<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(b.nrows() == k && c.dim() == (m, n), "matmul shapes: ({m}, {k}) · {:?} -> {:?}", b.dim(), c.dim());
    let par = if m * n * k >= 1 << 23 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    let (sa, sb) = (a.strides(), b.strides());
    let sc = [c.strides()[0], c.strides()[1]];
    // SAFETY: the three views are valid for their shapes and strides (checked above), and c does not
    // alias a or b (it is a distinct mutable borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            sc[1],
            sc[0],
            add.is_some(),
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            1.0,
            add.unwrap_or(1.0),
            false,
            false,
            false,
            par,
        );
    }
}
