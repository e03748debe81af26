//! CPU ranks as threads: every optimizer, clipping, a last batch smaller than the rest and ranks left
//! without rows train like one process; outputs come back in row order; ranks that start apart are
//! refused; a step reports the global batch's loss.

use backprop::distributed::{DataParallel, GradientExchange};
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Backend, CpuBackend, Error, MlpSpec, Params};

use crate::ranks::{Case, check_ranks, data, on_ranks, spec};

fn cpu(s: &MlpSpec, p: &Params<f32>) -> CpuBackend {
    CpuBackend::new(s.clone(), p.clone()).expect("backend")
}

#[test]
fn cpu_ranks_train_like_one_process() {
    let adam = OptimConfig::new(OptimizerKind::adam());
    let momentum = OptimConfig::new(OptimizerKind::momentum(0.9)).with_weight_decay(1e-3);
    // 61 rows: batches of 8 leave a last batch of 5; batches of 2 give a rank of 3 nothing to do.
    check_ranks(2, cpu, &Case::new(OptimConfig::sgd(), 8, 0.1, None));
    check_ranks(3, cpu, &Case::new(OptimConfig::sgd(), 8, 0.1, Some(0.05)));
    check_ranks(3, cpu, &Case::new(momentum, 2, 0.01, None));
    check_ranks(2, cpu, &Case::new(adam, 7, 1e-3, Some(0.5)));
}

#[test]
fn outputs_are_gathered_in_row_order() {
    let (spec, ds) = (spec(), data(23));
    let init = Params::init(&spec, 2);
    let want = cpu(&spec, &init).predict(ds.x.view()).expect("predict");
    for got in
        on_ranks(3, |x| DataParallel::new(cpu(&spec, &init), x).expect("dp").predict(ds.x.view()).expect("predict"))
    {
        assert_eq!(got, want);
    }
}

#[test]
fn ranks_that_start_apart_are_refused_on_every_rank() {
    let spec = spec();
    let errors = on_ranks(2, |x| {
        let init = Params::init(&spec, if x.rank() == 1 { 8 } else { 9 });
        DataParallel::new(cpu(&spec, &init), x).err()
    });
    for e in errors {
        let e = e.expect("refused");
        assert!(matches!(e, Error::Distributed(_)) && e.to_string().contains("rank(s) 1 differ"), "{e}");
    }
}

#[test]
fn a_step_reports_the_global_batch_loss_and_keeps_the_running_sum() {
    let (spec, ds) = (spec(), data(23));
    let init = Params::init(&spec, 6);
    let (x, y) = (ds.x.view(), ds.y.view());
    // A step without its loss, its sum taken; then two with: their losses and the sum of both.
    let steps = |b: &mut dyn Backend| {
        b.step(x, y, 0.1, false).unwrap();
        let first = b.take_loss_sum().unwrap();
        let losses = [b.step(x, y, 0.1, true).unwrap().unwrap(), b.step(x, y, 0.1, true).unwrap().unwrap()];
        ([first, losses[0] as f64, losses[1] as f64], b.take_loss_sum().unwrap())
    };
    let (want, want_sum) = steps(&mut cpu(&spec, &init));
    for (losses, sum) in on_ranks(3, |ex| steps(&mut DataParallel::new(cpu(&spec, &init), ex).expect("dp"))) {
        assert!(
            losses.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6 * b.abs().max(1.0)),
            "{losses:?} vs {want:?}"
        );
        assert!((sum - want_sum).abs() < 1e-4 * want_sum.abs(), "{sum} vs {want_sum}");
    }
}
