//! CSV: arbitrary bytes, and mutated tables.

use std::path::Path;

use backprop::data::{self, Dataset, MAX_CLASSES, TargetSpec, Task};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{TestCaseError, TestCaseResult};

use crate::{Stats, guarded, names_path, run, scratch, with_files, write_file};

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

pub(crate) fn target_spec() -> impl Strategy<Value = TargetSpec> {
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
pub(crate) struct CsvCase {
    rows: Vec<Vec<String>>,
    header: Option<String>,
    /// "\n", "\r\n" or "\r".
    eol: &'static str,
    bom: bool,
    trailing_blank_lines: usize,
    cell_edits: Vec<CellEdit>,
    byte_edits: Vec<ByteEdit>,
    pub(crate) spec: TargetSpec,
    /// The input width given to `load_csv_features`.
    pub(crate) width: usize,
}

pub(crate) fn csv_case() -> impl Strategy<Value = CsvCase> {
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
        select(vec!["\n", "\r\n", "\r"]),
        prop::bool::weighted(0.1),
        prop_oneof![3 => Just(0usize), 1 => 1usize..4],
        prop_oneof![1 => Just(Vec::new()), 2 => prop::collection::vec(cell_edit, 1..4)],
        prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(byte_edit, 1..4)],
        target_spec(),
        1usize..7,
    )
        .prop_map(|((rows, header), eol, bom, trailing_blank_lines, cell_edits, byte_edits, spec, width)| {
            CsvCase { rows, header, eol, bom, trailing_blank_lines, cell_edits, byte_edits, spec, width }
        })
}

impl CsvCase {
    pub(crate) fn render(&self) -> Vec<u8> {
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
        let eol = self.eol;
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

pub(crate) fn all_finite(a: &ndarray::Array2<f32>) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// The invariants of a data set loaded from `path` with `spec`.
pub(crate) fn check_csv_dataset(ds: &Dataset, path: &Path, spec: TargetSpec) -> TestCaseResult {
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
pub(crate) fn check_csv_file(path: &Path, spec: TargetSpec, width: usize, stats: &Stats) -> TestCaseResult {
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
