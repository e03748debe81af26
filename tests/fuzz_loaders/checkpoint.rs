//! Checkpoints: mutated headers, metadata and bytes of valid files.

use std::path::Path;
use std::sync::OnceLock;

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{Normalization, Normalizer, Task};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Loss, MlpSpec, Params};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestCaseResult};
use serde_json::Value;

use crate::checkpoint_edits::{HeaderEdit, RawEdit, edit_header, edit_raw, header_edit, raw_edit};
use crate::{Stats, guarded, names_path, run, scratch, with_files, write_file};

// ---------------------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------------------

/// Three valid checkpoints (their bytes and specs): 5-7-3 softmax with Adam state and standard
/// normalisation; 4-6-5-2 sigmoid/MSE with momentum state and min-max normalisation; 3-2 identity/MSE with
/// SGD and no normaliser or task.
fn base_checkpoints() -> &'static [(Vec<u8>, MlpSpec)] {
    static BASE: OnceLock<Vec<(Vec<u8>, MlpSpec)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let adam =
            OptimConfig { kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay: 0.01 };
        let momentum = OptimConfig { kind: OptimizerKind::Momentum { momentum: 0.9 }, weight_decay: 0.0 };
        let sgd = OptimConfig { kind: OptimizerKind::Sgd, weight_decay: 0.0 };
        let models = [
            (
                MlpSpec::with_output(vec![5, 7, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy),
                Some(Normalizer {
                    kind: Normalization::Standard,
                    offset: vec![0.1, -2.5, 0.3, 0.0, 1e-30],
                    scale: vec![1.0; 5],
                }),
                Some(Task::Classification { classes: 3 }),
                adam,
            ),
            (
                MlpSpec::with_output(vec![4, 6, 5, 2], Activation::Relu, Output::Sigmoid, Loss::Mse),
                Some(Normalizer {
                    kind: Normalization::MinMax,
                    offset: vec![-1.0, 0.0, 2.0, 1e-7],
                    scale: vec![0.5, 1.0, 0.1, 3.0],
                }),
                Some(Task::Regression { targets: 2 }),
                momentum,
            ),
            (MlpSpec::with_output(vec![3, 2], Activation::Identity, Output::Identity, Loss::Mse), None, None, sgd),
        ];
        models
            .into_iter()
            .enumerate()
            .map(|(i, (spec, normalizer, task, optimizer))| {
                let spec = spec.unwrap();
                let params = Params::init(&spec, 7 + i as u64);
                let n = spec.param_layout().len;
                let mut state = OptimState::new(&optimizer, n);
                state.m.iter_mut().enumerate().for_each(|(j, v)| *v = (j as f32 * 0.37).sin() * 0.1);
                state.v.iter_mut().enumerate().for_each(|(j, v)| *v = 1e-4 + j as f32 * 1e-6);
                state.step = 17;
                let training = TrainingState { optimizer, state, epoch: 3, seed: 9 };
                let ck = Checkpoint {
                    model: Model { spec: spec.clone(), params, normalizer, task },
                    training: Some(training),
                };
                let path = dir.path().join(format!("base{i}.safetensors"));
                checkpoint::save(&path, &ck).unwrap();
                assert_eq!(checkpoint::load(&path).unwrap(), ck, "base checkpoint {i} does not round-trip");
                (std::fs::read(&path).unwrap(), spec)
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
pub(crate) struct CkCase {
    base: Index,
    header_edits: Vec<HeaderEdit>,
    raw_edits: Vec<RawEdit>,
    /// The spec for `load_init`: None means the base checkpoint's.
    init_sizes: Option<Vec<usize>>,
}

pub(crate) fn ck_case() -> impl Strategy<Value = CkCase> {
    (
        any::<Index>(),
        prop_oneof![1 => Just(Vec::new()), 3 => prop::collection::vec(header_edit(), 1..4)],
        prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(raw_edit(), 1..3)],
        prop::option::weighted(0.2, prop::collection::vec(1usize..8, 2..4)),
    )
        .prop_map(|(base, header_edits, raw_edits, init_sizes)| CkCase {
            base,
            header_edits,
            raw_edits,
            init_sizes,
        })
}

/// Splits a checkpoint into its JSON header and data (None if the prefix or the JSON is broken).
fn split_checkpoint(bytes: &[u8]) -> Option<(serde_json::Map<String, Value>, &[u8])> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let head = bytes.get(8..8usize.checked_add(n)?)?;
    match serde_json::from_slice(head).ok()? {
        Value::Object(m) => Some((m, &bytes[8 + n..])),
        _ => None,
    }
}

fn join_checkpoint(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(header).unwrap();
    [&(head.len() as u64).to_le_bytes()[..], &head, data].concat()
}

impl CkCase {
    pub(crate) fn bytes(&self) -> (Vec<u8>, &'static MlpSpec) {
        let bases = base_checkpoints();
        let (base, spec) = &bases[self.base.index(bases.len())];
        let mut bytes = base.clone();
        if !self.header_edits.is_empty() {
            let (mut header, data) = split_checkpoint(&bytes).expect("the base checkpoint parses");
            for e in &self.header_edits {
                edit_header(&mut header, e);
            }
            bytes = join_checkpoint(&header, data);
        }
        for e in &self.raw_edits {
            edit_raw(&mut bytes, e);
        }
        (bytes, spec)
    }
}

fn all_finite_params(p: &Params<f32>) -> bool {
    p.weights.iter().all(|w| w.iter().all(|v| v.is_finite()))
        && p.biases.iter().all(|b| b.iter().all(|v| v.is_finite()))
}

/// Loads `path` with `checkpoint::load` and with `checkpoint::load_init(spec)` and checks both results.
pub(crate) fn check_checkpoint_file(path: &Path, spec: &MlpSpec, stats: &Stats) -> TestCaseResult {
    let r = guarded("checkpoint::load", || checkpoint::load(path))?;
    stats.outcome(&r);
    match r {
        Ok(ck) => {
            let m = &ck.model;
            if let Err(e) = m.params.check(&m.spec) {
                return Err(TestCaseError::fail(format!("checkpoint::load: params.check failed: {e}")));
            }
            prop_assert!(all_finite_params(&m.params), "checkpoint::load: a non-finite parameter");
            if let Some(n) = &m.normalizer {
                prop_assert_eq!(n.offset.len(), m.spec.input_width());
                prop_assert_eq!(n.scale.len(), m.spec.input_width());
                prop_assert!(n.offset.iter().chain(&n.scale).all(|v| v.is_finite()), "a non-finite normaliser value");
            }
            match m.task {
                Some(Task::Classification { classes: w }) | Some(Task::Regression { targets: w }) => {
                    prop_assert_eq!(w, m.spec.output_width(), "the task's width differs from the network's");
                }
                None => {}
            }
            if let Some(t) = &ck.training {
                let n = m.spec.param_layout().len;
                if let Err(e) = t.state.check(&t.optimizer, n) {
                    return Err(TestCaseError::fail(format!("checkpoint::load: optimizer state: {e}")));
                }
                if let Err(e) = t.optimizer.validate() {
                    return Err(TestCaseError::fail(format!("checkpoint::load: optimizer: {e}")));
                }
                prop_assert!(t.state.m.iter().chain(&t.state.v).all(|v| v.is_finite()), "non-finite optimizer state");
            }
        }
        Err(e) => names_path(&e, &[path])?,
    }
    let r = guarded("checkpoint::load_init", || checkpoint::load_init(path, spec))?;
    stats.outcome(&r);
    match r {
        Ok(params) => {
            if let Err(e) = params.check(spec) {
                return Err(TestCaseError::fail(format!("checkpoint::load_init: params.check failed: {e}")));
            }
            prop_assert!(all_finite_params(&params), "checkpoint::load_init: a non-finite parameter");
        }
        Err(e) => names_path(&e, &[path])?,
    }
    Ok(())
}

#[test]
fn fuzz_checkpoint_mutated() {
    let dir = scratch("checkpoint");
    let path = dir.path().join("input.safetensors");
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_checkpoint_mutated.txt");
    run("checkpoint_mutated", persist, ck_case(), |case, stats| {
        let (bytes, base_spec) = case.bytes();
        write_file(&path, &bytes);
        let other;
        let spec = match &case.init_sizes {
            Some(sizes) => {
                let acts = vec![Activation::Relu; sizes.len() - 1];
                other = MlpSpec::new(sizes.clone(), acts, Loss::Mse).unwrap();
                &other
            }
            None => base_spec,
        };
        with_files(check_checkpoint_file(&path, spec, stats), &[&path])
    });
}
