//! Data-parallel training with GPU ranks as threads on one device: ranks train like one CPU process with
//! the same global batch, and summing each layer's gradients during the backward pass (as DDP's buckets)
//! gives the same bits as summing after it, on the GPU and on the CPU; a rank reports the step it runs.

use backprop::distributed::DataParallel;
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Backend, CpuBackend, GpuMlp, MlpSpec, Params};
use ndarray::Array2;

use crate::ranks::{Case, check_ranks, on_ranks, spec, train_ranks};

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

/// A GPU rank's step is the unfused step's kernels (the gradient must exist to be summed); `step_path`, which
/// `train --json` reports, says so once a step ran, as a lone model says which step it took.
#[test]
fn a_gpu_rank_reports_the_unfused_step() {
    let (s, init) = (spec(), Params::init(&spec(), 1));
    let (x, y) = (Array2::<f32>::zeros((6, s.input_width())), Array2::<f32>::zeros((6, s.output_width())));
    let paths = on_ranks(2, |exchange| {
        let mut dp = DataParallel::new(gpu(&s, &init), exchange).expect("the ranks start equal");
        assert_eq!(dp.step_path(), None, "no step ran yet");
        dp.step(x.view(), y.view(), 0.1, false).expect("a step");
        dp.step_path()
    });
    assert_eq!(paths, [Some("unfused".to_string()), Some("unfused".to_string())]);
    let mut alone = gpu(&s, &init);
    alone.step(x.view(), y.view(), 0.1, false).expect("a step");
    assert_eq!(alone.step_path().as_deref(), Some(alone.path_for(6).expect("chosen").name()));
}
