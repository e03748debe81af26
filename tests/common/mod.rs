//! Helpers shared by the integration tests: one GPU context per test binary (and devices with a lowered
//! binding limit), seeded random tensors, the f64 reference trained step by step beside a backend, and
//! comparisons that name the tensor, the first bad index and the largest difference (within a mixed
//! tolerance, or bit for bit). Running the binary (`cli`), bad-input batteries (`battery`) and files as
//! PyTorch writes them (`pytorch`) have modules of their own.
#![allow(dead_code)]

pub mod battery;
pub mod cli;
pub mod pytorch;
pub mod reference;

use std::sync::{Arc, OnceLock};

use backprop::checkpoint::Checkpoint;
use backprop::gpu::{AdapterRequest, GpuContext, GpuPath, PathStrategy};
use backprop::{GpuMlp, MlpSpec, Params};
use ndarray::Array2;
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

/// The GPU every test in this binary shares. No adapter is a failure, never a skip.
pub fn gpu() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => Arc::new(ctx),
        Err(e @ backprop::Error::NoAdapter { .. }) => panic!(
            "GPU tests need a wgpu adapter and none was found: {e}\n\
             On Debian/Ubuntu run `apt-get install mesa-vulkan-drivers` (lavapipe, a Vulkan driver on the CPU), \
             or run scripts/test, which installs it."
        ),
        Err(e) => panic!("the GPU adapter could not be set up: {e}"),
    })
    .clone()
}

/// The default adapter opened without subgroup operations, so every kernel sums across a workgroup through
/// workgroup memory (the fallback); one per test binary.
pub fn no_subgroups() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let req = AdapterRequest { no_subgroups: true, ..Default::default() };
        Arc::new(GpuContext::new(&req).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
    })
    .clone()
}

/// Both ways the kernels sum across a workgroup: the default device (subgroup operations on lavapipe and
/// wherever the adapter has them) and the fallback.
pub fn both_reductions() -> [Arc<GpuContext>; 2] {
    [gpu(), no_subgroups()]
}

/// Both GPU training steps, for tests that run each.
pub const BOTH_PATHS: [GpuPath; 2] = [GpuPath::Unfused, GpuPath::Fused];

/// A GPU model on the shared device that always takes the `path` step.
pub fn gpu_model(spec: &MlpSpec, init: &Params<f32>, path: GpuPath) -> GpuMlp {
    let mut model = GpuMlp::new(gpu(), spec.clone(), init).unwrap();
    model.set_path_strategy(PathStrategy::Fixed(path)).unwrap();
    model
}

/// A device on the default adapter whose storage bindings are capped at `cap` bytes, so that work larger
/// than that is split (or refused) as on a device with a small limit.
pub fn small_device(cap: u64) -> Arc<GpuContext> {
    let req = AdapterRequest { max_storage_binding: Some(cap), ..Default::default() };
    Arc::new(GpuContext::new(&req).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A (rows, cols) matrix of values uniform in [-scale, scale].
pub fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize, scale: f64) -> Array2<f64> {
    let d = Uniform::new_inclusive(-scale, scale).expect("valid range");
    Array2::from_shape_fn((rows, cols), |_| d.sample(rng))
}

/// Rounds to f32 and back, so the f64 reference sees exactly the values the GPU sees.
pub fn f32_exact(a: &Array2<f64>) -> Array2<f64> {
    a.mapv(|v| v as f32 as f64)
}

pub fn to_f32(a: &Array2<f64>) -> Vec<f32> {
    a.iter().map(|&v| v as f32).collect()
}

/// f32 values widened to f64, to compare with the reference.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The elements of a matrix in row-major order.
pub fn flat(a: &Array2<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

/// The bits of each value, for comparisons where only equality bit for bit will do.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts that two f32 vectors are equal bit for bit, naming the first difference and how many differ.
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let differ: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    if let Some(&i) = differ.first() {
        let worst = differ.iter().map(|&j| (got[j] - want[j]).abs()).fold(0.0f32, f32::max);
        panic!(
            "{what}: {} of {} values differ; first at {i}: {:e} vs {:e} (largest |diff| {worst:e})",
            differ.len(),
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Asserts two checkpoints are equal field by field, with every f32 bit-identical.
pub fn assert_same_checkpoint(got: &Checkpoint, want: &Checkpoint, what: &str) {
    assert_eq!(got.model.spec, want.model.spec, "{what}: spec");
    assert_eq!(got.model.spec.output(), want.model.spec.output(), "{what}: output");
    assert_eq!(got.model.task, want.model.task, "{what}: task");
    assert_bits_eq(&format!("{what}: parameters"), &got.model.params.to_flat(), &want.model.params.to_flat());
    for l in 0..want.model.spec.layers() {
        assert_eq!(got.model.params.weights[l].dim(), want.model.params.weights[l].dim(), "{what}: W{l} shape");
        assert_eq!(got.model.params.biases[l].len(), want.model.params.biases[l].len(), "{what}: b{l} length");
    }
    match (&got.model.normalizer, &want.model.normalizer) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            assert_eq!(g.kind, w.kind, "{what}: normalisation kind");
            assert_eq!(bits(&g.offset), bits(&w.offset), "{what}: normalisation offset bits");
            assert_eq!(bits(&g.scale), bits(&w.scale), "{what}: normalisation scale bits");
        }
        (g, w) => panic!("{what}: normalizer {g:?} != {w:?}"),
    }
    match (&got.training, &want.training) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            assert_eq!(g.optimizer, w.optimizer, "{what}: optimizer");
            assert_eq!(g.epoch, w.epoch, "{what}: epoch");
            assert_eq!(g.seed, w.seed, "{what}: seed");
            assert_eq!(g.state.step, w.state.step, "{what}: step");
            assert_bits_eq(&format!("{what}: optimizer.m"), &g.state.m, &w.state.m);
            assert_bits_eq(&format!("{what}: optimizer.v"), &g.state.v, &w.state.v);
        }
        (g, w) => panic!("{what}: training {g:?} != {w:?}"),
    }
    assert_eq!(got, want, "{what}: PartialEq");
}

/// Asserts `|got − want| <= atol + rtol·|want|` everywhere (NaN never passes), for f32 results against an
/// f64 reference.
pub fn assert_close(name: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_slices_close(name, &to_f64(got), want, atol, rtol);
}

/// Asserts `|got − want| <= atol + rtol·|want|` everywhere (NaN never passes), naming the first element
/// outside the tolerance, the worst one and how many there are.
pub fn assert_slices_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    let mut bad = 0usize;
    let mut first = None;
    let mut worst: Option<(f64, usize)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN difference must fail, so not `d > tolerance`
        if !(d <= atol + rtol * w.abs()) {
            bad += 1;
            first.get_or_insert(i);
            let d = if d.is_nan() { f64::INFINITY } else { d }; // NaN counts as the worst
            if worst.is_none_or(|(wd, _)| d > wd) {
                worst = Some((d, i));
            }
        }
    }
    if let (Some(i), Some((_, j))) = (first, worst) {
        panic!(
            "{what}: {bad} of {} elements outside {atol:e} + {rtol:e}·|ref|; first at {i}: got {} want {}; \
             worst at {j}: got {} want {} (|diff| {:.3e})",
            got.len(),
            got[i],
            want[i],
            got[j],
            want[j],
            (got[j] - want[j]).abs()
        );
    }
}
