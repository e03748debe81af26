//! The metrics CSV: one row per epoch, written whole or appended to, and read back to continue a run.
//! The files are native only; the text builds everywhere.

#[cfg(not(target_arch = "wasm32"))]
use std::io::Read;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use super::EpochMetrics;
#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::fsutil::{append, write_atomic};

/// The CSV header line (without the newline).
pub const CSV_HEADER: &str = "epoch,train_loss,test_loss,test_accuracy,seconds,lr";

/// The largest metrics file read back (a million epochs are about 60 MB).
#[cfg(not(target_arch = "wasm32"))]
const MAX_CSV_BYTES: u64 = 256 << 20;

/// The metrics as CSV text: [`CSV_HEADER`], then one row per epoch. A missing value is an empty cell.
///
/// Floats are written so that they parse back to the same value: in decimal (`0.0123`), or in
/// exponent form (`1.5e-7`) when very small or very large; non-finite values as `NaN`, `inf`, `-inf`.
pub fn metrics_csv(rows: &[EpochMetrics]) -> String {
    let mut out = String::with_capacity(CSV_HEADER.len() + 1 + rows.len() * 64);
    out.push_str(CSV_HEADER);
    out.push('\n');
    out.push_str(&csv_rows(rows));
    out
}

/// The rows alone, each ended by a newline.
fn csv_rows(rows: &[EpochMetrics]) -> String {
    let cell = |v: Option<f64>| v.map(csv_float).unwrap_or_default();
    rows.iter()
        .map(|r| {
            let (train, seconds, lr) = (csv_float(r.train_loss), csv_float(r.seconds), csv_float(r.lr));
            format!("{},{train},{},{},{seconds},{lr}\n", r.epoch, cell(r.test_loss), cell(r.test_accuracy))
        })
        .collect()
}

/// Writes [`metrics_csv`] to `path` atomically.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_metrics_csv(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    write_atomic(path, metrics_csv(rows).as_bytes())
}

/// Appends `rows` to a metrics file that [`write_metrics_csv`] wrote.
#[cfg(not(target_arch = "wasm32"))]
pub fn append_metrics_csv(path: &Path, rows: &[EpochMetrics]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    append(path, csv_rows(rows).as_bytes())
}

/// Reads back a file that [`write_metrics_csv`] and [`append_metrics_csv`] wrote. A last line without its
/// newline (a write cut short) is left out.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_metrics_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    f.take(MAX_CSV_BYTES + 1).read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > MAX_CSV_BYTES {
        return Err(Error::data(path, format!("is larger than {MAX_CSV_BYTES} bytes; not a metrics file")));
    }
    parse_metrics_csv(&text).map_err(|msg| Error::data(path, msg))
}

/// Parses the text of a metrics file (see [`read_metrics_csv`]); the error names the line.
pub fn parse_metrics_csv(text: &str) -> std::result::Result<Vec<EpochMetrics>, String> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    let mut lines = complete.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err(format!("is not a metrics CSV: its first line is not '{CSV_HEADER}'"));
    }
    lines.enumerate().map(|(i, line)| parse_row(line).ok_or(format!("line {}: not a metrics row", i + 2))).collect()
}

fn parse_row(line: &str) -> Option<EpochMetrics> {
    let cells: Vec<&str> = line.split(',').collect();
    let [epoch, train, test, acc, seconds, lr] = cells[..] else { return None };
    let opt = |c: &str| if c.is_empty() { Some(None) } else { c.parse::<f64>().ok().map(Some) };
    Some(EpochMetrics {
        epoch: epoch.parse().ok()?,
        train_loss: train.parse().ok()?,
        test_loss: opt(test)?,
        test_accuracy: opt(acc)?,
        seconds: seconds.parse().ok()?,
        lr: lr.parse().ok()?,
    })
}

/// A float for the CSV: shortest round-trip form, in exponent notation outside 1e-5..1e16.
fn csv_float(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-5..1e16).contains(&a) { format!("{v:e}") } else { format!("{v}") }
}
