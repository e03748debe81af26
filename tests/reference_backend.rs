//! `ReferenceBackend` (the reference as a `Backend`, what the web page trains on without WebGPU), and the
//! worked example's and `--verify`'s halves that the page calls after its asynchronous read-backs.

use backprop::data;
use backprop::model::{Activation, Loss, MlpSpec, Output, Params};
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::train::{self, StepRecord, Verify};
use backprop::{Backend, CpuBackend, ReferenceBackend, Trainer, cpu, worked_example};
use ndarray::array;

#[test]
fn one_step_is_the_reference_sgd_step_exactly() {
    let (spec, params) = worked_example::network().unwrap();
    let start = params.to_f32();
    let mut backend = ReferenceBackend::<f64>::new(spec.clone(), &start).unwrap();
    let (x, y) = (array![[0.5f32, 0.3], [0.1, -0.7]], array![[0.8f32], [0.2]]);
    let loss = backend.step(x.view(), y.view(), 0.1, true).unwrap().unwrap();

    let mut want = start.to_f64();
    let trace = cpu::sgd_step(&spec, &mut want, x.mapv(f64::from).view(), y.mapv(f64::from).view(), 0.1).unwrap();
    assert_eq!(backend.params().unwrap(), want.to_f32());
    assert_eq!(loss, trace.loss as f32);
    assert_eq!(backend.take_loss_sum().unwrap(), trace.loss * 2.0);
    assert_eq!(backend.take_loss_sum().unwrap(), 0.0, "taking the sum resets it");
    assert_eq!(backend.name(), "cpu reference (f64)");
}

#[test]
fn f32_reference_follows_the_cpu_backend_with_adam_decay_and_clipping() {
    let spec = MlpSpec::with_output(vec![3, 5, 4], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    let p = Params::init(&spec, 3);
    let adam = OptimConfig::new(OptimizerKind::adam()).with_weight_decay(0.01);
    let (mut reference, mut fast) =
        (ReferenceBackend::<f32>::new(spec.clone(), &p).unwrap(), CpuBackend::new(spec, p).unwrap());
    let x = array![[0.1f32, -1.0, 0.5], [2.0, 0.3, -0.2], [0.0, 0.7, 1.5], [-0.4, -0.4, 0.9]];
    let y = array![[1.0f32, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
    for b in [&mut reference as &mut dyn Backend, &mut fast] {
        b.set_optimizer(adam).unwrap();
        b.set_grad_clip(Some(0.5)).unwrap();
        b.set_data(x.view(), y.view()).unwrap();
        b.run_steps(&[3, 1, 0, 2], 2, 0.05).unwrap();
        b.run_steps(&[2, 1], 2, 0.05).unwrap();
        b.run_steps(&[0, 1, 2, 3], 3, 0.05).unwrap();
    }
    let (r, f) = (reference.params().unwrap().to_flat(), fast.params().unwrap().to_flat());
    let worst = r.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "parameters differ by {worst}");
    assert_eq!(reference.optimizer_state().unwrap().step, 5);
    let (ps, fs) = (reference.predict(x.view()).unwrap(), fast.predict(x.view()).unwrap());
    assert!(ps.iter().zip(&fs).all(|(a, b)| (a - b).abs() < 1e-5), "{ps} vs {fs}");
}

#[test]
fn state_round_trips_and_bad_calls_are_errors() {
    let spec = MlpSpec::uniform(vec![2, 3, 1], Activation::Sigmoid, Loss::Mse).unwrap();
    let mut backend = ReferenceBackend::<f64>::new(spec.clone(), &Params::init(&spec, 1)).unwrap();
    let err = |r: backprop::Result<()>| r.unwrap_err().to_string();
    assert!(err(backend.run_steps(&[0], 1, 0.1)).contains("set_data first"));
    backend.set_optimizer(OptimConfig::new(OptimizerKind::momentum(0.9))).unwrap();
    assert_eq!(backend.optimizer_state().unwrap(), OptimState { m: vec![0.0; 13], v: vec![], step: 0 });
    let state = OptimState { m: (0..13).map(|i| i as f32 / 8.0).collect(), v: vec![], step: 7 };
    backend.set_optimizer_state(&state).unwrap();
    assert_eq!(backend.optimizer_state().unwrap(), state);
    assert!(err(backend.set_optimizer_state(&OptimState { m: vec![0.0; 2], ..state })).contains("momentum"));
    backend.set_data(array![[0.0f32, 1.0]].view(), array![[1.0f32]].view()).unwrap();
    assert!(err(backend.run_steps(&[0], 0, 0.1)).contains("batch size"));
    assert!(err(backend.run_steps(&[1], 1, 0.1)).contains("row index"));
    assert!(err(backend.set_grad_clip(Some(-1.0))).contains("--max-grad-norm"));
    let wrong = Params::init(&MlpSpec::uniform(vec![2, 4, 1], Activation::Sigmoid, Loss::Mse).unwrap(), 1);
    assert!(err(backend.set_params(&wrong)).contains("layer 0 weight"));
}

#[test]
fn a_prepared_run_trains_spirals_on_the_reference() {
    let run = Trainer::new(data::spirals(400, 42).unwrap())
        .layers([2, 32, 32, 2])
        .activation(Activation::Tanh)
        .lr(0.01)
        .epochs(150)
        .prepare()
        .unwrap();
    let mut backend = ReferenceBackend::<f64>::new(run.model.spec.clone(), &run.model.params).unwrap();
    let history = run.train(&mut backend, &mut train::Silent).unwrap();
    let accuracy = history.last().unwrap().test_accuracy.unwrap();
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
    assert!(history[149].train_loss < history[0].train_loss / 10.0);
    assert_eq!(backend.optimizer().kind, OptimizerKind::adam());
}

#[test]
fn check_step_passes_a_true_record_and_names_a_wrong_tensor() {
    let spec = MlpSpec::uniform(vec![2, 3, 1], Activation::Sigmoid, Loss::Mse).unwrap();
    let mut backend = ReferenceBackend::<f32>::new(spec.clone(), &Params::init(&spec, 9)).unwrap();
    backend.set_optimizer(OptimConfig::new(OptimizerKind::momentum(0.9))).unwrap();
    let (x, y) = (array![[0.2f32, -0.6], [1.0, 0.4]], array![[0.3f32], [0.9]]);
    let v = Verify { every: 1, atol: 1e-6, rtol: 1e-5 };
    backend.step(x.view(), y.view(), 0.1, false).unwrap();
    assert!(train::verify_step(&mut backend, x.view(), y.view(), 0.1, &v).unwrap().passed());

    let (params_before, state_before) = (backend.params().unwrap(), backend.optimizer_state().unwrap());
    let trace = backend.traced_step(x.view(), y.view(), 0.1).unwrap();
    let mut record = StepRecord {
        spec,
        optimizer: backend.optimizer(),
        grad_clip: None,
        params_before,
        state_before,
        trace,
        params_after: backend.params().unwrap(),
    };
    let report = train::check_step(&record, x.view(), y.view(), 0.1, &v).unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.step, 3);
    record.params_after.biases[1][0] += 1e-3;
    let report = train::check_step(&record, x.view(), y.view(), 0.1, &v).unwrap();
    let failed: Vec<&str> = report.tensors.iter().filter(|t| t.worst_ratio > 1.0).map(|t| t.name.as_str()).collect();
    assert_eq!(failed, ["updated parameters"]);
}

#[test]
fn worked_example_compare_sets_measured_quantities_beside_the_reference() {
    let alone = worked_example::compare(None).unwrap();
    assert_eq!(alone.len(), 15);
    assert!(alone.iter().all(|r| r.gpu_f32.is_none()));

    let (spec, _) = worked_example::network().unwrap();
    let (params, _, _) = worked_example::inputs_f32().unwrap();
    let mut f32_ref = ReferenceBackend::<f32>::new(spec, &params).unwrap();
    let rows = worked_example::run(Some(&mut f32_ref)).unwrap();
    for (r, a) in rows.iter().zip(&alone) {
        assert_eq!(r.cpu_f64, a.cpu_f64, "{}", r.name);
        let d = r.max_abs_diff().unwrap();
        assert!(d < 2e-7, "{}: |f32 - f64| = {d}", r.name);
    }
    assert!(rows.iter().any(|r| r.max_abs_diff() > Some(0.0)), "the f32 run must not be the f64 one");
    let doc = worked_example::report_json(None, &rows);
    assert!(doc["adapter"].is_null());
    assert_eq!(doc["quantities"][4]["name"], "loss");
}
