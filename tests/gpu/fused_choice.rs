//! Which GPU step a batch takes. By default a rule on the network, the batch, the device's limits and its
//! graphics API (`PathKey::rule`), never a timing, so two processes take the same step and end with the
//! same bits; either step can be forced (`PathStrategy::Fixed`, `BACKPROP_GPU_PATH`), and timing them is an
//! opt-in that leaves the model as it was. `bench` and `--verify` report and check the step that ran.

use std::sync::Arc;

use backprop::gpu::tune::FUSED_MAX_MACS;
use backprop::gpu::{AdapterRequest, GpuContext, GpuPath, PathStrategy};
use backprop::optim::{OptimConfig, OptimizerKind};
use backprop::{Activation, Backend, GpuMlp, Loss, MlpSpec, Params, checkpoint};
use ndarray::Array2;

use crate::common::cli::{cmd, ok_with, stderr};
use crate::common::{assert_bits_eq, gpu, no_subgroups, random, rng, small_device};

/// One step of a fresh model of `spec` on `ctx` on a batch of `batch` rows; the step it took.
fn step_taken(ctx: &Arc<GpuContext>, spec: &MlpSpec, batch: usize) -> GpuPath {
    let mut m = GpuMlp::new(ctx.clone(), spec.clone(), &Params::init(spec, 1)).unwrap();
    assert_eq!(m.path_strategy(), PathStrategy::Rule, "the default strategy (is BACKPROP_GPU_PATH set?)");
    let (x, y) =
        (Array2::<f32>::zeros((batch, spec.input_width())), Array2::<f32>::zeros((batch, spec.output_width())));
    m.step(x.view(), y.view(), 0.1, false).unwrap();
    m.path_for(batch).expect("a step ran")
}

/// Networks within the fused step's bound and past it, batches below and above the rule's threshold, on
/// the shared device, on one without subgroups (the same limits, so the same steps) and on one whose
/// bindings hold 128 values: each takes the step `PathKey::rule` gives from (spec, batch, limits, API) alone,
/// and the shared device, where nothing asks for timing, has timed no step.
#[test]
fn the_default_step_is_the_rule_on_the_network_the_batch_and_the_limits() {
    let net = |sizes: &[usize]| MlpSpec::uniform(sizes.to_vec(), Activation::Sigmoid, Loss::Mse).unwrap();
    let cases = [
        (net(&[2, 2, 1]), 1),
        (net(&[64, 64, 64, 1]), 64),
        (net(&[64, 64, 64, 1]), 1000),
        (net(&[100, 128, 128, 10]), 300),
        (net(&[4, 129, 3]), 5),
        (net(&[1500, 64, 1]), 3),
    ];
    // A device whose bindings hold 128 values: the fused step fits only the smallest batch's buffers.
    let small = [(net(&[2, 2, 1]), 1), (net(&[2, 2, 1]), 100), (net(&[13, 16, 3]), 40)];
    // Past the rule's multiply-adds (one step of 1.4e8 on lavapipe: about half a second).
    let large = [(net(&[100, 128, 128, 10]), 4700)];
    assert!(gpu().path_key(&large[0].0, 4700).macs() > FUSED_MAX_MACS);
    let mut seen = std::collections::HashSet::new();
    let devices =
        [(gpu(), &cases[..]), (gpu(), &large[..]), (no_subgroups(), &cases[..]), (small_device(512), &small[..])];
    for (ctx, cases) in devices {
        for (spec, batch) in cases {
            let key = ctx.path_key(spec, *batch);
            assert_eq!(key, ctx.path_key(spec, *batch), "a key is a function of its inputs");
            let took = step_taken(&ctx, spec, *batch);
            assert_eq!(
                took,
                key.rule(),
                "{:?} batch {batch} ({} MACs, {:?})",
                spec.sizes(),
                key.macs(),
                key.block_rows
            );
            seen.insert((ctx.limits().max_storage_buffer_binding_size, took));
        }
    }
    assert_eq!(step_taken(&gpu(), &cases[2].0, 1000), step_taken(&no_subgroups(), &cases[2].0, 1000));
    assert!(
        seen.len() >= 3,
        "the cases take both steps on the default device and the unfused one on the small: {seen:?}"
    );
    assert_eq!(gpu().tuner().path_timings(), 0, "the default strategy times nothing");
}

/// The rule takes the fused step for a small network and the unfused one past the bound; forcing either
/// works per model, and forcing the fused step outside its bound is an error that says why.
#[test]
fn the_step_is_chosen_per_batch_size_and_can_be_forced() {
    let small = MlpSpec::uniform(vec![4, 6, 3], Activation::Sigmoid, Loss::Mse).unwrap();
    let wide = MlpSpec::uniform(vec![4, 129, 3], Activation::Sigmoid, Loss::Mse).unwrap();
    let (x, y) = (Array2::<f32>::zeros((5, 4)), Array2::<f32>::zeros((5, 3)));
    let mut m = GpuMlp::new(gpu(), small.clone(), &Params::init(&small, 1)).unwrap();
    assert_eq!(m.path_for(5), None);
    m.step(x.view(), y.view(), 0.1, false).unwrap();
    assert_eq!((m.path_for(5), m.dispatches_per_step(5)), (Some(GpuPath::Fused), Some(2)));
    m.set_path_strategy(PathStrategy::Fixed(GpuPath::Unfused)).unwrap();
    assert_eq!(m.path_for(5), None, "a new strategy forgets the choices");
    m.step(x.view(), y.view(), 0.1, false).unwrap();
    assert_eq!(m.path_for(5), Some(GpuPath::Unfused));
    assert!(m.dispatches_per_step(5).unwrap() > 3);
    let mut w = GpuMlp::new(gpu(), wide.clone(), &Params::init(&wide, 1)).unwrap();
    w.step(x.view(), y.view(), 0.1, false).unwrap();
    assert_eq!(w.path_for(5), Some(GpuPath::Unfused));
    let e = w.set_path_strategy(PathStrategy::Fixed(GpuPath::Fused)).unwrap_err().to_string();
    assert!(e.contains("4-129-3") && e.contains("129 wide"), "{e}");
    assert!("sideways".parse::<PathStrategy>().is_err());
}

/// `PathStrategy::Timed` (on a device of its own, so the shared one never times) times both steps on the
/// model's own buffers; the timing leaves no trace: the same bits, loss sum and step count as a model
/// forced to the step it chose, for SGD and for Adam with weight decay.
#[test]
fn choosing_by_timing_leaves_the_model_as_it_was() {
    let ctx = Arc::new(GpuContext::new(&AdapterRequest::default()).unwrap());
    let spec = MlpSpec::uniform(vec![64, 64, 64, 1], Activation::Sigmoid, Loss::Mse).unwrap();
    let init = Params::init(&spec, 8);
    let mut r = rng(8);
    let x = random(&mut r, 64, 64, 1.0).mapv(|v| v as f32);
    let y = random(&mut r, 64, 1, 1.0).mapv(|v| v as f32);
    for cfg in [OptimConfig::sgd(), OptimConfig { kind: OptimizerKind::adam(), weight_decay: 0.01 }] {
        let run = |strategy: PathStrategy| {
            let mut m = GpuMlp::new(ctx.clone(), spec.clone(), &init).unwrap();
            m.set_path_strategy(strategy).unwrap();
            m.set_optimizer(cfg).unwrap();
            let losses: Vec<u32> =
                (0..3).map(|_| m.step(x.view(), y.view(), 0.1, true).unwrap().unwrap().to_bits()).collect();
            let state = m.optimizer_state().unwrap();
            (m.path_for(64).unwrap(), losses, m.params().unwrap().to_flat(), m.take_loss_sum().unwrap(), state)
        };
        let timed = run(PathStrategy::Timed);
        let forced = run(PathStrategy::Fixed(timed.0));
        let name = format!("{:?} {}", timed.0, cfg.kind.name());
        assert_eq!(timed.1, forced.1, "{name}: losses");
        assert_bits_eq(&format!("{name}: parameters"), &timed.2, &forced.2);
        assert_eq!(timed.3.to_bits(), forced.3.to_bits(), "{name}: loss sum");
        assert_eq!(timed.4.step, 3, "{name}");
        assert_bits_eq(&format!("{name}: m"), &timed.4.m, &forced.4.m);
        assert_bits_eq(&format!("{name}: v"), &timed.4.v, &forced.4.v);
    }
    assert!(ctx.tuner().path_timings() > 0, "Timed timed the steps");
}

/// Two processes training the same network on the same data with the same seed write the same
/// parameters, bit for bit (64-64-64-10 on the digits, batches of 64: the fused step).
#[test]
fn two_processes_train_to_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        let args = ["train", "--backend", "gpu", "--layers", "64,64,64,10", "--batch-size", "64", "--epochs", "2"];
        ok_with(cmd(), &[&args[..], &["--out", out.to_str().unwrap()]].concat());
        checkpoint::load(&out).unwrap().model.params.to_flat()
    };
    assert_bits_eq("parameters of two processes", &run("a.safetensors"), &run("b.safetensors"));
}

/// `--verify` on the fused step (forced by `BACKPROP_GPU_PATH`), and the variable's errors.
#[test]
fn verify_checks_the_fused_step_and_bad_paths_are_errors() {
    let mut c = cmd();
    c.env("BACKPROP_GPU_PATH", "fused");
    let args = ["train", "--data", "xor", "--backend", "gpu", "--epochs", "5", "--batch-size", "2", "--verify", "3"];
    let o = ok_with(c, &args);
    let verified: Vec<String> = stderr(&o).lines().filter(|l| l.starts_with("verify step")).map(String::from).collect();
    assert!(verified.len() >= 3 && verified.iter().all(|l| l.contains(": ok")), "{}", stderr(&o));
    let mut c = cmd();
    c.env("BACKPROP_GPU_PATH", "fused");
    let o = c.args(["train", "--backend", "gpu", "--layers", "64,200,10", "--epochs", "1"]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("error: the fused GPU step cannot take"), "{}", stderr(&o));
    let mut c = cmd();
    c.env("BACKPROP_GPU_PATH", "fast");
    let o = c.args(["train", "--backend", "gpu", "--data", "xor", "--epochs", "1"]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("BACKPROP_GPU_PATH"), "{}", stderr(&o));
}

/// `train --json` names the step that ran (`gpu_path`, as `bench` does), `null` on the CPU; the variables'
/// names match in any case, empty is unset and a switch's 0 is off.
#[test]
fn train_reports_the_step_that_ran() {
    let path = |env: &[(&str, &str)], backend: &str| {
        let mut c = cmd();
        c.envs(env.iter().copied());
        let args = ["train", "--data", "xor", "--backend", backend, "--epochs", "2", "--batch-size", "3", "--json"];
        let v: serde_json::Value = serde_json::from_slice(&ok_with(c, &args).stdout).expect("one JSON object");
        v["gpu_path"].clone()
    };
    assert_eq!(path(&[], "gpu"), "fused", "the rule's step for 2-64-1");
    assert_eq!(path(&[("BACKPROP_GPU_PATH", "UNFUSED")], "gpu"), "unfused");
    assert_eq!(path(&[("BACKPROP_GPU_PATH", ""), ("BACKPROP_MATMUL_TILE", "Small")], "gpu"), "fused");
    assert_eq!(path(&[("BACKPROP_NO_VEC4", "0"), ("BACKPROP_NO_SUBGROUPS", "0")], "gpu"), "fused");
    assert!(path(&[], "cpu").is_null());
}

/// `bench` by default: seed and small take the fused step, two launches a step, named in JSON and table.
#[test]
fn bench_reports_the_fused_step_and_its_launches() {
    let args = ["bench", "--configs", "seed,small", "--backend", "gpu", "--steps", "3", "--warmup", "1", "--json"];
    let o = ok_with(cmd(), &args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    for r in results {
        assert_eq!((r["gpu_path"].as_str(), r["dispatches_per_step"].as_u64()), (Some("fused"), Some(2)), "{r}");
        assert!(r["train_ms_per_step"].as_f64().unwrap() > 0.0, "{r}");
    }
    let o = ok_with(cmd(), &["bench", "--configs", "seed", "--backend", "gpu", "--steps", "3", "--no-crossover"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with("seed")).unwrap_or_default();
    assert!(row.contains(" 2 fused "), "{row}");
}
