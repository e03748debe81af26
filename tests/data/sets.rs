//! The bundled digits, the synthetic sets, normalisation and splits.

use std::io::Read;

use backprop::Error;
use backprop::data::{self, Normalization, Normalizer, Task};
use ndarray::{Array2, Axis, array};

use crate::assert_contains;

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
