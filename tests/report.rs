//! The per-epoch CSV log and the loss/accuracy plot: exact CSV text, atomic writes, valid PNGs for
//! awkward inputs.

use std::path::{Path, PathBuf};

use backprop::Error;
use backprop::report::{
    DEFAULT_PLOT_SIZE, EpochMetrics, PLOT_SIZE_LIMITS, append_metrics_csv, metrics_csv, parse_metrics_csv, plot_png,
    plot_png_sized, read_metrics_csv, read_plot_history, write_metrics_csv,
};

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn row(epoch: usize, train: f64, test: Option<f64>, acc: Option<f64>) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: train,
        test_loss: test,
        test_accuracy: acc,
        seconds: epoch as f64 * 0.5,
        lr: 0.01,
    }
}

/// 20 epochs of a run that goes well: losses fall, accuracy rises and levels off.
fn realistic(epochs: usize) -> Vec<EpochMetrics> {
    (1..=epochs)
        .map(|e| {
            let t = e as f64;
            let train = 0.08 + 2.2 * (-t / 3.5).exp();
            let test = 0.12 + 2.1 * (-t / 4.0).exp() + 0.002 * t;
            let acc = 0.97 - 0.75 * (-t / 3.0).exp();
            EpochMetrics {
                epoch: e,
                train_loss: train,
                test_loss: Some(test),
                test_accuracy: Some(acc),
                seconds: 1.7 * t,
                lr: 1e-3 * 0.95f64.powi(e as i32 - 1),
            }
        })
        .collect()
}

/// The names of the entries in `dir`, sorted.
fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Checks the PNG signature and returns the IHDR (width, height).
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 24, "{} is too short for a PNG", path.display());
    assert_eq!(bytes[..8], PNG_SIGNATURE, "{} is not a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

/// Plots `rows` into a fresh directory, checks the file, and that nothing else was left there.
fn plot_ok(rows: &[EpochMetrics], title: &str, size: (u32, u32)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    plot_png_sized(&path, rows, title, size).unwrap();
    assert_eq!(png_size(&path), size);
    // A blank image of this size compresses to well under this; text and lines do not.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 4000, "the plot is suspiciously small ({len} bytes)");
    assert_eq!(list_dir(dir.path()), ["plot.png"]);
    (dir, path)
}

#[test]
fn csv_text_is_exact_with_empty_cells() {
    let rows = vec![
        EpochMetrics {
            epoch: 1,
            train_loss: 0.5,
            test_loss: Some(0.625),
            test_accuracy: Some(0.75),
            seconds: 1.25,
            lr: 0.1,
        },
        EpochMetrics { epoch: 2, train_loss: 0.25, test_loss: None, test_accuracy: None, seconds: 2.5, lr: 0.05 },
        EpochMetrics { epoch: 3, train_loss: 2.0, test_loss: Some(0.3), test_accuracy: None, seconds: 3.0, lr: 0.05 },
    ];
    let expected = "epoch,train_loss,test_loss,test_accuracy,seconds,lr\n\
                    1,0.5,0.625,0.75,1.25,0.1\n\
                    2,0.25,,,2.5,0.05\n\
                    3,2,0.3,,3,0.05\n";
    assert_eq!(metrics_csv(&rows), expected);
    assert_eq!(metrics_csv(&[]), "epoch,train_loss,test_loss,test_accuracy,seconds,lr\n");
}

#[test]
fn csv_floats_round_trip() {
    let values =
        [0.1 + 0.2, 1.0 / 3.0, 1.5e-7, 1e-5, 123_456_789.123, 1e300, f64::MIN_POSITIVE, f64::MAX, -2.5e-9, 0.0];
    let rows: Vec<EpochMetrics> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| EpochMetrics {
            epoch: i + 1,
            train_loss: v,
            test_loss: Some(v),
            test_accuracy: Some(v),
            seconds: v,
            lr: v,
        })
        .collect();
    let csv = metrics_csv(&rows);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), values.len() + 1);
    for (line, &v) in lines[1..].iter().zip(&values) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 6, "{line}");
        for cell in &cells[1..] {
            assert!(cell.len() <= 24, "{cell} is needlessly long");
            assert_eq!(cell.parse::<f64>().unwrap(), v, "{cell} does not round-trip");
        }
    }
    assert!(csv.contains(",1.5e-7,"), "{csv}");
    assert!(csv.contains(",1e300,"), "{csv}");

    // Non-finite values are written, and read back, as such.
    let odd = [EpochMetrics {
        epoch: 7,
        train_loss: f64::NAN,
        test_loss: Some(f64::INFINITY),
        test_accuracy: Some(f64::NEG_INFINITY),
        seconds: 0.0,
        lr: 0.001,
    }];
    let csv = metrics_csv(&odd);
    assert_eq!(csv.lines().nth(1), Some("7,NaN,inf,-inf,0,0.001"));
    let cells: Vec<f64> = csv.lines().nth(1).unwrap().split(',').map(|c| c.parse().unwrap()).collect();
    assert!(cells[1].is_nan());
    assert_eq!(cells[2], f64::INFINITY);
    assert_eq!(cells[3], f64::NEG_INFINITY);
}

#[test]
fn written_csv_equals_metrics_csv_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    let rows = realistic(5);
    write_metrics_csv(&path, &rows).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), metrics_csv(&rows));

    // A second run replaces the file as a whole.
    let fewer = &rows[..2];
    write_metrics_csv(&path, fewer).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), metrics_csv(fewer));
    assert_eq!(list_dir(dir.path()), ["metrics.csv"]);
}

#[test]
fn appended_rows_read_back_as_written_and_a_cut_last_line_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    let rows = realistic(6);
    write_metrics_csv(&path, &rows[..2]).unwrap();
    append_metrics_csv(&path, &rows[2..5]).unwrap();
    append_metrics_csv(&path, &[]).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), metrics_csv(&rows[..5]));
    assert_eq!(read_metrics_csv(&path).unwrap(), rows[..5]);
    // A write cut short leaves a line without its newline: it is not a row.
    let cut = metrics_csv(&rows) + "7,0.5,0.";
    assert_eq!(parse_metrics_csv(&cut).unwrap(), rows);
    let err = parse_metrics_csv("epoch,loss\n1,2\n").unwrap_err();
    assert!(err.contains("first line"), "{err}");
    let err = parse_metrics_csv(&(metrics_csv(&rows[..1]) + "2,x,,,1,0.1\n")).unwrap_err();
    assert!(err.contains("line 3"), "{err}");
    assert!(append_metrics_csv(&dir.path().join("none.csv"), &rows).is_err(), "appending needs the file");
}

#[test]
fn a_plot_carries_the_rows_it_was_drawn_from() {
    let (dir, path) = plot_ok(&realistic(12), "with history", DEFAULT_PLOT_SIZE);
    assert_eq!(read_plot_history(&path).unwrap(), Some(realistic(12)));
    // A PNG from elsewhere has none; a file that is not a PNG is an error.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"zTXt").unwrap();
    bytes[at..at + 4].copy_from_slice(b"tEXt");
    let other = dir.path().join("other.png");
    std::fs::write(&other, &bytes).unwrap();
    assert_eq!(read_plot_history(&other).unwrap(), None);
    std::fs::write(&other, b"not a png").unwrap();
    assert!(matches!(read_plot_history(&other), Err(Error::Data { .. })));
}

#[test]
fn a_long_history_is_drawn_thinned_and_carried_whole() {
    // 20,000 epochs: drawn from a few thousand points, with every row in the file.
    let rows: Vec<EpochMetrics> = (1..=20_000)
        .map(|e| row(e, 1.0 / e as f64 + if e % 997 == 0 { 0.5 } else { 0.0 }, Some(2.0 / e as f64), Some(0.5)))
        .collect();
    let (_dir, path) = plot_ok(&rows, "long", DEFAULT_PLOT_SIZE);
    assert_eq!(read_plot_history(&path).unwrap(), Some(rows));
}

#[test]
fn writing_into_a_missing_directory_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    let rows = realistic(3);

    let csv_path = missing.join("metrics.csv");
    let err = write_metrics_csv(&csv_path, &rows).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path == &csv_path), "{err:?}");

    let png_path = missing.join("plot.png");
    let err = plot_png(&png_path, &rows, "t").unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path == &png_path), "{err:?}");
    assert!(err.to_string().contains("plot.png"), "{err}");

    assert!(!missing.exists());
    assert!(list_dir(dir.path()).is_empty());
}

#[test]
fn a_directory_in_the_way_is_an_error_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let rows = realistic(3);
    for name in ["metrics.csv", "plot.png"] {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep.txt"), "precious").unwrap();
    }

    let csv_path = dir.path().join("metrics.csv");
    let err = write_metrics_csv(&csv_path, &rows).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path == &csv_path), "{err:?}");
    let png_path = dir.path().join("plot.png");
    let err = plot_png(&png_path, &rows, "t").unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if path == &png_path), "{err:?}");

    assert_eq!(list_dir(dir.path()), ["metrics.csv", "plot.png"]);
    for name in ["metrics.csv", "plot.png"] {
        let path = dir.path().join(name);
        assert!(path.is_dir());
        assert_eq!(list_dir(&path), ["keep.txt"]);
        assert_eq!(std::fs::read_to_string(path.join("keep.txt")).unwrap(), "precious");
    }
}

#[test]
fn a_failed_plot_leaves_an_existing_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    std::fs::write(&path, b"earlier result").unwrap();

    let err = plot_png(&path, &[], "empty").unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let err = plot_png_sized(&path, &realistic(3), "tiny", (10, 10)).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let too_big = PLOT_SIZE_LIMITS.1 + 1;
    let err = plot_png_sized(&path, &realistic(3), "huge", (too_big, 600)).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");

    assert_eq!(std::fs::read(&path).unwrap(), b"earlier result");
    assert_eq!(list_dir(dir.path()), ["plot.png"]);

    // And a successful one replaces it.
    plot_png(&path, &realistic(3), "ok").unwrap();
    assert_eq!(png_size(&path), DEFAULT_PLOT_SIZE);
    assert_eq!(list_dir(dir.path()), ["plot.png"]);
}

#[test]
fn empty_rows_is_invalid_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    let err = plot_png(&path, &[], "nothing").unwrap_err();
    assert!(matches!(&err, Error::Invalid(msg) if msg.contains("no epochs")), "{err:?}");
    assert!(list_dir(dir.path()).is_empty());
}

#[test]
fn plot_has_the_png_signature_and_requested_size() {
    let rows = realistic(20);
    plot_ok(&rows, "digits, 64-64-10, adam", DEFAULT_PLOT_SIZE);
    // Portrait stacks the panels; small and large sizes still lay out.
    plot_ok(&rows, "portrait", (600, 800));
    plot_ok(&rows, "small", (PLOT_SIZE_LIMITS.0, PLOT_SIZE_LIMITS.0));
    plot_ok(&rows, "large", (1800, 1200));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.png");
    plot_png(&path, &rows, "default size").unwrap();
    assert_eq!(png_size(&path), DEFAULT_PLOT_SIZE);
    assert_eq!(list_dir(dir.path()), ["default.png"]);
}

#[test]
fn plot_without_test_metrics() {
    let rows: Vec<EpochMetrics> = (1..=10).map(|e| row(e, 1.0 / e as f64, None, None)).collect();
    plot_ok(&rows, "train loss only", DEFAULT_PLOT_SIZE);
    // Test loss but no accuracy (regression).
    let rows: Vec<EpochMetrics> = (1..=10).map(|e| row(e, 1.0 / e as f64, Some(1.2 / e as f64), None)).collect();
    plot_ok(&rows, "regression", DEFAULT_PLOT_SIZE);
}

#[test]
fn plot_a_single_epoch() {
    plot_ok(&[row(1, 0.7, Some(0.8), Some(0.5))], "one epoch", DEFAULT_PLOT_SIZE);
    plot_ok(&[row(1, 0.7, None, None)], "one epoch, train only", DEFAULT_PLOT_SIZE);
    plot_ok(&[row(1, 0.0, Some(0.0), Some(1.0))], "perfect", DEFAULT_PLOT_SIZE);
}

#[test]
fn plot_skips_non_finite_values() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let rows = vec![
        row(1, 2.0, Some(nan), Some(0.1)),
        row(2, nan, Some(1.5), Some(nan)),
        row(3, inf, Some(-inf), Some(inf)),
        row(4, 0.8, Some(1.0), Some(0.6)),
        row(5, 0.5, Some(0.9), Some(0.7)),
        row(6, nan, None, None),
    ];
    plot_ok(&rows, "with NaN and inf", DEFAULT_PLOT_SIZE);

    // Every loss non-finite: still a valid image (the panel says there is nothing to draw).
    let all_nan: Vec<EpochMetrics> = (1..=5).map(|e| row(e, nan, Some(nan), Some(nan))).collect();
    plot_ok(&all_nan, "all NaN", DEFAULT_PLOT_SIZE);
    let all_inf: Vec<EpochMetrics> = (1..=5).map(|e| row(e, inf, None, None)).collect();
    plot_ok(&all_inf, "diverged", DEFAULT_PLOT_SIZE);
    plot_ok(&[row(1, nan, None, None)], "one NaN epoch", DEFAULT_PLOT_SIZE);
}

#[test]
fn plot_survives_extreme_values() {
    let cases: Vec<(&str, Vec<EpochMetrics>)> = vec![
        // Many decades: a log-scale loss axis.
        (
            "log scale",
            (1..=30).map(|e| row(e, 10f64.powi(-(e as i32) / 3), Some(10f64.powi(1 - (e as i32) / 4)), None)).collect(),
        ),
        ("huge", vec![row(1, f64::MAX, Some(1e300), Some(2.0)), row(2, -f64::MAX, Some(-1e300), Some(-1.0))]),
        ("tiny", vec![row(1, f64::MIN_POSITIVE, Some(5e-324), Some(0.0)), row(2, 1e300, Some(f64::MAX), Some(1.0))]),
        ("constant", (1..=4).map(|e| row(e, 0.25, Some(0.25), Some(0.5))).collect()),
        ("zeros", (1..=4).map(|e| row(e, 0.0, Some(0.0), Some(0.0))).collect()),
        ("negative", (1..=4).map(|e| row(e, -(e as f64), Some(-3.0), Some(1.0))).collect()),
        ("unordered epochs", vec![row(5, 0.1, None, Some(0.9)), row(2, 0.4, None, Some(0.5)), row(2, 0.3, None, None)]),
        ("epoch 0 and huge epochs", vec![row(0, 1.0, None, None), row(usize::MAX, 0.5, None, None)]),
        (
            "many epochs",
            (1..=5000).map(|e| row(e, 1.0 / e as f64, Some(1.1 / e as f64), Some(1.0 - 1.0 / e as f64))).collect(),
        ),
    ];
    for (title, rows) in cases {
        plot_ok(&rows, title, DEFAULT_PLOT_SIZE);
    }
    // Titles that are empty, very long, or outside the font.
    let rows = realistic(5);
    plot_ok(&rows, "", DEFAULT_PLOT_SIZE);
    plot_ok(&rows, &"very long title ".repeat(40), DEFAULT_PLOT_SIZE);
    plot_ok(&rows, "ünïcödé ✓ 数字 \u{1F600}\n\t", DEFAULT_PLOT_SIZE);
}

#[test]
fn plotting_from_several_threads_at_once() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                plot_ok(&realistic(10 + i), &format!("thread {i}"), DEFAULT_PLOT_SIZE);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A realistic 20-epoch plot, to look at: set `REPORT_EXAMPLE_PNG=/tmp/report_example.png`.
#[test]
fn realistic_example() {
    let rows = realistic(20);
    let (_dir, path) = plot_ok(&rows, "digits, 64-64-10, adam", DEFAULT_PLOT_SIZE);
    if let Some(out) = std::env::var_os("REPORT_EXAMPLE_PNG") {
        std::fs::copy(&path, out).unwrap();
    }
}
