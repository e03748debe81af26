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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use backprop::checkpoint::{self, Checkpoint, Model, TrainingState};
use backprop::data::{self, Dataset, MAX_CLASSES, Normalization, Normalizer, TargetSpec, Task};
use backprop::model::Output;
use backprop::optim::{OptimConfig, OptimState, OptimizerKind};
use backprop::{Activation, Loss, MlpSpec, Params};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{
    Config, FailurePersistence, FileFailurePersistence, TestCaseError, TestCaseResult, TestRunner,
};
use serde_json::{Value, json};

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
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::note(layout.size()) { unsafe { System.alloc(layout) } } else { std::ptr::null_mut() }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::note(layout.size()) { unsafe { System.alloc_zeroed(layout) } } else { std::ptr::null_mut() }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::note(new_size) { unsafe { System.realloc(ptr, layout, new_size) } } else { std::ptr::null_mut() }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
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
        Ok(_) if largest > ALLOC_BUDGET => Err(TestCaseError::fail(format!(
            "{what} made a single allocation of {largest} bytes ({:.1} MiB; the budget is {} MiB)",
            largest as f64 / (1 << 20) as f64,
            ALLOC_BUDGET >> 20
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

// ---------------------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------------------

/// Odd cells: non-finite, huge, negative, fractional, near-integer, empty, not numbers, separators.
const CSV_TOKENS: &[&str] = &[
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "infinity",
    "1e39",
    "-1e39",
    "3.4028236e38",
    "-1",
    "-0",
    "0.5",
    "1.5",
    "2.0",
    "1e10",
    "1e5",
    "65535",
    "65536",
    "65535.0",
    "1.00000001",
    "0.99999999",
    "16777217",
    "1e-50",
    "",
    " ",
    " 3 ",
    "0x10",
    "1_000",
    "\"1\"",
    "1,2",
    "a",
    "label",
    "\u{feff}1",
    "１",
    "−1",
    "1.",
    ".5",
    "+3",
    "4e",
    "e4",
    "--1",
    "\t2",
    "2\r",
    "\r",
    "\n",
    "\r\n",
    "4294967296",
    "18446744073709551616",
];

/// Bytes that make up CSV text, for the arbitrary-bytes target.
const CSV_ALPHABET: &[u8] = b"0123456789.,,,--+eE \t\r\n\n\nnaNiIfFxX\"\xef\xbb\xbf\xff";

/// A cell that parses as a finite f32.
fn clean_number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (-1000i32..1000).prop_map(|v| v.to_string()),
        3 => (-1e6f64..1e6).prop_map(|v| (v as f32).to_string()),
        2 => (-1e30f64..1e30).prop_map(|v| format!("{v:e}")),
    ]
}

/// A cell that usually parses, sometimes not.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![9 => clean_number(), 1 => select(CSV_TOKENS).prop_map(String::from)]
}

/// A valid class label, occasionally a large one.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0u32..6).prop_map(|v| v.to_string()),
        1 => prop_oneof![Just(65535u32), Just(65536), 0u32..70000].prop_map(|v| v.to_string()),
    ]
}

fn target_spec() -> impl Strategy<Value = TargetSpec> {
    let targets = prop_oneof![3 => Just(None), 1 => (0usize..4).prop_map(Some)];
    let classes = prop_oneof![
        4 => Just(None),
        3 => (0usize..12).prop_map(Some),
        1 => select(vec![MAX_CLASSES - 1, MAX_CLASSES, MAX_CLASSES + 1, usize::MAX]).prop_map(Some),
    ];
    (targets, classes).prop_map(|(targets, classes)| TargetSpec { targets, classes })
}

/// A change to the table before it becomes text.
#[derive(Clone, Debug)]
enum CellEdit {
    Set(Index, Index, String),
    /// Ragged rows.
    Drop(Index, Index),
    Add(Index, String),
    BlankLine(Index),
    DuplicateLine(Index),
}

/// A change to the bytes of the file.
#[derive(Clone, Debug)]
enum ByteEdit {
    Delete(Index),
    Insert(Index, u8),
    Replace(Index, u8),
    InsertText(Index, &'static str),
}

#[derive(Clone, Debug)]
struct CsvCase {
    rows: Vec<Vec<String>>,
    header: Option<String>,
    crlf: bool,
    bom: bool,
    trailing_blank_lines: usize,
    cell_edits: Vec<CellEdit>,
    byte_edits: Vec<ByteEdit>,
    spec: TargetSpec,
    /// The input width given to `load_csv_features`.
    width: usize,
}

fn csv_case() -> impl Strategy<Value = CsvCase> {
    // A table of 1..6 feature columns and a label column, with a header line (names, or odd ones) or none.
    let table = (1usize..6).prop_flat_map(|features| {
        let rows = prop::collection::vec(
            (prop::collection::vec(clean_number(), features), label()).prop_map(|(mut r, l)| {
                r.push(l);
                r
            }),
            1..30,
        );
        let names = (0..=features).map(|c| format!("c{c}")).collect::<Vec<_>>().join(",");
        let header = prop::option::weighted(
            0.3,
            prop_oneof![
                6 => Just(names),
                1 => select(vec!["a,b,label", "x", "1,2,label", "", "1,2", "label"]).prop_map(String::from),
            ],
        );
        (rows, header)
    });
    let cell_edit = prop_oneof![
        3 => (any::<Index>(), any::<Index>(), prop_oneof![select(CSV_TOKENS).prop_map(String::from), number()])
            .prop_map(|(r, c, s)| CellEdit::Set(r, c, s)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(r, c)| CellEdit::Drop(r, c)),
        1 => (any::<Index>(), number()).prop_map(|(r, s)| CellEdit::Add(r, s)),
        1 => any::<Index>().prop_map(CellEdit::BlankLine),
        1 => any::<Index>().prop_map(CellEdit::DuplicateLine),
    ];
    let byte_edit = prop_oneof![
        any::<Index>().prop_map(ByteEdit::Delete),
        (any::<Index>(), select(CSV_ALPHABET)).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Replace(i, b)),
        (any::<Index>(), select(CSV_TOKENS)).prop_map(|(i, s)| ByteEdit::InsertText(i, s)),
    ];
    (
        table,
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop_oneof![3 => Just(0usize), 1 => 1usize..4],
        prop_oneof![1 => Just(Vec::new()), 2 => prop::collection::vec(cell_edit, 1..4)],
        prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(byte_edit, 1..4)],
        target_spec(),
        1usize..7,
    )
        .prop_map(|((rows, header), crlf, bom, trailing_blank_lines, cell_edits, byte_edits, spec, width)| {
            CsvCase { rows, header, crlf, bom, trailing_blank_lines, cell_edits, byte_edits, spec, width }
        })
}

impl CsvCase {
    fn render(&self) -> Vec<u8> {
        let mut rows = self.rows.clone();
        let mut lines_after: Vec<CellEdit> = Vec::new();
        for e in &self.cell_edits {
            match e {
                CellEdit::Set(r, c, s) => {
                    let row = &mut rows[r.index(self.rows.len())];
                    if !row.is_empty() {
                        let c = c.index(row.len());
                        row[c] = s.clone();
                    }
                }
                CellEdit::Drop(r, c) => {
                    let row = &mut rows[r.index(self.rows.len())];
                    if !row.is_empty() {
                        row.remove(c.index(row.len()));
                    }
                }
                CellEdit::Add(r, s) => rows[r.index(self.rows.len())].push(s.clone()),
                other => lines_after.push(other.clone()),
            }
        }
        let mut lines: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
        for e in lines_after {
            match e {
                CellEdit::BlankLine(i) => lines.insert(i.index(lines.len() + 1), String::new()),
                CellEdit::DuplicateLine(i) => {
                    let l = lines[i.index(lines.len())].clone();
                    lines.insert(i.index(lines.len()), l);
                }
                _ => unreachable!(),
            }
        }
        if let Some(h) = &self.header {
            lines.insert(0, h.clone());
        }
        lines.extend(std::iter::repeat_n(String::new(), self.trailing_blank_lines));
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(eol);
        text.push_str(eol);
        if self.bom {
            text.insert(0, '\u{feff}');
        }
        let mut bytes = text.into_bytes();
        for e in &self.byte_edits {
            match *e {
                ByteEdit::Delete(i) if !bytes.is_empty() => {
                    bytes.remove(i.index(bytes.len()));
                }
                ByteEdit::Delete(_) => {}
                ByteEdit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                ByteEdit::Replace(i, b) if !bytes.is_empty() => {
                    let i = i.index(bytes.len());
                    bytes[i] = b;
                }
                ByteEdit::Replace(..) => {}
                ByteEdit::InsertText(i, s) => {
                    let at = i.index(bytes.len() + 1);
                    bytes.splice(at..at, s.bytes());
                }
            }
        }
        bytes
    }
}

fn all_finite(a: &ndarray::Array2<f32>) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// The invariants of a data set loaded from `path` with `spec`.
fn check_csv_dataset(ds: &Dataset, path: &Path, spec: TargetSpec) -> TestCaseResult {
    prop_assert_eq!(&ds.name, &path.display().to_string());
    prop_assert!(!ds.is_empty(), "no rows");
    prop_assert!(ds.features() >= 1, "no features");
    prop_assert_eq!(ds.x.nrows(), ds.y.nrows(), "x and y have different row counts");
    prop_assert!(all_finite(&ds.x), "x holds a non-finite value");
    prop_assert!(all_finite(&ds.y), "y holds a non-finite value");
    match ds.task {
        Task::Classification { classes } => {
            prop_assert!(spec.targets.is_none(), "classification with targets {:?}", spec.targets);
            if let Some(c) = spec.classes {
                prop_assert_eq!(classes, c, "the fixed class count is not kept");
            }
            prop_assert!((1..=MAX_CLASSES).contains(&classes), "{} classes", classes);
            prop_assert_eq!(ds.y.ncols(), classes);
            let labels = ds.labels.as_ref().ok_or_else(|| TestCaseError::fail("classification without labels"))?;
            prop_assert_eq!(labels.len(), ds.len());
            for (i, (row, &l)) in ds.y.rows().into_iter().zip(labels).enumerate() {
                prop_assert!(l < classes, "row {}: label {} >= {} classes", i, l, classes);
                prop_assert!(row[l] == 1.0, "row {}: y[label] = {}", i, row[l]);
                prop_assert!(row.iter().filter(|&&v| v != 0.0).count() == 1, "row {}: y is not one-hot", i);
            }
        }
        Task::Regression { targets } => {
            prop_assert_eq!(Some(targets), spec.targets);
            prop_assert_eq!(ds.y.ncols(), targets);
            prop_assert!(ds.labels.is_none());
        }
    }
    Ok(())
}

/// Loads `path` with `load_csv(spec)` and `load_csv_features(width)` and checks both results.
fn check_csv_file(path: &Path, spec: TargetSpec, width: usize, stats: &Stats) -> TestCaseResult {
    let r = guarded("load_csv", || data::load_csv(path, spec))?;
    stats.outcome(&r);
    match r {
        Ok(ds) => check_csv_dataset(&ds, path, spec)?,
        Err(e) => names_path(&e, &[path])?,
    }
    let r = guarded("load_csv_features", || data::load_csv_features(path, width))?;
    stats.outcome(&r);
    match r {
        Ok(ds) => {
            prop_assert_eq!(&ds.name, &path.display().to_string());
            prop_assert!(!ds.is_empty(), "no rows");
            prop_assert_eq!(ds.features(), width, "load_csv_features: wrong width");
            prop_assert_eq!(ds.y.dim(), (ds.len(), 0), "load_csv_features: y is not empty");
            prop_assert!(all_finite(&ds.x), "load_csv_features: x holds a non-finite value");
        }
        Err(e) => names_path(&e, &[path])?,
    }
    Ok(())
}

#[test]
fn fuzz_csv_arbitrary_bytes() {
    let dir = scratch("csv_bytes");
    let path = dir.path().join("input.csv");
    let bytes = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => prop::collection::vec(prop_oneof![9 => select(CSV_ALPHABET), 1 => any::<u8>()], 0..512),
        2 => "[0-9]{1,2}(,[0-9]{1,2}){1,3}(\\r?\\n[0-9,. e-]{0,12}){0,4}\\n?".prop_map(String::into_bytes),
    ];
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_csv_arbitrary_bytes.txt");
    run("csv_arbitrary_bytes", persist, (bytes, target_spec(), 1usize..7), |(bytes, spec, width), stats| {
        write_file(&path, &bytes);
        with_files(check_csv_file(&path, spec, width, stats), &[&path])
    });
}

#[test]
fn fuzz_csv_mutated() {
    let dir = scratch("csv_mutated");
    let path = dir.path().join("input.csv");
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_csv_mutated.txt");
    run("csv_mutated", persist, csv_case(), |case, stats| {
        write_file(&path, &case.render());
        with_files(check_csv_file(&path, case.spec, case.width, stats), &[&path])
    });
}

// ---------------------------------------------------------------------------------------------------------
// IDX
// ---------------------------------------------------------------------------------------------------------

/// Header words worth trying: magics, small and boundary dimensions, and two factors of 2^64 - 1
/// (3 * 1722007169 * 3570783445 = 2^64 - 1, the largest product `read_idx` accepts).
const IDX_WORDS: &[u32] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    255,
    256,
    0x0801,
    0x0802,
    0x0803,
    0x0804,
    0x0c03,
    0x0d01,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
    1_722_007_169,
    3_570_783_445,
];

#[derive(Clone, Debug)]
enum IdxEdit {
    Truncate(Index),
    Flip(Index, u8),
    /// A flip in the first 16 bytes (the header).
    FlipHeader(u8, u8),
    /// Sets the big-endian word at 4 * k.
    SetWord(u8, u32),
    Append(Vec<u8>),
    /// Gzips the bytes so far (later edits change the compressed bytes).
    Gzip,
}

fn idx_edit() -> impl Strategy<Value = IdxEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(IdxEdit::Truncate),
        2 => (any::<Index>(), 1u8..).prop_map(|(i, m)| IdxEdit::Flip(i, m)),
        2 => (0u8..16, 1u8..).prop_map(|(i, m)| IdxEdit::FlipHeader(i, m)),
        2 => (0u8..4, prop_oneof![select(IDX_WORDS), any::<u32>()]).prop_map(|(k, w)| IdxEdit::SetWord(k, w)),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(IdxEdit::Append),
        2 => Just(IdxEdit::Gzip),
    ]
}

#[derive(Clone, Debug)]
struct IdxCase {
    n: u32,
    rows: u32,
    cols: u32,
    pixels: Vec<u8>,
    labels: Vec<u8>,
    image_edits: Vec<IdxEdit>,
    label_edits: Vec<IdxEdit>,
    classes: Option<usize>,
}

fn idx_case() -> impl Strategy<Value = IdxCase> {
    let files = (1u32..=20, 1u32..=8, 1u32..=8).prop_flat_map(|(n, rows, cols)| {
        (
            Just((n, rows, cols)),
            prop::collection::vec(any::<u8>(), (n * rows * cols) as usize),
            prop::collection::vec(prop_oneof![9 => 0u8..10, 1 => any::<u8>()], n as usize),
        )
    });
    let edits = || prop_oneof![1 => Just(Vec::new()), 1 => prop::collection::vec(idx_edit(), 1..4)];
    let classes = prop_oneof![
        4 => Just(None),
        3 => (0usize..12).prop_map(Some),
        1 => select(vec![255, 256, 257, MAX_CLASSES, MAX_CLASSES + 1, usize::MAX]).prop_map(Some),
    ];
    (files, edits(), edits(), classes).prop_map(
        |(((n, rows, cols), pixels, labels), image_edits, label_edits, classes)| IdxCase {
            n,
            rows,
            cols,
            pixels,
            labels,
            image_edits,
            label_edits,
            classes,
        },
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip_if_gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).ok()?;
    Some(out)
}

fn idx_file(words: &[u32], payload: &[u8]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).chain(payload.iter().copied()).collect()
}

fn apply_idx_edits(mut bytes: Vec<u8>, edits: &[IdxEdit]) -> Vec<u8> {
    for e in edits {
        match e {
            IdxEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
            IdxEdit::Flip(i, m) if !bytes.is_empty() => {
                let i = i.index(bytes.len());
                bytes[i] ^= m;
            }
            IdxEdit::FlipHeader(i, m) if usize::from(*i) < bytes.len() => bytes[usize::from(*i)] ^= m,
            IdxEdit::SetWord(k, w) => {
                let at = 4 * usize::from(*k);
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&w.to_be_bytes());
                }
            }
            IdxEdit::Append(extra) => bytes.extend_from_slice(extra),
            IdxEdit::Gzip => bytes = gzip(&bytes),
            _ => {}
        }
    }
    bytes
}

/// The header words and payload of an IDX file as the loader should see it (after gunzipping).
fn parse_idx(bytes: &[u8], ndims: usize) -> Option<(Vec<usize>, Vec<u8>)> {
    let plain = gunzip_if_gzip(bytes)?;
    let head = plain.get(..4 + 4 * ndims)?;
    let words: Vec<usize> =
        head.chunks_exact(4).skip(1).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize).collect();
    Some((words, plain[4 + 4 * ndims..].to_vec()))
}

/// Loads an image/label pair and checks the result against the files' own (decompressed) contents.
fn check_idx_files(images: &Path, labels: &Path, classes: Option<usize>, stats: &Stats) -> TestCaseResult {
    let r = guarded("load_idx", || data::load_idx(images, labels, classes))?;
    stats.outcome(&r);
    let ds = match r {
        Ok(ds) => ds,
        Err(e) => return names_path(&e, &[images, labels]),
    };
    let img_bytes = std::fs::read(images).unwrap();
    let lab_bytes = std::fs::read(labels).unwrap();
    let (dims, pixels) =
        parse_idx(&img_bytes, 3).ok_or_else(|| TestCaseError::fail("loaded an image file that does not parse"))?;
    let (ldims, raw_labels) =
        parse_idx(&lab_bytes, 1).ok_or_else(|| TestCaseError::fail("loaded a label file that does not parse"))?;
    let (n, size) = (dims[0], dims[1] * dims[2]);
    prop_assert_eq!(&ds.name, &images.display().to_string());
    prop_assert!(n >= 1 && size >= 1, "loaded {} images of {} pixels", n, size);
    prop_assert_eq!(ldims, vec![n]);
    prop_assert_eq!(ds.x.dim(), (n, size), "x is not (count, rows*cols)");
    prop_assert_eq!(pixels.len(), n * size, "loaded a file whose payload does not match its header");
    prop_assert!(ds.x.iter().all(|&v| (0.0..=255.0).contains(&v) && v.fract() == 0.0), "a pixel outside 0..=255");
    prop_assert!(ds.x.iter().zip(&pixels).all(|(&v, &p)| v == f32::from(p)), "pixels differ from the file");
    let want_labels: Vec<usize> = raw_labels.iter().map(|&l| usize::from(l)).collect();
    prop_assert_eq!(ds.labels.as_ref(), Some(&want_labels));
    let Task::Classification { classes: got } = ds.task else {
        return Err(TestCaseError::fail(format!("IDX data loaded as {:?}", ds.task)));
    };
    let max = want_labels.iter().copied().max().unwrap_or(0);
    prop_assert_eq!(got, classes.unwrap_or(max + 1));
    prop_assert!(max < got, "label {} >= {} classes", max, got);
    prop_assert_eq!(ds.y.dim(), (n, got));
    for (row, &l) in ds.y.rows().into_iter().zip(&want_labels) {
        prop_assert!(row[l] == 1.0 && row.iter().filter(|&&v| v != 0.0).count() == 1, "y is not one-hot");
    }
    Ok(())
}

#[test]
fn fuzz_idx_mutated() {
    let dir = scratch("idx");
    let (images, labels) = (dir.path().join("images.idx"), dir.path().join("labels.idx"));
    let persist = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions/fuzz_idx_mutated.txt");
    run("idx_mutated", persist, idx_case(), |case, stats| {
        let img = idx_file(&[0x0803, case.n, case.rows, case.cols], &case.pixels);
        let lab = idx_file(&[0x0801, case.n], &case.labels);
        write_file(&images, &apply_idx_edits(img, &case.image_edits));
        write_file(&labels, &apply_idx_edits(lab, &case.label_edits));
        with_files(check_idx_files(&images, &labels, case.classes, stats), &[&images, &labels])
    });
}

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

const META_KEYS: &[&str] = &[
    "format",
    "format_version",
    "sizes",
    "activations",
    "output",
    "loss",
    "normalization",
    "task",
    "training",
    "extra",
];
const JSON_KEYS: &[&str] = &[
    "kind",
    "classes",
    "targets",
    "name",
    "beta1",
    "beta2",
    "eps",
    "momentum",
    "weight_decay",
    "offset",
    "scale",
    "optimizer",
    "step",
    "epoch",
    "seed",
    "dtype",
    "shape",
    "data_offsets",
];
const JSON_STRINGS: &[&str] = &[
    "",
    "adam",
    "sgd",
    "momentum",
    "classification",
    "regression",
    "standard",
    "minmax",
    "none",
    "relu",
    "tanh",
    "identity",
    "sigmoid",
    "softmax",
    "mse",
    "cross-entropy",
    "backprop-mlp",
    "1",
    "2",
    "F32",
    "F64",
    "[5,7,3]",
    "null",
    "{",
    "\u{0}",
    "é",
];
const DTYPES: &[&str] = &[
    "F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2",
    "F4", "F6_E2M3", "E8M0", "C64", "X",
];
const BIG: &[u64] =
    &[0, 1, 2, 3, 7, 8, 65536, 1 << 31, 1 << 32, 1 << 61, (1 << 62) + 1, u64::MAX / 4, u64::MAX - 1, u64::MAX];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        select(BIG).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2f64..2.0).prop_map(Value::from),
        select(vec![1e308, -1e308, 5e-324, -0.0, 0.999, 1.0]).prop_map(Value::from),
        select(JSON_STRINGS).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((select(JSON_KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn small_or_big() -> impl Strategy<Value = Value> {
    prop_oneof![4 => (0u64..9).prop_map(Value::from), 1 => select(BIG).prop_map(Value::from), 1 => json_value()]
}

fn name_of(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![4 => select(names).prop_map(Value::from), 1 => json_value()]
}

/// A metadata value that is close to a valid one for `key`, as the JSON text the metadata holds.
fn plausible_meta() -> impl Strategy<Value = (&'static str, String)> {
    let sizes = prop::collection::vec(small_or_big(), 0..5).prop_map(|v| ("sizes", Value::from(v).to_string()));
    let acts = prop::collection::vec(name_of(&["relu", "tanh", "identity", "sigmoid", "RELU", "softmax"]), 0..4)
        .prop_map(|v| ("activations", Value::from(v).to_string()));
    let task = (name_of(&["classification", "regression"]), select(vec!["classes", "targets"]), small_or_big())
        .prop_map(|(k, f, n)| ("task", json!({"kind": k, f: n}).to_string()));
    let finite = || prop::collection::vec(prop_oneof![(-3f64..3.0).prop_map(Value::from), json_value()], 0..7);
    let norm = (name_of(&["standard", "minmax", "none"]), finite(), finite())
        .prop_map(|(k, o, s)| ("normalization", json!({"kind": k, "offset": o, "scale": s}).to_string()));
    let number = || prop_oneof![(-0.5f64..1.5).prop_map(Value::from), json_value()];
    let optimizer = (name_of(&["sgd", "momentum", "adam"]), number(), number(), number(), number(), number())
        .prop_map(|(name, b1, b2, eps, m, wd)| {
            json!({"name": name, "beta1": b1, "beta2": b2, "eps": eps, "momentum": m, "weight_decay": wd})
        });
    let training = (optimizer, small_or_big(), small_or_big(), small_or_big()).prop_map(|(o, step, epoch, seed)| {
        ("training", json!({"optimizer": o, "step": step, "epoch": epoch, "seed": seed}).to_string())
    });
    let simple = (
        select(vec!["format", "format_version", "output", "loss"]),
        select(vec!["backprop-mlp", "1", "2", "", "identity", "sigmoid", "softmax", "mse", "cross-entropy", "CE"]),
    )
        .prop_map(|(k, v)| (k, v.to_string()));
    prop_oneof![sizes, acts, task, norm, training, simple]
}

/// A structured change to the JSON header; the length prefix is rewritten to match.
#[derive(Clone, Debug)]
enum HeaderEdit {
    SetMeta(&'static str, String),
    /// A value that is not a string (safetensors metadata must be strings).
    SetMetaRaw(&'static str, Value),
    RemoveMeta(&'static str),
    /// Inserts text into the metadata string at a (char-boundary-rounded) position.
    SpliceMeta(&'static str, Index, String),
    SetTensorField(Index, &'static str, Value),
    RemoveTensor(Index),
    RenameTensor(Index, String),
}

/// A change to the file's bytes, after the header edits.
#[derive(Clone, Debug)]
enum RawEdit {
    Truncate(Index),
    Flip(Index, u8),
    FlipPrefix(u8, u8),
    SetPrefix(u64),
    /// Adds `delta` (may be negative) to the length prefix.
    NudgePrefix(i8),
    FlipHeader(Index, u8),
    /// Writes f32 bits into the data area (NaN, infinities, anything).
    SetData(Index, u32),
    Append(Vec<u8>),
}

#[derive(Clone, Debug)]
struct CkCase {
    base: Index,
    header_edits: Vec<HeaderEdit>,
    raw_edits: Vec<RawEdit>,
    /// The spec for `load_init`: None means the base checkpoint's.
    init_sizes: Option<Vec<usize>>,
}

fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let tensor_value = prop_oneof![
        select(DTYPES).prop_map(|d| ("dtype", Value::from(d))),
        prop::collection::vec(small_or_big(), 0..4).prop_map(|s| ("shape", Value::from(s))),
        (small_or_big(), small_or_big()).prop_map(|(a, b)| ("data_offsets", json!([a, b]))),
        json_value().prop_map(|v| ("data_offsets", v)),
    ];
    let tensor_name = prop_oneof![
        Just("layers.0.weight".to_string()),
        Just("layers.9.bias".to_string()),
        Just("layers.99999999999999999999.weight".to_string()),
        Just("optimizer.m".to_string()),
        Just("optimizer.v".to_string()),
        Just("__metadata__".to_string()),
        "[a-z.0-9]{0,12}",
    ];
    prop_oneof![
        6 => plausible_meta().prop_map(|(k, v)| HeaderEdit::SetMeta(k, v)),
        2 => (select(META_KEYS), json_value()).prop_map(|(k, v)| HeaderEdit::SetMeta(k, v.to_string())),
        1 => (select(META_KEYS), json_value()).prop_map(|(k, v)| HeaderEdit::SetMetaRaw(k, v)),
        2 => select(META_KEYS).prop_map(HeaderEdit::RemoveMeta),
        2 => (select(META_KEYS), any::<Index>(), prop_oneof![json_value().prop_map(|v| v.to_string()), "[\\[\\]{}\",:0-9a-z]{1,6}"])
            .prop_map(|(k, i, s)| HeaderEdit::SpliceMeta(k, i, s)),
        3 => (any::<Index>(), tensor_value).prop_map(|(i, (f, v))| HeaderEdit::SetTensorField(i, f, v)),
        1 => any::<Index>().prop_map(HeaderEdit::RemoveTensor),
        1 => (any::<Index>(), tensor_name).prop_map(|(i, n)| HeaderEdit::RenameTensor(i, n)),
    ]
}

fn raw_edit() -> impl Strategy<Value = RawEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(RawEdit::Truncate),
        3 => (any::<Index>(), 1u8..).prop_map(|(i, m)| RawEdit::Flip(i, m)),
        2 => (0u8..8, 1u8..).prop_map(|(i, m)| RawEdit::FlipPrefix(i, m)),
        1 => prop_oneof![select(BIG), any::<u64>(), Just(100_000_000), Just(100_000_001)].prop_map(RawEdit::SetPrefix),
        2 => (-9i8..=9).prop_map(RawEdit::NudgePrefix),
        3 => (any::<Index>(), 1u8..).prop_map(|(i, m)| RawEdit::FlipHeader(i, m)),
        2 => (
            any::<Index>(),
            prop_oneof![select(vec![0x7fc0_0000u32, 0x7f80_0000, 0xff80_0000, 0x7f7f_ffff, 1]), any::<u32>()]
        )
            .prop_map(|(i, b)| RawEdit::SetData(i, b)),
        1 => prop::collection::vec(any::<u8>(), 1..9).prop_map(RawEdit::Append),
    ]
}

fn ck_case() -> impl Strategy<Value = CkCase> {
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
    fn bytes(&self) -> (Vec<u8>, &'static MlpSpec) {
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

fn edit_header(header: &mut serde_json::Map<String, Value>, e: &HeaderEdit) {
    let tensors: Vec<String> = header.keys().filter(|k| *k != "__metadata__").cloned().collect();
    let meta = header.entry("__metadata__").or_insert_with(|| json!({}));
    match e {
        HeaderEdit::SetMeta(k, v) => {
            if let Some(m) = meta.as_object_mut() {
                m.insert(k.to_string(), Value::from(v.as_str()));
            }
        }
        HeaderEdit::SetMetaRaw(k, v) => {
            if let Some(m) = meta.as_object_mut() {
                m.insert(k.to_string(), v.clone());
            }
        }
        HeaderEdit::RemoveMeta(k) => {
            if let Some(m) = meta.as_object_mut() {
                m.remove(*k);
            }
        }
        HeaderEdit::SpliceMeta(k, i, text) => {
            if let Some(Value::String(s)) = meta.get_mut(*k) {
                let mut at = i.index(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, text);
            }
        }
        HeaderEdit::SetTensorField(i, field, v) if !tensors.is_empty() => {
            if let Some(Value::Object(t)) = header.get_mut(&tensors[i.index(tensors.len())]) {
                t.insert(field.to_string(), v.clone());
            }
        }
        HeaderEdit::RemoveTensor(i) if !tensors.is_empty() => {
            header.remove(&tensors[i.index(tensors.len())]);
        }
        HeaderEdit::RenameTensor(i, name) if !tensors.is_empty() => {
            if let Some(v) = header.remove(&tensors[i.index(tensors.len())]) {
                header.insert(name.clone(), v);
            }
        }
        _ => {}
    }
}

fn edit_raw(bytes: &mut Vec<u8>, e: &RawEdit) {
    let prefix = |b: &[u8]| b.get(..8).map(|p| u64::from_le_bytes(p.try_into().unwrap()));
    match *e {
        RawEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        RawEdit::Flip(i, m) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= m;
        }
        RawEdit::FlipPrefix(i, m) if usize::from(i) < bytes.len() => bytes[usize::from(i)] ^= m,
        RawEdit::SetPrefix(v) if bytes.len() >= 8 => bytes[..8].copy_from_slice(&v.to_le_bytes()),
        RawEdit::NudgePrefix(d) => {
            if let Some(p) = prefix(bytes) {
                bytes[..8].copy_from_slice(&p.wrapping_add_signed(i64::from(d)).to_le_bytes());
            }
        }
        RawEdit::FlipHeader(i, m) => {
            if let Some(n) = prefix(bytes).and_then(|p| usize::try_from(p).ok()) {
                let end = n.saturating_add(8).min(bytes.len());
                if end > 8 {
                    let at = 8 + i.index(end - 8);
                    bytes[at] ^= m;
                }
            }
        }
        RawEdit::SetData(i, bits) => {
            if let Some(n) = prefix(bytes).and_then(|p| usize::try_from(p).ok()) {
                let start = n.saturating_add(8);
                if start < bytes.len() && bytes.len() - start >= 4 {
                    let at = start + 4 * i.index((bytes.len() - start) / 4);
                    bytes[at..at + 4].copy_from_slice(&bits.to_le_bytes());
                }
            }
        }
        RawEdit::Append(ref extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}

fn all_finite_params(p: &Params<f32>) -> bool {
    p.weights.iter().all(|w| w.iter().all(|v| v.is_finite()))
        && p.biases.iter().all(|b| b.iter().all(|v| v.is_finite()))
}

/// Loads `path` with `checkpoint::load` and with `checkpoint::load_init(spec)` and checks both results.
fn check_checkpoint_file(path: &Path, spec: &MlpSpec, stats: &Stats) -> TestCaseResult {
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

// ---------------------------------------------------------------------------------------------------------
// Regressions: inputs kept in tests/regressions/
// ---------------------------------------------------------------------------------------------------------

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// Every input kept in tests/regressions/ goes through the fuzzers' checks: `*.csv` (with the default
/// `TargetSpec` and input width 1), `*-images.idx` with the `*-labels.idx` beside it (classes inferred), and
/// `*.safetensors` (with `load_init` for the spec 5-7-3). Known failures are listed after all files ran.
#[test]
fn regression_files_pass_the_loader_checks() {
    let stats = Stats::default();
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let spec = MlpSpec::with_output(vec![5, 7, 3], Activation::Tanh, Output::Softmax, Loss::CrossEntropy).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let r = if name.ends_with(".csv") {
            check_csv_file(f, TargetSpec::default(), 1, &stats)
        } else if let Some(stem) = name.strip_suffix("-images.idx") {
            check_idx_files(f, &f.with_file_name(format!("{stem}-labels.idx")), None, &stats)
        } else if name.ends_with(".safetensors") {
            check_checkpoint_file(f, &spec, &stats)
        } else {
            continue;
        };
        if let Err(e) = r {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} regression input(s) fail:\n{}", failures.len(), failures.join("\n"));
}

/// An images header whose dimensions multiply to exactly 2^64 - 1 (3 x 1722007169 x 3570783445): `read_idx`
/// accepts the product, then computes `payload_len as u64 + 1` and `header_len + payload_len`, which overflow
/// (a panic with overflow checks, as in a debug build; a wrapped "expected 15 bytes" in the message otherwise).
#[test]
fn regression_idx_dims_whose_product_is_u64_max() {
    let dir = regressions_dir();
    let images = dir.join("idx-dims-product-u64-max-images.idx");
    let labels = dir.join("idx-dims-product-u64-max-labels.idx");
    let r = catch_unwind(|| data::load_idx(&images, &labels, None));
    let msg = match r {
        Err(p) => panic!("load_idx panicked: {}", panic_message(&*p)),
        Ok(Ok(_)) => panic!("load_idx accepted a 16-byte image file with 2^64 - 1 pixels"),
        Ok(Err(e)) => e.to_string(),
    };
    assert!(msg.contains(&images.display().to_string()), "{msg}");
    let expected: Option<u128> =
        msg.split("expected ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|n| n.parse().ok());
    if let Some(bytes) = expected {
        assert!(bytes >= 16, "the message claims a size smaller than the 16-byte header it read: {msg}");
    }
}

/// A 32 KiB CSV file of 8,192 rows whose last label is 65535: `load_csv` infers 65,536 classes and allocates
/// a one-hot y of 8192 x 65536 f32 = 2 GiB in one piece. MAX_CLASSES bounds the width of a row, not the
/// matrix: a 512 KiB file of this kind (131,072 rows) makes `backprop train --data FILE` abort with "memory
/// allocation of 34359738368 bytes failed" (`Dataset::classification`, `Array2::zeros((labels.len(), classes))`).
#[test]
fn regression_csv_one_stray_label_allocates_a_huge_one_hot_matrix() {
    let path = regressions_dir().join("csv-stray-label-one-hot-blowup.csv");
    // Refusing the file (an error that names it) and loading it within the budget are both fixes.
    match guarded("load_csv", || data::load_csv(&path, TargetSpec::default()).map(|ds| ds.y.dim())) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        Err(e) => panic!("{e}"),
    }
}

/// A class label written as a non-integer that rounds to an integer in f32 ("0.99999999", "1.00000001") is
/// taken as that integer instead of being refused as "not a non-negative integer".
#[test]
fn regression_csv_non_integer_label_that_rounds_to_an_integer() {
    let dir = tempfile::tempdir().unwrap();
    for label in ["0.99999999", "1.00000001", "2.0000000001"] {
        let path = dir.path().join("labels.csv");
        write_file(&path, format!("1,0\n2,{label}\n3,1\n").as_bytes());
        match data::load_csv(&path, TargetSpec::default()) {
            Ok(ds) => panic!("label {label:?} was accepted as class {:?}", ds.labels.unwrap()[1]),
            Err(e) => assert!(e.to_string().contains("line 2, column 2"), "{e}"),
        }
    }
}
