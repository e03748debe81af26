//! Data sets: the bundled digits, CSV and IDX loaders with every error they report, synthetic sets,
//! normalisation and splits.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use backprop::Error;
use backprop::data::{self, Dataset, Normalization, Normalizer, TargetSpec, Task};
use ndarray::{Array2, Axis, array};

/// Writes `contents` to `name` inside `dir` and returns the path.
fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The error message of loading `contents` as a CSV file called `name`; checks that it names the file.
fn csv_error(contents: &str, name: &str, spec: TargetSpec) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, contents);
    let err = data::load_csv(&path, spec).expect_err("the file should be rejected").to_string();
    assert!(err.contains(name), "{err:?} does not name the file {name}");
    err
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not contain {p:?}");
    }
}

fn classes(ds: &Dataset) -> usize {
    match ds.task {
        Task::Classification { classes } => classes,
        Task::Regression { .. } => panic!("expected classification"),
    }
}

#[test]
fn digits_loads_with_the_right_shapes_and_labels() {
    let ds = data::digits().unwrap();
    assert_eq!(ds.name, "digits");
    assert_eq!(ds.x.dim(), (1797, 64));
    assert_eq!(ds.y.dim(), (1797, 10));
    assert_eq!(ds.task, Task::Classification { classes: 10 });
    assert_eq!((ds.len(), ds.features(), ds.target_width()), (1797, 64, 10));
    assert!(!ds.is_empty());
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(labels.len(), 1797);
    assert!(labels.iter().all(|&l| l < 10));
    for class in 0..10 {
        assert!(labels.contains(&class), "class {class} missing");
    }
    // y is one-hot and agrees with the labels.
    for (row, &l) in ds.y.axis_iter(Axis(0)).zip(labels) {
        assert_eq!(row.sum(), 1.0);
        assert_eq!(row[l], 1.0);
    }
    assert!(ds.x.iter().all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));

    // The first row matches the file, decompressed independently.
    let gz = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    let first: Vec<f32> = text.lines().next().unwrap().split(',').map(|c| c.trim().parse().unwrap()).collect();
    assert_eq!(first.len(), 65);
    assert_eq!(ds.x.row(0).to_vec(), first[..64].to_vec());
    assert_eq!(labels[0], first[64] as usize);
    assert_eq!(text.lines().count(), 1797);
}

#[test]
fn csv_with_and_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let with = write(dir.path(), "with.csv", "a,b,label\n1,2,0\n3.5,-4,2\n5,6e1,1\n\n\n");
    let without = write(dir.path(), "without.csv", "1,2,0\n3.5,-4,2\n5,6e1,1\n");
    for path in [&with, &without] {
        let ds = data::load_csv(path, TargetSpec::default()).unwrap();
        assert_eq!(ds.name, path.display().to_string());
        assert_eq!(ds.x, array![[1.0, 2.0], [3.5, -4.0], [5.0, 60.0]]);
        assert_eq!(ds.labels, Some(vec![0, 2, 1]));
        assert_eq!(ds.task, Task::Classification { classes: 3 });
        assert_eq!(ds.y, array![[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
    }
    // A fixed class count widens y.
    let ds = data::load_csv(&without, TargetSpec { targets: None, classes: Some(5) }).unwrap();
    assert_eq!(ds.y.dim(), (3, 5));
    assert_eq!(classes(&ds), 5);
}

#[test]
fn csv_regression_targets_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "reg.csv", "x1,x2,x3,t1,t2\r\n1,2,3,0.5,-0.5\r\n4,5,6,1.5,2.5\r\n\r\n");
    let ds = data::load_csv(&path, TargetSpec { targets: Some(2), classes: None }).unwrap();
    assert_eq!(ds.x, array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    assert_eq!(ds.y, array![[0.5, -0.5], [1.5, 2.5]]);
    assert_eq!(ds.labels, None);
    assert_eq!(ds.task, Task::Regression { targets: 2 });

    // CRLF classification, spaces around cells.
    let path = write(dir.path(), "crlf.csv", "1, 2 ,1\r\n3,4,0\r\n");
    let ds = data::load_csv(&path, TargetSpec::default()).unwrap();
    assert_eq!(ds.x, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(ds.labels, Some(vec![1, 0]));
}

#[test]
fn csv_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let err = data::load_csv(&missing, TargetSpec::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.csv"), "{err}");

    assert_contains(&csv_error("", "empty.csv", TargetSpec::default()), &["empty"]);
    assert_contains(&csv_error("\n\r\n  \n", "blank.csv", TargetSpec::default()), &["empty"]);
    assert_contains(&csv_error("a,b,c\n", "header_only.csv", TargetSpec::default()), &["line 1", "no data rows"]);
}

#[test]
fn csv_content_errors_name_line_column_and_problem() {
    let spec = TargetSpec::default();
    assert_contains(
        &csv_error("1,2,0\n3,4,1\n5,6\n", "ragged.csv", spec),
        &["line 3", "expected 3 columns", "found 2"],
    );
    assert_contains(
        &csv_error("a,b,y\n1,2,0\n3,x7,1\n", "text.csv", spec),
        &["line 3", "column 2", "\"x7\"", "not a number"],
    );
    assert_contains(&csv_error("1,2,0\n3,,1\n", "hole.csv", spec), &["line 2", "column 2", "empty"]);
    assert_contains(&csv_error("1,2,0\n3,NaN,1\n", "nan.csv", spec), &["line 2", "column 2", "\"NaN\"", "not finite"]);
    assert_contains(&csv_error("1,2,0\n3,4,1\ninf,4,1\n", "inf.csv", spec), &["line 3", "column 1", "not finite"]);
    assert_contains(&csv_error("1,2,0\n3,4,1e39\n", "overflow.csv", spec), &["line 2", "column 3", "not finite"]);
    assert_contains(
        &csv_error("1,2,0\n3,4,1.5\n", "frac.csv", spec),
        &["line 2", "column 3", "\"1.5\"", "not a non-negative integer"],
    );
    assert_contains(
        &csv_error("1,2,0\n3,4,-1\n", "neg.csv", spec),
        &["line 2", "column 3", "not a non-negative integer"],
    );
    assert_contains(&csv_error("1,2,0\n3,4,1e9\n", "huge.csv", spec), &["line 2", "column 3", "too large"]);
    assert_contains(
        &csv_error("h1,h2,h3\n1,2,0\n3,4,10\n", "range.csv", TargetSpec { targets: None, classes: Some(10) }),
        &["line 3", "column 3", "\"10\"", "out of range for 10 classes"],
    );
    assert_contains(&csv_error("1,2,0\n\n3,4,1\n", "gap.csv", spec), &["line 2", "blank"]);
    assert_contains(&csv_error("1\n2\n", "narrow.csv", spec), &["line 1", "found 1 columns", "need at least 2"]);
    assert_contains(
        &csv_error("1,2\n3,4\n", "narrow_reg.csv", TargetSpec { targets: Some(2), classes: None }),
        &["line 1", "found 2 columns", "need at least 3"],
    );
    assert_contains(
        &csv_error("1,2\n3,4\n", "zero_targets.csv", TargetSpec { targets: Some(0), classes: None }),
        &["target columns", "at least 1", "got 0"],
    );
    assert_contains(
        &csv_error("1,2\n3,4\n", "huge_targets.csv", TargetSpec { targets: Some(usize::MAX), classes: None }),
        &["need at least"],
    );
    assert_contains(
        &csv_error("1,2,0\n3,4,1\n", "zero_classes.csv", TargetSpec { targets: None, classes: Some(0) }),
        &["classes", "got 0"],
    );

    // Not UTF-8: the line of the first bad byte.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "binary.csv", b"1,2,0\n3,\xff,1\n");
    let err = data::load_csv(&path, spec).unwrap_err().to_string();
    assert_contains(&err, &["binary.csv", "line 2", "UTF-8"]);
}

#[test]
fn csv_never_panics_on_odd_input() {
    let spec = TargetSpec::default();
    let dir = tempfile::tempdir().unwrap();
    let odd =
        [",", ",,,\n,,,", "\u{feff}1,2,0", "1,2,0,", "-,+,.", "1,2,0\n1,2,0\n,", "\r", "1;2;3\n4;5;6", "é,ü\n1,2"];
    for (i, text) in odd.iter().enumerate() {
        let path = write(dir.path(), &format!("odd{i}.csv"), text);
        let _ = data::load_csv(&path, spec);
        let _ = data::load_csv(&path, TargetSpec { targets: Some(3), classes: Some(1) });
    }
    // A byte-order mark is skipped.
    let ds = data::load_csv(&dir.path().join("odd2.csv"), spec).unwrap();
    assert_eq!(ds.x, array![[1.0, 2.0]]);
}

/// An IDX images file: magic 0x803, n, rows, cols, pixels.
fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803, n, rows, cols] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

/// An IDX labels file: magic 0x801, n, labels.
fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0801, labels.len() as u32] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v.extend_from_slice(labels);
    v
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 2 * 3).map(|i| (i * 15) as u8).collect(); // 3 images of 2x3
    let labels = [4u8, 0, 2];
    let img = idx_images(3, 2, 3, &pixels);
    let lab = idx_labels(&labels);
    let plain = (write(dir.path(), "img.idx", &img), write(dir.path(), "lab.idx", &lab));
    let gz = (write(dir.path(), "img.idx.gz", gzip(&img)), write(dir.path(), "lab.idx.gz", gzip(&lab)));
    for (images, labs) in [&plain, &gz, &(plain.0.clone(), gz.1.clone())] {
        let ds = data::load_idx(images, labs, None).unwrap();
        assert_eq!(ds.name, images.display().to_string());
        assert_eq!(ds.x.dim(), (3, 6));
        let expected: Vec<f32> = pixels.iter().map(|&p| f32::from(p)).collect();
        assert_eq!(ds.x.iter().copied().collect::<Vec<_>>(), expected);
        assert_eq!(ds.labels, Some(vec![4, 0, 2]));
        assert_eq!(ds.task, Task::Classification { classes: 5 });
        assert_eq!(ds.y.dim(), (3, 5));
        assert_eq!(ds.y[[0, 4]], 1.0);
    }
    let ds = data::load_idx(&plain.0, &plain.1, Some(10)).unwrap();
    assert_eq!(ds.y.dim(), (3, 10));
    assert_eq!(classes(&ds), 10);
}

#[test]
fn idx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = [7u8; 2 * 2 * 2];
    let good_img = write(dir.path(), "good-images", idx_images(2, 2, 2, &pixels));
    let good_lab = write(dir.path(), "good-labels", idx_labels(&[1, 3]));
    let err = |images: &Path, labels: &Path, classes: Option<usize>| {
        data::load_idx(images, labels, classes).unwrap_err().to_string()
    };

    let short = write(dir.path(), "short-images", &idx_images(2, 2, 2, &pixels)[..20]);
    assert_contains(&err(&short, &good_lab, None), &["short-images", "truncated", "expected 24 bytes", "found 20"]);
    let short_gz = write(dir.path(), "short-images.gz", gzip(&idx_images(2, 2, 2, &pixels)[..23]));
    assert_contains(
        &err(&short_gz, &good_lab, None),
        &["short-images.gz", "truncated", "expected 24 bytes", "found 23"],
    );
    let head = write(dir.path(), "head-images", &idx_images(2, 2, 2, &pixels)[..10]);
    assert_contains(&err(&head, &good_lab, None), &["head-images", "truncated", "16 bytes of header", "found 10"]);
    let long = write(dir.path(), "long-labels", [idx_labels(&[1, 3]), vec![0]].concat());
    assert_contains(&err(&good_img, &long, None), &["long-labels", "longer than the 10 bytes"]);

    // Swapped files: each has the other's magic.
    assert_contains(&err(&good_lab, &good_img, None), &["good-labels", "magic", "0x00000801", "0x00000803"]);
    assert_contains(&err(&good_img, &good_img, None), &["good-images", "magic", "0x00000803", "expected 0x00000801"]);
    let empty = write(dir.path(), "empty-images", b"");
    assert_contains(&err(&empty, &good_lab, None), &["empty-images", "empty"]);
    let bad_gz = write(dir.path(), "bad.gz", [0x1f, 0x8b, 1, 2, 3, 4, 5]);
    assert_contains(&err(&bad_gz, &good_lab, None), &["bad.gz", "gzip"]);

    let three = write(dir.path(), "three-labels", idx_labels(&[1, 3, 0]));
    assert_contains(&err(&good_img, &three, None), &["three-labels", "3 labels", "good-images", "2 images"]);
    assert_contains(&err(&good_img, &good_lab, Some(3)), &["good-labels", "label 3", "out of range for 3 classes"]);
    let zero = write(dir.path(), "zero-images", idx_images(0, 2, 2, &[]));
    assert_contains(&err(&zero, &good_lab, None), &["zero-images", "no images"]);
    let huge = write(dir.path(), "huge-images", idx_images(u32::MAX, u32::MAX, u32::MAX, &pixels));
    let _ = data::load_idx(&huge, &good_lab, None).unwrap_err();
    let missing = dir.path().join("missing-images");
    assert_contains(&err(&missing, &good_lab, None), &["missing-images"]);
}

#[test]
fn synthetic_sets_are_deterministic_per_seed() {
    let x = data::xor();
    assert_eq!(x.name, "xor");
    assert_eq!(x.x, array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]);
    assert_eq!(x.y, array![[0.0], [1.0], [1.0], [0.0]]);
    assert_eq!(x.task, Task::Regression { targets: 1 });

    let a = data::spirals(101, 7).unwrap();
    assert_eq!(a.name, "spirals");
    assert_eq!((a.x.dim(), a.y.dim()), ((101, 2), (101, 2)));
    assert_eq!(a.task, Task::Classification { classes: 2 });
    assert!(a.x.iter().all(|v| v.abs() <= 1.1));
    let labels = a.labels.as_ref().unwrap();
    assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 51);
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 50);
    assert!(a.y.axis_iter(Axis(0)).zip(labels).all(|(r, &l)| r[l] == 1.0 && r.sum() == 1.0));
    assert_eq!(a.x, data::spirals(101, 7).unwrap().x);
    assert_ne!(a.x, data::spirals(101, 8).unwrap().x);
    assert!(data::spirals(2, 0).is_ok());
    assert!(matches!(data::spirals(1, 0), Err(Error::Invalid(_))));

    let s = data::sine(50, 3).unwrap();
    assert_eq!(s.name, "sine");
    assert_eq!((s.x.dim(), s.y.dim()), ((50, 1), (50, 1)));
    assert_eq!(s.task, Task::Regression { targets: 1 });
    let pi = std::f32::consts::PI;
    assert!(s.x.iter().all(|v| (-pi..=pi).contains(v)));
    assert!(s.x.iter().zip(&s.y).all(|(x, y)| (x.sin() - y).abs() < 1e-6));
    assert_eq!(s.x, data::sine(50, 3).unwrap().x);
    assert_ne!(s.x, data::sine(50, 4).unwrap().x);
    assert!(data::sine(1, 0).is_ok());
    assert!(matches!(data::sine(0, 0), Err(Error::Invalid(_))));
}

#[test]
fn normalization_names_parse() {
    for n in [Normalization::None, Normalization::Standard, Normalization::MinMax] {
        assert_eq!(n.name().parse::<Normalization>().unwrap(), n);
    }
    let err = "zscore".parse::<Normalization>().unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert_contains(&err.to_string(), &["zscore", "none", "standard", "minmax"]);
}

#[test]
fn normalizer_fit_and_apply() {
    // Column 1 is constant.
    let x: Array2<f32> = array![[1.0, 5.0, -2.0], [2.0, 5.0, 0.0], [3.0, 5.0, 10.0], [6.0, 5.0, 4.0]];
    let std = Normalizer::fit(Normalization::Standard, &x);
    assert_eq!(std.offset.len(), 3);
    assert_eq!(std.scale[1], 1.0);
    let mut z = x.clone();
    std.apply(&mut z).unwrap();
    assert!(z.iter().all(|v| v.is_finite()));
    for c in [0, 2] {
        let col = z.column(c);
        let mean = col.mean().unwrap();
        let sd = col.mapv(|v| (v - mean).powi(2)).mean().unwrap().sqrt();
        assert!(mean.abs() < 1e-6, "column {c} mean {mean}");
        assert!((sd - 1.0).abs() < 1e-5, "column {c} std {sd}");
    }
    assert!(z.column(1).iter().all(|&v| v == 0.0));

    let mm = Normalizer::fit(Normalization::MinMax, &x);
    let mut m = x.clone();
    mm.apply(&mut m).unwrap();
    assert_eq!(m.column(0).to_vec(), vec![0.0, 0.2, 0.4, 1.0]);
    assert_eq!(m.column(2).to_vec(), vec![0.0, 2.0 / 12.0, 1.0, 0.5]);
    assert!(m.column(1).iter().all(|&v| v == 0.0));

    let none = Normalizer::fit(Normalization::None, &x);
    assert_eq!((none.offset.clone(), none.scale.clone()), (vec![0.0; 3], vec![1.0; 3]));
    let mut same = x.clone();
    none.apply(&mut same).unwrap();
    assert_eq!(same, x);

    // No rows, and a tiny spread: still finite.
    let empty = Normalizer::fit(Normalization::Standard, &Array2::zeros((0, 2)));
    assert_eq!(empty.scale, vec![1.0, 1.0]);
    let tiny = Normalizer::fit(Normalization::MinMax, &array![[0.0f32], [1e-45]]);
    assert!(tiny.scale.iter().chain(&tiny.offset).all(|v| v.is_finite()));

    let mut wide = Array2::<f32>::zeros((2, 4));
    let err = std.apply(&mut wide).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)));
    assert_contains(&err.to_string(), &["3", "4"]);
}

#[test]
fn normalizer_json_round_trip_and_validation() {
    let x: Array2<f32> = array![[1.0, 0.1], [2.0, 0.7], [4.0, 0.3]];
    for kind in [Normalization::None, Normalization::Standard, Normalization::MinMax] {
        let n = Normalizer::fit(kind, &x);
        let v = n.to_json();
        assert_eq!(v["kind"], kind.name());
        let text = serde_json::to_string(&v).unwrap();
        let back = Normalizer::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, n);
    }
    let bad = [
        serde_json::json!({"kind": "zscore", "offset": [0.0], "scale": [1.0]}),
        serde_json::json!({"offset": [0.0], "scale": [1.0]}),
        serde_json::json!({"kind": "standard", "offset": [0.0, 1.0], "scale": [1.0]}),
        serde_json::json!({"kind": "standard", "offset": [0.0], "scale": ["x"]}),
        serde_json::json!({"kind": "standard", "offset": [1e300], "scale": [1.0]}),
        serde_json::json!({"kind": "standard", "offset": [0.0]}),
        serde_json::json!([1, 2]),
    ];
    for v in &bad {
        assert!(matches!(Normalizer::from_json(v), Err(Error::Invalid(_))), "{v} was accepted");
    }
    let msg = Normalizer::from_json(&bad[2]).unwrap_err().to_string();
    assert_contains(&msg, &["2", "1", "offset", "scale"]);
}

#[test]
fn split_sizes_determinism_and_coverage() {
    let ds = data::spirals(100, 1).unwrap();
    let (train, test) = data::split(&ds, 0.25, 9).unwrap();
    let test = test.unwrap();
    assert_eq!((train.len(), test.len()), (75, 25));
    assert_eq!((train.name.as_str(), train.task), ("spirals", ds.task));

    // Each row of the split is some original row; recover indices by matching features.
    let index_of = |row: ndarray::ArrayView1<f32>| ds.x.axis_iter(Axis(0)).position(|r| r == row).unwrap();
    let train_idx: Vec<usize> = train.x.axis_iter(Axis(0)).map(index_of).collect();
    let test_idx: Vec<usize> = test.x.axis_iter(Axis(0)).map(index_of).collect();
    let mut all: Vec<usize> = train_idx.iter().chain(&test_idx).copied().collect();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>(), "train and test must be disjoint and cover every row");
    for (k, &i) in train_idx.iter().enumerate() {
        assert_eq!(train.y.row(k), ds.y.row(i));
        assert_eq!(train.labels.as_ref().unwrap()[k], ds.labels.as_ref().unwrap()[i]);
    }

    let (train2, test2) = data::split(&ds, 0.25, 9).unwrap();
    assert_eq!((train2.x, test2.unwrap().x), (train.x.clone(), test.x.clone()));
    let (train3, _) = data::split(&ds, 0.25, 10).unwrap();
    assert_ne!(train3.x, train.x);

    let (all_train, none) = data::split(&ds, 0.0, 9).unwrap();
    assert!(none.is_none());
    assert_eq!(all_train.len(), 100);
    let (_, none) = data::split(&ds, 0.004, 9).unwrap(); // rounds to 0 test rows
    assert!(none.is_none());
    let (t, v) = data::split(&ds, 0.994, 9).unwrap(); // rounds to 99 test rows
    assert_eq!((t.len(), v.unwrap().len()), (1, 99));

    for bad in [1.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(data::split(&ds, bad, 0), Err(Error::Invalid(_))), "{bad} accepted");
    }
    let tiny = data::xor().select(&[2]);
    assert_eq!(tiny.x, array![[1.0, 0.0]]);
    assert!(data::split(&tiny, 0.6, 0).is_err()); // the only row would go to the test set
    assert!(data::split(&data::xor(), 0.9, 0).is_err());
}
