//! Data-parallel training with GPU ranks as threads on one device: ranks train like one CPU process with
//! the same global batch, and summing each layer's gradients during the backward pass (as DDP's buckets)
//! gives the same bits as summing after it, on the GPU and on the CPU.

use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{CpuBackend, GpuMlp, MlpSpec, Params};

use crate::ranks::{Case, check_ranks, spec, train_ranks};

fn gpu(s: &MlpSpec, p: &Params<f32>) -> GpuMlp {
    GpuMlp::new(crate::common::gpu(), s.clone(), p).expect("backend")
}

#[test]
fn gpu_ranks_train_like_one_cpu_process() {
    check_ranks(2, gpu, &Case::new(OptimConfig::sgd(), 8, 0.1, None));
    check_ranks(3, gpu, &Case::new(OptimConfig::new(OptimizerKind::adam()), 7, 1e-3, Some(0.5)));
}

#[test]
fn summing_layer_by_layer_during_the_backward_pass_gives_the_same_bits() {
    let cpu = |s: &MlpSpec, p: &Params<f32>| CpuBackend::new(s.clone(), p.clone()).expect("backend");
    let case = Case::new(OptimConfig::new(OptimizerKind::momentum(0.9)), 8, 0.05, Some(0.5));
    let init = Params::init(&spec(), 4);
    for n in [2, 3] {
        let what = format!("{n} ranks, summed during the backward pass vs after it");
        let (during, after) = (train_ranks(n, gpu, &case, &init, true), train_ranks(n, gpu, &case, &init, false));
        crate::common::assert_bits_eq(&format!("gpu, {what}"), &during, &after);
        let (during, after) = (train_ranks(n, cpu, &case, &init, true), train_ranks(n, cpu, &case, &init, false));
        crate::common::assert_bits_eq(&format!("cpu, {what}"), &during, &after);
    }
}
