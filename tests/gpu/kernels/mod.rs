//! Each GPU kernel against its CPU twin, the function of the same name in `cpu` or `optim`. The list of
//! kernels drives the test: `every_kernel_matches_its_cpu_twin` runs a case for each of `Kernel::ALL`, and
//! its match has no wildcard, so a kernel without a case does not compile. Shapes are awkward (1, primes,
//! non-multiples of every tile and workgroup size), and every output buffer starts NaN-filled so a missed
//! element cannot pass.

mod data;
mod fused;
mod loss;
mod matmul;
mod optim;
mod tilings;

use backprop::gpu::shaders::{Kernel, Tile};
use backprop::gpu::{GpuContext, buffer};
use ndarray::Array2;

use crate::common::to_f32;

pub(super) const ATOL: f64 = 1e-5;
pub(super) const RTOL: f64 = 1e-4;

#[test]
fn every_kernel_matches_its_cpu_twin() {
    for kernel in Kernel::ALL {
        match kernel {
            Kernel::Matmul(tile) => matmul::matches_its_twin(tile, None),
            Kernel::MatmulReg(shape, a, b) => matmul::matches_its_twin(Tile::Reg(shape), Some((a, b))),
            Kernel::LossGrad => loss::loss_grad(),
            Kernel::MseLoss => loss::mse_loss(),
            Kernel::XentLoss => loss::xent_loss(),
            Kernel::SoftmaxRows => loss::softmax_rows(),
            Kernel::BiasGrad => loss::bias_grad(),
            Kernel::Sgd | Kernel::Momentum | Kernel::Adam => optim::update_rule(kernel),
            Kernel::OptimPrepare => optim::optim_prepare(),
            Kernel::GradNorm => optim::grad_norm(),
            Kernel::GradNormFinish => optim::grad_norm_finish(),
            Kernel::GatherRows => data::gather_rows(),
            Kernel::FusedForwardBackward => fused::forward_backward(),
            Kernel::FusedUpdate | Kernel::FusedReduce | Kernel::FusedApply => fused::update(kernel),
        }
    }
}

/// A storage buffer of `len` NaN values: whatever a kernel does not write stays NaN.
fn nan_buffer(ctx: &GpuContext, len: usize) -> wgpu::Buffer {
    buffer::storage_init(ctx, "nan-filled", &vec![f32::NAN; len]).unwrap()
}

/// A storage buffer holding `a` in row-major order (f32-exact values).
fn upload(ctx: &GpuContext, a: &Array2<f64>) -> wgpu::Buffer {
    buffer::storage_init(ctx, "operand", &to_f32(a)).unwrap()
}

fn read(ctx: &GpuContext, b: &wgpu::Buffer, off: usize, len: usize) -> Vec<f32> {
    buffer::read(ctx, b, off, len).unwrap()
}
