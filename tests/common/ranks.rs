//! Data-parallel training with ranks as threads (`ThreadExchange`): a network, a data set and a run's
//! settings, the ranks run side by side, and their parameters compared with one CPU process's. Included by
//! path by the binaries that train ranks (data_parallel, gpu); it needs `crate::common`.

use backprop::data::Dataset;
use backprop::distributed::{DataParallel, GradientBackend, ThreadExchange};
use backprop::optim::{OptimConfig, Schedule};
use backprop::train::{self, TrainConfig};
use backprop::{Activation, Backend, CpuBackend, Loss, MlpSpec, Params};

/// `f(exchange)` on `n` threads, one per rank; the results in rank order.
pub fn on_ranks<R: Send>(n: usize, f: impl Fn(ThreadExchange) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadExchange::group(n).into_iter().map(|x| s.spawn(|| f(x))).collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    })
}

/// 2-13-5-2, tanh, MSE: small, with widths that divide nothing.
pub fn spec() -> MlpSpec {
    MlpSpec::uniform(vec![2, 13, 5, 2], Activation::Tanh, Loss::Mse).expect("spec")
}

pub fn data(rows: usize) -> Dataset {
    backprop::data::spirals(rows, 3).expect("spirals")
}

/// What a run sets beside the loop's settings: the optimizer, the global batch, the learning rate, the clip.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub optimizer: OptimConfig,
    pub batch: usize,
    pub lr: f64,
    pub clip: Option<f32>,
}

impl Case {
    pub fn new(optimizer: OptimConfig, batch: usize, lr: f64, clip: Option<f32>) -> Self {
        Case { optimizer, batch, lr, clip }
    }

    /// Two epochs in a seeded shuffle.
    fn config(&self) -> TrainConfig {
        let (epochs, schedule, seed) = (2, Schedule::Constant, 5);
        TrainConfig { epochs, batch_size: self.batch, lr: self.lr, schedule, shuffle: true, seed, verify: None }
    }

    /// Trains `backend` on `ds` and returns its parameters, flat.
    pub fn train(&self, backend: &mut dyn Backend, ds: &Dataset) -> backprop::Result<Vec<f32>> {
        backend.set_optimizer(self.optimizer)?;
        backend.set_grad_clip(self.clip)?;
        train::train(backend, ds, None, &self.config(), 0, &mut train::Silent)?;
        Ok(backend.params()?.to_flat())
    }
}

/// Trains `n` ranks of `make` backends (the gradients summed during the backward pass with `overlap`) on
/// 61 rows from `init`; asserts that every rank ends with the same bits and returns them.
pub fn train_ranks<B: GradientBackend>(
    n: usize,
    make: impl Fn(&MlpSpec, &Params<f32>) -> B + Sync,
    case: &Case,
    init: &Params<f32>,
    overlap: bool,
) -> Vec<f32> {
    let (spec, ds) = (spec(), data(61));
    let per_rank = on_ranks(n, |x| {
        let mut dp = DataParallel::new(make(&spec, init), x).expect("ranks start equal");
        dp.set_overlap(overlap);
        case.train(&mut dp, &ds).expect("training")
    });
    for (r, p) in per_rank.iter().enumerate() {
        crate::common::assert_bits_eq(&format!("rank {r} of {n} vs rank 0 ({case:?})"), p, &per_rank[0]);
    }
    per_rank.into_iter().next().expect("a rank")
}

/// `train_ranks`, then the parameters compared with one CPU process's, trained on the same global
/// batches: |Δ| ≤ 2e-5 + 2e-4·|θ| (the shares' gradients are summed across ranks, one process sums every
/// row in one product: the same sum in another order).
pub fn check_ranks<B: GradientBackend>(n: usize, make: impl Fn(&MlpSpec, &Params<f32>) -> B + Sync, case: &Case) {
    let init = Params::init(&spec(), 9);
    let got = train_ranks(n, make, case, &init, false);
    let mut one = CpuBackend::new(spec(), init).expect("backend");
    let want: Vec<f64> = case.train(&mut one, &data(61)).expect("training").iter().map(|&v| v as f64).collect();
    crate::common::assert_close(&format!("{n} ranks vs one process, {case:?}"), &got, &want, 2e-5, 2e-4);
}
