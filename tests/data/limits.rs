//! Bounded reading: an endless stream, a stream without line ends, a data set larger than the memory it may
//! take, or an address-space limit (`ulimit -v`) each end in one clear error, never in an abort or a hang.
//! Small limits stand in for large inputs, so nothing here fills the machine.

use std::sync::atomic::Ordering;

use backprop::data::{self, Limits, Request};

use crate::{Endless, assert_contains, gzip, load_stream, write};

fn with(limits: Limits) -> Request {
    Request { limits, ..Request::new(1) }
}

#[test]
fn an_endless_csv_stream_stops_at_the_memory_limit() {
    let (rows, taken) = Endless::new("a,b,label\n", "1,2,0\n");
    let err = load_stream("endless.csv", rows, &with(Limits::with_memory(1 << 20))).unwrap_err().to_string();
    assert_contains(&err, &["endless.csv", "rows read up to line", "more than the 1.0 MiB", "the limit given"]);
    // 16 bytes a row (two f32 features and a label): about 65,536 rows of 6 bytes of text.
    let taken = taken.load(Ordering::Relaxed);
    assert!(taken < 1 << 20, "{taken} bytes read for 1 MiB of values");
}

#[test]
fn endless_text_and_endless_lines_stop_at_their_limits() {
    let limits = Limits { text_bytes: 1 << 20, line_bytes: 4096, ..Limits::detect() };
    // Blank lines forever: no values, so only the cap on text stops it.
    let (blank, taken) = Endless::new("1,2,0\n", "\n");
    let err = load_stream("blank.csv", blank, &with(limits.clone())).unwrap_err().to_string();
    assert_contains(&err, &["blank.csv", "more than 1.0 MiB of text", "endless"]);
    assert!(taken.load(Ordering::Relaxed) <= (1 << 20) + (128 << 10));
    // No line end at all (as /dev/zero): the cap on a line.
    let (zeros, _) = Endless::new("", [0u8]);
    let err = load_stream("zeros.csv", zeros, &with(limits.clone())).unwrap_err().to_string();
    assert_contains(&err, &["zeros.csv", "line 1 is longer than 4.0 KiB"]);
    // A quote left open makes the rest of the stream one line.
    let (open_quote, _) = Endless::new("1,2,0\n3,\"4", "5\n");
    let err = load_stream("quote.csv", open_quote, &with(limits)).unwrap_err().to_string();
    assert_contains(&err, &["quote.csv", "line 2 is longer than 4.0 KiB", "quote left open"]);
}

#[test]
fn the_one_hot_targets_count_against_the_memory_limit() {
    // 1000 rows with labels 0..999: 1000 classes, a 4 MB one-hot matrix for 20 KB of values.
    let text: String = (0..1000).map(|i| format!("{i},{i}\n")).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "wide.csv", &text);
    let request = with(Limits::with_memory(1 << 20));
    let err = data::load(path.to_str().unwrap(), None, &request).unwrap_err().to_string();
    assert_contains(&err, &["wide.csv", "1000 rows with 1000 one-hot classes", "more than the 1.0 MiB"]);
    assert!(data::load(path.to_str().unwrap(), None, &with(Limits::with_memory(8 << 20))).is_ok());
}

#[test]
fn this_machines_limits_come_from_its_available_memory() {
    let limits = Limits::detect();
    assert!(limits.memory > 0);
    if cfg!(target_os = "linux") {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
        let total: u64 = line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024;
        assert!(limits.memory <= total / 2, "{} of {total} bytes", limits.memory);
        assert!(limits.memory_from.starts_with("half of the "), "{}", limits.memory_from);
    } else {
        assert_eq!(limits.memory, data::FIXED_MEMORY);
    }
    assert_eq!((limits.text_bytes, limits.line_bytes), (data::MAX_TEXT_BYTES, data::MAX_LINE_BYTES));
}

/// Runs the binary under `ulimit -v` (KiB) with `args`; returns (status, stderr).
fn under_ulimit(kib: u64, args: &[&str]) -> (Option<i32>, String) {
    let script = format!("ulimit -v {kib} && exec \"$0\" \"$@\"");
    let out =
        std::process::Command::new("sh").args(["-c", &script, env!("CARGO_BIN_EXE_backprop")]).args(args).output();
    let out = out.expect("sh runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_address_space_limit_is_an_error_not_an_abort() {
    // 150,000 gzipped 28x28 images (470 MB as f32, 120 KB on disk) under a 700 MB address space: too large
    // for what is left, said before anything is allocated.
    let dir = tempfile::tempdir().unwrap();
    let n = 150_000u32;
    let mut images = Vec::new();
    for w in [0x803, n, 28, 28] {
        images.extend_from_slice(&u32::to_be_bytes(w));
    }
    images.resize(16 + n as usize * 784, 0);
    let mut labels = [0x801u32, n].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    labels.resize(8 + n as usize, 3);
    let img = write(dir.path(), "big-images.gz", gzip(&images));
    let lab = write(dir.path(), "big-labels.gz", gzip(&labels));
    let args = ["train", "--data", img.to_str().unwrap(), "--labels", lab.to_str().unwrap(), "--backend", "cpu"];
    let (status, err) = under_ulimit(700 << 10, &args);
    assert_eq!(status, Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_contains(lines[0], &["error: ", "big-images.gz", "150000 images of 28x28", "ulimit -v"]);
}
