//! Which tiling a matrix product runs with, chosen as burn's autotune chooses kernels: a key (the product's
//! shape and operand layout), a strategy (one tiling, the heuristic, or measuring), and a cache, per device,
//! of what was measured. Measuring is explicit: a model's plan asks `Tuner::matmul_tile` before it builds a
//! product, handing it a way to time one candidate (`ops::MatmulTimer`); building a dispatch times nothing.
//!
//! A new candidate (another tiling, another kernel for the same product) is a variant of `Tile` that
//! `MatmulKey::candidates` offers; a new kind of choice is a key type and a cache of its own here, as the
//! training step's is (`step`: fused or unfused, by a rule unless timing is asked for).

mod step;

pub use step::{
    Blocking, Bound, FUSED_MAX_MACS, GpuPath, MAX_GROUPS, MIN_BLOCK_ROWS, PathKey, PathStrategy, UNFUSED_APIS,
    values_per_row,
};

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::environment;
use crate::error::{Error, Result};
use crate::gpu::shaders::Tile;

/// What the tiling of a product depends on: C (m, n) = op(A) (m, k) · op(B) (k, n), whether each operand is
/// read transposed (its rows contiguous in memory, as `Aᵀ` and `Wᵀ` are), and whether it can be read four
/// values at a time (its offset and stride multiples of 4, and vector loads not turned off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_transposed: bool,
    pub b_transposed: bool,
    pub a_vectors: bool,
    pub b_vectors: bool,
}

impl MatmulKey {
    /// Multiply-adds of the product.
    pub fn macs(&self) -> usize {
        self.m.saturating_mul(self.n).saturating_mul(self.k)
    }

    /// The tilings worth timing: those the output fills (`Tile::fits`; a tiling wider than the output would
    /// leave most of each workgroup idle).
    pub fn candidates(&self) -> Vec<Tile> {
        Tile::ALL.into_iter().filter(|t| t.fits(self.m, self.n)).collect()
    }

    /// The choice without measuring: the 64×64 tiling once both output dimensions fill it (the 128×128 one
    /// only where timing chose it: it needs 64 registers of accumulators a thread and 128² outputs a
    /// workgroup).
    pub fn heuristic(&self) -> Tile {
        if self.m >= 64 && self.n >= 64 { Tile::Big } else { Tile::Small }
    }
}

/// How tilings are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Always this tiling.
    Fixed(Tile),
    /// `MatmulKey::heuristic` for every product, nothing measured.
    Heuristic,
    /// Products of at least `min_macs` multiply-adds are timed with every candidate, once per device and
    /// key, and the fastest kept; smaller ones take the heuristic.
    Measure { min_macs: usize },
}

/// Products with at least this many multiply-adds are measured by default.
pub const AUTOTUNE_MACS: usize = 1 << 12;

impl Strategy {
    /// The default: measure products of `AUTOTUNE_MACS` or more.
    #[cfg(not(target_arch = "wasm32"))]
    pub const DEFAULT: Strategy = Strategy::Measure { min_macs: AUTOTUNE_MACS };
    /// The default on the web: the heuristic (a page cannot wait for a timing on the GPU).
    #[cfg(target_arch = "wasm32")]
    pub const DEFAULT: Strategy = Strategy::Heuristic;

    /// The strategy `BACKPROP_MATMUL_TILE` asks for (a tiling's name, `Tile::name`, whatever its case, fixes
    /// it, for comparisons); unset or blank, the default.
    pub fn from_env_value(value: Option<&str>) -> Result<Self> {
        let names = Tile::ALL.map(|t| (t.name(), t));
        Ok(environment::choice_value("BACKPROP_MATMUL_TILE", value, &names)?.map_or(Self::DEFAULT, Self::Fixed))
    }
}

/// Milliseconds each timing of a candidate aims for.
const TARGET_MS: f64 = 2.0;

/// Runs back to back in one timing, when one run took `once` seconds: 1 for a run of `TARGET_MS` or more,
/// up to 64 for very short ones (where a fast GPU's submit-and-wait would otherwise decide).
pub fn repetitions(once: f64) -> usize {
    ((TARGET_MS * 1e-3 / once.max(1e-9)).ceil() as usize).clamp(1, 64)
}

/// The tiling choices of one device: the strategy, whether the products may load their operands as `vec4`,
/// and the cache of measured choices; and how the training step is chosen (`step`).
#[derive(Debug)]
pub struct Tuner {
    strategy: Strategy,
    vector_loads: bool,
    cache: Mutex<HashMap<MatmulKey, Tile>>,
    /// Timings taken so far (each a call of a `matmul_tile` timer).
    timings: AtomicUsize,
    path_strategy: PathStrategy,
    /// Steps chosen by timing, and the timings taken for them.
    paths: Mutex<HashMap<PathKey, GpuPath>>,
    path_timings: AtomicUsize,
}

impl Tuner {
    pub fn new(strategy: Strategy, vector_loads: bool) -> Self {
        Self {
            strategy,
            vector_loads,
            cache: Mutex::default(),
            timings: AtomicUsize::new(0),
            path_strategy: PathStrategy::Rule,
            paths: Mutex::default(),
            path_timings: AtomicUsize::new(0),
        }
    }

    /// The same tuner choosing training steps by `path_strategy` (`PathStrategy::Rule` unless set).
    pub fn with_path_strategy(self, path_strategy: PathStrategy) -> Self {
        Self { path_strategy, ..self }
    }

    /// The tuner the environment asks for, read once when a device is opened: `BACKPROP_MATMUL_TILE`
    /// (`Strategy::from_env_value`), the switch `BACKPROP_NO_VEC4` (`1`: scalar operand loads, for
    /// comparison) and `BACKPROP_GPU_PATH` (`PathStrategy::from_env_value`), each as `environment` says.
    pub fn from_env() -> Result<Self> {
        let strategy = Strategy::from_env_value(environment::read("BACKPROP_MATMUL_TILE")?.as_deref())?;
        let path = PathStrategy::from_env_value(environment::read("BACKPROP_GPU_PATH")?.as_deref())?;
        let vector_loads = !environment::switch("BACKPROP_NO_VEC4")?;
        Ok(Self::new(strategy, vector_loads).with_path_strategy(path))
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Whether products load aligned operands four values at a time.
    pub fn vector_loads(&self) -> bool {
        self.vector_loads
    }

    /// How many timings were taken (a cached choice takes none).
    pub fn timings(&self) -> usize {
        self.timings.load(Ordering::Relaxed)
    }

    /// The tiling for a product of `key`. Under `Strategy::Measure`, a large product's first request
    /// times each candidate with `time(tile, runs)` (seconds for `runs` runs back to back in one submit):
    /// a warm-up, one run to size the timing, then the best of three timings of `repetitions` runs. The
    /// fastest is cached for the key.
    pub fn matmul_tile(&self, key: MatmulKey, mut time: impl FnMut(Tile, usize) -> Result<f64>) -> Result<Tile> {
        let min_macs = match self.strategy {
            Strategy::Fixed(tile) => return Ok(tile),
            Strategy::Heuristic => return Ok(key.heuristic()),
            Strategy::Measure { min_macs } => min_macs,
        };
        if key.macs() < min_macs {
            return Ok(key.heuristic());
        }
        if let Some(&tile) = self.cache.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(tile);
        }
        let mut timed = |tile, runs| {
            self.timings.fetch_add(1, Ordering::Relaxed);
            time(tile, runs)
        };
        let mut best = (f64::INFINITY, key.heuristic());
        for tile in key.candidates() {
            timed(tile, 1)?;
            let runs = repetitions(timed(tile, 1)?);
            for _ in 0..3 {
                let s = timed(tile, runs)? / runs as f64;
                if s < best.0 {
                    best = (s, tile);
                }
            }
        }
        self.cache.lock().map_err(|_| poisoned())?.insert(key, best.1);
        Ok(best.1)
    }
}

fn poisoned() -> Error {
    Error::Gpu("the tiling cache was poisoned by a panic in another thread".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::shaders::RegShape::{Square, Tall, Wide};
    use crate::gpu::shaders::Tile::Reg;

    fn key(m: usize, n: usize, k: usize) -> MatmulKey {
        MatmulKey { m, n, k, a_transposed: false, b_transposed: true, a_vectors: true, b_vectors: false }
    }

    /// A timer under which `fastest` takes 1 ms a run and every other tiling 3 ms, counting its calls.
    fn timer(fastest: Tile, calls: &mut usize) -> impl FnMut(Tile, usize) -> Result<f64> + '_ {
        move |tile, runs| {
            *calls += 1;
            Ok(runs as f64 * if tile == fastest { 1e-3 } else { 3e-3 })
        }
    }

    #[test]
    fn short_runs_are_repeated_long_ones_are_not() {
        assert_eq!(repetitions(5e-3), 1, "a run past the target is timed alone");
        assert_eq!(repetitions(2e-3), 1);
        assert_eq!(repetitions(0.5e-3), 4);
        assert_eq!(repetitions(100e-6), 20, "a 100 µs run (mostly submit and wait) is repeated");
        assert_eq!(repetitions(0.0), 64, "never more than 64");
    }

    #[test]
    fn measuring_keeps_the_fastest_candidate_and_times_each_key_once() {
        let tuner = Tuner::new(Strategy::Measure { min_macs: 1000 }, true);
        let mut calls = 0;
        assert_eq!(tuner.matmul_tile(key(256, 256, 256), timer(Tile::Huge, &mut calls)).unwrap(), Tile::Huge);
        assert_eq!(calls, 6 * 5, "six candidates, five timings each");
        assert_eq!(tuner.timings(), 30);
        let mut again = 0;
        assert_eq!(tuner.matmul_tile(key(256, 256, 256), timer(Tile::Small, &mut again)).unwrap(), Tile::Huge);
        assert_eq!(again, 0, "a cached choice is not measured again");
        // Another layout of the same shape is another key.
        let transposed = MatmulKey { a_transposed: true, ..key(256, 256, 256) };
        assert_eq!(tuner.matmul_tile(transposed, timer(Tile::Small, &mut again)).unwrap(), Tile::Small);
        assert_eq!(again, 30);
    }

    #[test]
    fn only_tilings_the_output_fills_are_candidates() {
        let mut calls = 0;
        let tuner = Tuner::new(Strategy::Measure { min_macs: 1 }, true);
        // 100 × 1000: the 128×128 tile does not fit the rows, so even a fast Huge is never timed; the
        // register-blocked tilings (workgroups of 64) are timed whatever the output.
        assert_eq!(tuner.matmul_tile(key(100, 1000, 50), timer(Tile::Huge, &mut calls)).unwrap(), Tile::Small);
        let reg = [Reg(Wide), Reg(Square), Reg(Tall)];
        assert_eq!(key(100, 1000, 50).candidates(), [[Tile::Small, Tile::Big].as_slice(), &reg].concat());
        assert_eq!(key(7, 1000, 50).candidates(), [[Tile::Small].as_slice(), &reg].concat());
        assert_eq!(calls, 25);
        assert_eq!(key(64, 64, 64).candidates(), [[Tile::Small, Tile::Big].as_slice(), &reg].concat());
        assert_eq!(key(128, 128, 1).candidates(), Tile::ALL);
    }

    #[test]
    fn small_products_fixed_tilings_and_the_heuristic_measure_nothing() {
        let mut calls = 0;
        let measure = Tuner::new(Strategy::Measure { min_macs: 1 << 20 }, true);
        assert_eq!(measure.matmul_tile(key(64, 64, 64), timer(Tile::Huge, &mut calls)).unwrap(), Tile::Big);
        assert_eq!(measure.matmul_tile(key(63, 64, 64), timer(Tile::Huge, &mut calls)).unwrap(), Tile::Small);
        let fixed = Tuner::new(Strategy::Fixed(Tile::Huge), true);
        assert_eq!(fixed.matmul_tile(key(1, 1, 1), timer(Tile::Small, &mut calls)).unwrap(), Tile::Huge);
        let heuristic = Tuner::new(Strategy::Heuristic, true);
        assert_eq!(heuristic.matmul_tile(key(512, 512, 512), timer(Tile::Huge, &mut calls)).unwrap(), Tile::Big);
        assert_eq!(calls, 0);
        assert_eq!(measure.timings() + fixed.timings() + heuristic.timings(), 0);
    }

    #[test]
    fn the_environment_names_a_tiling_or_nothing() {
        assert_eq!(Strategy::from_env_value(None).unwrap(), Strategy::DEFAULT);
        assert_eq!(Strategy::from_env_value(Some("huge")).unwrap(), Strategy::Fixed(Tile::Huge));
        for tile in Tile::ALL {
            assert_eq!(Strategy::from_env_value(Some(tile.name())).unwrap(), Strategy::Fixed(tile), "{tile:?}");
        }
        assert_eq!(Strategy::from_env_value(Some("reg64x64")).unwrap(), Strategy::Fixed(Reg(Square)));
        assert_eq!(Strategy::from_env_value(Some("HUGE")).unwrap(), Strategy::Fixed(Tile::Huge), "any case");
        assert_eq!(Strategy::from_env_value(Some("")).unwrap(), Strategy::DEFAULT, "blank is unset");
        let e = Strategy::from_env_value(Some("medium")).unwrap_err().to_string();
        assert!(e.contains("BACKPROP_MATMUL_TILE") && e.contains("'medium'"), "{e}");
        assert!(e.ends_with("it may be small, big, huge, reg16x256, reg64x64 or reg256x16 (or unset)"), "{e}");
    }

    #[test]
    fn a_failed_timing_is_the_choice_s_error_and_nothing_is_cached() {
        let tuner = Tuner::new(Strategy::DEFAULT, true);
        let fail = |_: Tile, _: usize| -> Result<f64> { Err(Error::Gpu("lost".into())) };
        assert!(tuner.matmul_tile(key(1024, 1024, 1024), fail).is_err());
        let mut calls = 0;
        assert_eq!(tuner.matmul_tile(key(1024, 1024, 1024), timer(Tile::Big, &mut calls)).unwrap(), Tile::Big);
        assert_eq!(calls, 30);
    }
}
