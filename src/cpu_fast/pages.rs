//! Zeroed f32 buffers for the CPU backend, whose large ones ask the kernel for 2 MiB pages.

use ndarray::Array2;

/// A zeroed vector of `n` values whose large aligned part the kernel may back with 2 MiB pages (Linux; a
/// hint only): the GEMM walks weight matrices and activations of many MiB, where 4 KiB pages cost TLB misses.
/// The hint is given before the first write, which is when the pages are chosen.
pub(super) fn zeroed(n: usize) -> Vec<f32> {
    let v = vec![0.0f32; n];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, end) = (v.as_ptr() as usize, v.as_ptr() as usize + n * size_of::<f32>());
        let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if hi > lo {
            // SAFETY: [lo, hi) lies inside the vector's allocation; MADV_HUGEPAGE changes no contents.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

pub(super) fn zeros2(shape: (usize, usize)) -> Array2<f32> {
    Array2::from_shape_vec(shape, zeroed(shape.0 * shape.1)).expect("length matches shape")
}
