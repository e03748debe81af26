//! The CPU backend's elementwise loops: a vectorisable `exp`, the activations and their derivatives over
//! slices compiled for the widest vector unit the CPU has, and their split across cores.

use ndarray::Array2;
use rayon::prelude::*;

use crate::model::Activation;

/// Elementwise work smaller than this many values stays on one thread.
pub(super) const PAR_CHUNK: usize = 1 << 15;

pub(super) fn slice(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("workspace arrays are contiguous")
}

pub(super) fn slice_mut(a: &mut Array2<f32>) -> &mut [f32] {
    a.as_slice_mut().expect("workspace arrays are contiguous")
}

/// `f` over matching blocks of whole rows of `z` and `a` (both (B, O), contiguous): all of them in one call
/// for small arrays (one call per row would cost more than the work), blocks of about `PAR_CHUNK / 4`
/// values on every core for large ones.
pub(super) fn row_blocks_par(z: &mut Array2<f32>, a: &mut Array2<f32>, f: impl Fn(&mut [f32], &mut [f32]) + Sync) {
    let o = z.ncols().max(1);
    let (z, a) = (slice_mut(z), slice_mut(a));
    if z.len() < PAR_CHUNK {
        return f(z, a);
    }
    let block = (PAR_CHUNK / 4 / o).max(1) * o;
    z.par_chunks_mut(block).zip(a.par_chunks_mut(block)).for_each(|(zb, ab)| f(zb, ab));
}

/// `f` over matching chunks of four equal-length slices, in parallel for large ones.
pub(super) fn par_zip4(
    d: &mut [f32],
    g: &[f32],
    a: &[f32],
    z: &[f32],
    f: impl Fn(&mut [f32], &[f32], &[f32], &[f32]) + Sync,
) {
    if d.len() < PAR_CHUNK {
        return f(d, g, a, z);
    }
    d.par_chunks_mut(PAR_CHUNK)
        .zip(g.par_chunks(PAR_CHUNK))
        .zip(a.par_chunks(PAR_CHUNK))
        .zip(z.par_chunks(PAR_CHUNK))
        .for_each(|(((d, g), a), z)| f(d, g, a, z));
}

/// `e^x` in f32 to within a few ulp, written so the compiler vectorises loops over it on plain x86-64
/// (libm's `expf` is a call per element; `round` and `mul_add` would be calls too without SSE4.1/FMA):
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2, a degree-6 polynomial for e^r, and 2^n put into the exponent bits.
/// Saturates like `expf` past the f32 range (0 below, +inf above); inputs that would give subnormals give 0.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits
    // max/min rather than clamp, and the integer read from the bits rather than `as i32` (which saturates
    // and maps NaN to 0 element by element): both keep the loop vectorised.
    #[allow(clippy::manual_clamp)] // deliberately not clamp: see above
    let xc = x.max(-87.3).min(88.7);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    // r = x − n·ln 2, with ln 2 split in two so the subtraction stays exact.
    let r = xc - n * 0.693_145_75;
    let r = r - n * 1.428_606_8e-6;
    let p = 1.0 / 720.0_f32;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n as two factors, so n = 128 (just below the top of the range) stays representable.
    let (n1, n2) = (ni >> 1, ni - (ni >> 1));
    let y = p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
    if x > 88.7 {
        f32::INFINITY
    } else if x >= -87.3 {
        y
    } else if x < -87.3 {
        0.0
    } else {
        x // NaN stays NaN, so a diverging run is still seen
    }
}

/// The activations of `cpu::activate` with `fast_exp`.
#[inline(always)]
fn activate_fast(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Sigmoid => 1.0 / (1.0 + fast_exp(-z)),
        Activation::Tanh => {
            let e = fast_exp(-2.0 * z.abs());
            ((1.0 - e) / (1.0 + e)).copysign(z)
        }
        Activation::Relu => z.max(0.0),
        Activation::Identity => z,
    }
}

/// Runs `$body` compiled for AVX-512 or for AVX2+FMA when the CPU has them (checked once, cached by std),
/// else for the baseline target: the elementwise loops then vectorise 16 or 8 wide instead of 4.
macro_rules! multiversion {
    ($vis:vis $name:ident, $generic:ident, ($($arg:ident: $ty:ty),*)) => {
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `widest` is compiled for (AVX-512F implies AVX2, FMA).
                    return unsafe { widest($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

multiversion!(pub(super) activate_slice, activate_slice_generic, (act: Activation, z: &[f32], a: &mut [f32]));
multiversion!(pub(super) derivative_slice, derivative_slice_generic, (act: Activation, d: &mut [f32], g: &[f32], a: &[f32], z: &[f32]));

/// `a = f(z)` over a slice; one branch-free loop per activation so each vectorises.
#[inline(always)]
fn activate_slice_generic(act: Activation, z: &[f32], a: &mut [f32]) {
    let a = &mut a[..z.len()];
    match act {
        Activation::Sigmoid => a.iter_mut().zip(z).for_each(|(a, &z)| *a = 1.0 / (1.0 + fast_exp(-z))),
        Activation::Tanh => a.iter_mut().zip(z).for_each(|(a, &z)| *a = activate_fast(Activation::Tanh, z)),
        Activation::Relu => a.iter_mut().zip(z).for_each(|(a, &z)| *a = z.max(0.0)),
        Activation::Identity => a.copy_from_slice(z),
    }
}

/// `δ = dA ⊙ f'(Z)` over slices, with `f'` taken from `A = f(Z)` where that saves an exp (the same value as
/// `cpu::activate_derivative`); one loop per activation.
#[inline(always)]
fn derivative_slice_generic(act: Activation, d: &mut [f32], g: &[f32], a: &[f32], z: &[f32]) {
    let n = d.len();
    let (g, a, z) = (&g[..n], &a[..n], &z[..n]);
    match act {
        Activation::Sigmoid => (0..n).for_each(|i| d[i] = g[i] * (a[i] * (1.0 - a[i]))),
        Activation::Tanh => (0..n).for_each(|i| d[i] = g[i] * (1.0 - a[i] * a[i])),
        Activation::Relu => (0..n).for_each(|i| d[i] = if z[i] > 0.0 { g[i] } else { 0.0 }),
        Activation::Identity => d.copy_from_slice(g),
    }
}
