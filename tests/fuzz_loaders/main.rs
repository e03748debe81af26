//! Fuzz-style property tests of every file loader: CSV (`data::load_csv`, `data::load_csv_features`), MNIST IDX
//! (`data::load_idx`) and checkpoints (`checkpoint::load`, `checkpoint::load_init`).
//!
//! Each target feeds the loader random or mutated files and checks that it returns `Ok` or `Err` and never
//! panics, that no single allocation is absurd for the input (at most [`ALLOC_BUDGET`] for inputs of a few KiB),
//! that every error's message names the file, and that an `Ok` result satisfies the loader's invariants (shapes,
//! one-hot targets, finite values, parameters that pass `Params::check`).
//!
//! The number of cases per target is proptest's: 256, or `PROPTEST_CASES` from the environment (scripts/fuzz
//! runs a long session). A failing case's seed is saved in `tests/regressions/fuzz_<target>.txt`, and saved
//! seeds are replayed first on every run; inputs that reproduce a bug are kept as files in `tests/regressions/`
//! and loaded by the `regression_*` tests at the end (every file there goes through the same checks).
//!
//! One binary: the allocation guard and the runner here, a module per reader, and `limits`, which reads the
//! same inputs as streams in small pieces (the result must be the file's) and under small limits (no
//! allocation beyond them, and nothing kept beyond them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{
    Config, FailurePersistence, FileFailurePersistence, TestCaseError, TestCaseResult, TestRunner,
};

mod checkpoint;
mod checkpoint_edits;
mod csv;
mod idx;
mod limits;
mod regressions;
#[path = "../common/streams.rs"]
mod streams;

// ---------------------------------------------------------------------------------------------------------
// Allocation guard: the largest single allocation a loader makes, per thread
// ---------------------------------------------------------------------------------------------------------

/// The largest single allocation a loader may make for one of the inputs here (each a few KiB at most).
const ALLOC_BUDGET: usize = 256 << 20;
/// A larger request is refused, which aborts the process ("memory allocation of N bytes failed") instead of
/// letting one case exhaust the machine; the guard first prints where the input that caused it is kept.
const ALLOC_REFUSE: usize = 16 << 30;

struct Tracking;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// The folder holding the current input, for the message printed before a refusal.
    static CURRENT_INPUT: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Tracking {
    /// Records a request; false refuses it.
    fn note(size: usize) -> bool {
        if !ARMED.with(Cell::get) {
            return true;
        }
        LARGEST.with(|l| l.set(l.get().max(size)));
        if size <= ALLOC_REFUSE {
            return true;
        }
        ARMED.with(|a| a.set(false)); // the message below must not recurse into this branch
        let mut err = std::io::stderr(); // unbuffered and not captured: the process is about to abort
        let _ =
            write!(err, "\nfuzz_loaders: a loader asked for {size} bytes in one allocation; refused. The input is in ");
        let _ = CURRENT_INPUT.try_with(|c| match c.try_borrow() {
            Ok(dir) => writeln!(err, "{dir}"),
            Err(_) => writeln!(err, "(unknown)"),
        });
        false
    }
}

// SAFETY: every call is forwarded to `System` unchanged, or refused with a null pointer (allowed by the
// `GlobalAlloc` contract); the bookkeeping touches only const-initialised thread-locals without destructors.
// Every block below passes on the caller's guarantees as they came, so `System` gets what its contract asks.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `System.alloc` requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `System.alloc_zeroed` requires.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `ptr` is a live block of this allocator made with `layout` (every
        // block here is `System`'s) and that `new_size` is non-zero and does not overflow when rounded up to
        // `layout.align()`: what `System.realloc` requires.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live block of this allocator (so of `System`) made with
        // `layout`, as `System.dealloc` requires.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a non-string panic payload)".into())
}

thread_local! {
    /// Where the last panic inside [`guarded`] happened, with its message.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside [`guarded`] are recorded (with their location) instead of printed: shrinking a failing case
/// runs the panicking loader hundreds of times. Other panics go to the default hook.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ARMED.with(Cell::get) {
                let at = info.location().map_or_else(|| "?".into(), |l| format!("{}:{}", l.file(), l.line()));
                let msg = format!("panicked at {at}: {}", panic_message(info.payload()));
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one loader call: a panic, or a single allocation over [`ALLOC_BUDGET`], becomes a test failure.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    guarded_within(what, ALLOC_BUDGET, f)
}

/// [`guarded`] with a tighter budget for the largest single allocation.
fn guarded_within<T>(what: &str, budget: usize, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    install_panic_hook();
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    ARMED.with(|a| a.set(false));
    let largest = LARGEST.with(Cell::get);
    match r {
        Err(p) => {
            let recorded = LAST_PANIC.with(|l| l.borrow_mut().take());
            let msg = recorded.unwrap_or_else(|| format!("panicked: {}", panic_message(&*p)));
            Err(TestCaseError::fail(format!("{what} {msg}")))
        }
        Ok(_) if largest > budget => Err(TestCaseError::fail(format!(
            "{what} made a single allocation of {largest} bytes ({:.1} MiB; the budget is {budget} bytes)",
            largest as f64 / (1 << 20) as f64
        ))),
        Ok(v) => Ok(v),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Running a target
// ---------------------------------------------------------------------------------------------------------

/// Counts of what one target did.
#[derive(Default)]
struct Stats {
    cases: AtomicUsize,
    /// Loader calls that returned Ok (a measure of how deep the generated inputs reach).
    ok: AtomicUsize,
    calls: AtomicUsize,
}

impl Stats {
    fn outcome<T, E>(&self, r: &Result<T, E>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if r.is_ok() {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// proptest's default configuration (so `PROPTEST_CASES` and the other `PROPTEST_*` variables apply), with
/// failures persisted in `persist` unless `PROPTEST_DISABLE_FAILURE_PERSISTENCE` is set.
fn config(persist: &'static str) -> Config {
    let base = Config::default();
    let failure_persistence = base
        .failure_persistence
        .is_some()
        .then(|| Box::new(FileFailurePersistence::Direct(persist)) as Box<dyn FailurePersistence>);
    Config { failure_persistence, ..base }
}

/// A scratch folder for one target's inputs (kept after an abort, so the input can be recovered).
fn scratch(target: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fuzz_loaders-{target}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder under target/tmp");
    CURRENT_INPUT.with(|c| *c.borrow_mut() = dir.path().display().to_string());
    dir
}

/// Runs one target with proptest and prints `fuzz_loaders <target>: N cases ...` (scripts/fuzz collects it).
fn run<S: Strategy>(target: &str, persist: &'static str, strategy: S, test: impl Fn(S::Value, &Stats) -> TestCaseResult)
where
    S::Value: Debug,
{
    let start = Instant::now();
    let stats = Stats::default();
    let mut runner = TestRunner::new(config(persist));
    let result = runner.run(&strategy, |v| {
        stats.cases.fetch_add(1, Ordering::Relaxed);
        test(v, &stats)
    });
    println!(
        "fuzz_loaders {target}: {} cases in {:.2} s ({} of {} loader calls returned Ok)",
        stats.cases.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        stats.ok.load(Ordering::Relaxed),
        stats.calls.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Adds the files the loader read to a failure's message (as escaped bytes, the first 4 KiB of each), so a
/// failing case can be saved in tests/regressions/ without re-running the generator.
fn with_files(r: TestCaseResult, files: &[&Path]) -> TestCaseResult {
    r.map_err(|e| match e {
        TestCaseError::Fail(msg) => {
            let mut msg = msg.to_string();
            for f in files {
                let bytes = std::fs::read(f).unwrap_or_default();
                let shown = &bytes[..bytes.len().min(4096)];
                msg.push_str(&format!(
                    "\n  {} ({} bytes): b\"{}\"{}",
                    f.file_name().unwrap_or_default().to_string_lossy(),
                    bytes.len(),
                    shown.escape_ascii(),
                    if shown.len() < bytes.len() { "..." } else { "" }
                ));
            }
            TestCaseError::fail(msg)
        }
        reject => reject,
    })
}

/// The error's message must name one of `paths`.
fn names_path(e: &backprop::Error, paths: &[&Path]) -> TestCaseResult {
    let msg = e.to_string();
    prop_assert!(
        paths.iter().any(|p| msg.contains(&p.display().to_string())),
        "the error does not name the file ({paths:?}): {msg}"
    );
    Ok(())
}
