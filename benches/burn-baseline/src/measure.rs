//! The training step of one standard configuration in Burn, timed as `benches/pytorch_baseline.py` times
//! PyTorch's: ms per step one step at a time with a sync each, and groups of steps with one sync a group.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig, Sigmoid};
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};

/// Layer widths and batch of the four standard configurations (DESIGN.md).
pub const CONFIGS: [(&str, &[usize], usize); 4] = [
    ("seed", &[2, 2, 1], 1),
    ("small", &[64, 64, 64, 1], 64),
    ("mnist", &[784, 256, 256, 10], 256),
    ("wide", &[1024, 4096, 4096, 1024], 1024),
];

/// Every layer `nn::Linear` followed by a sigmoid, the output layer too.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Sigmoid,
}

impl Mlp {
    fn new(sizes: &[usize], device: &Device) -> Self {
        let layers = sizes.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        Self { layers, activation: Sigmoid::new() }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for layer in &self.layers {
            x = self.activation.forward(layer.forward(x));
        }
        x
    }
}

/// One configuration's step with its data and optimizer: forward, MSE (mean over all B·O outputs),
/// backward, SGD with lr 0.1.
struct Trainer {
    model: Option<Mlp>,
    optim: ModuleOptimizer,
    x: Tensor<2>,
    y: Tensor<2>,
    device: Device,
}

impl Trainer {
    fn step(&mut self) {
        let model = self.model.take().expect("the model is put back after every step");
        let loss = MseLoss::new().forward(model.forward(self.x.clone()), self.y.clone(), Reduction::Mean);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(0.1, model, grads));
    }

    fn sync(&self) -> Result<(), String> {
        self.device.sync().map_err(|e| format!("device sync failed: {e:?}"))
    }
}

/// What one configuration measured, the fields of `pytorch_baseline.py --json`.
pub struct Row {
    pub config: &'static str,
    pub batch: usize,
    pub steps: usize,
    pub ms_per_step: f64,
    pub gflops: f64,
    pub train_ms_per_step: f64,
    pub train_group: usize,
}

/// How long and how often to time.
pub struct Budget {
    pub steps: usize,
    pub warmup: usize,
    pub max_seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Times configuration `index` of `CONFIGS` on `device` (an autodiff device).
pub fn measure(index: usize, device: &Device, budget: &Budget) -> Result<Row, String> {
    let (config, sizes, batch) = CONFIGS[index];
    device.seed(1);
    let x = Tensor::<2>::random([batch, sizes[0]], Distribution::Default, device);
    let y = Tensor::<2>::random([batch, sizes[sizes.len() - 1]], Distribution::Default, device);
    let model = Some(Mlp::new(sizes, device));
    let mut t = Trainer { model, optim: SgdConfig::new().init(), x, y, device: device.clone() };

    for _ in 0..budget.warmup {
        t.step();
    }
    t.sync()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < budget.steps.max(1)
        && (samples.len() < 3 || start.elapsed().as_secs_f64() < budget.max_seconds)
    {
        let s = Instant::now();
        t.step();
        t.sync()?;
        samples.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let steps = samples.len();
    let ms = median(samples);
    // Steps back to back with one sync per group, groups of about 0.3 s and at most 32 steps.
    let k = if ms > 0.0 { ((300.0 / ms) as usize).clamp(1, 32) } else { 32 };
    let mut groups = Vec::new();
    let start = Instant::now();
    while groups.len() < 3 || (groups.len() * k < budget.steps && start.elapsed().as_secs_f64() < budget.max_seconds) {
        let s = Instant::now();
        for _ in 0..k {
            t.step();
        }
        t.sync()?;
        groups.push(s.elapsed().as_secs_f64() * 1e3 / k as f64);
    }
    let flops = 6.0 * batch as f64 * sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>();
    Ok(Row {
        config,
        batch,
        steps,
        ms_per_step: ms,
        gflops: flops / (ms * 1e6),
        train_ms_per_step: median(groups),
        train_group: k,
    })
}
