//! The CSV reader: headers, line ends, quotes, blank lines, and every error with its line and column.

use backprop::Error;
use backprop::data::{self, TargetSpec, Task};
use ndarray::array;

use crate::{assert_contains, classes, csv_error, write};

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

#[test]
fn csv_cr_only_line_ends_read_like_lf() {
    let dir = tempfile::tempdir().unwrap();
    let lf =
        data::load_csv(&write(dir.path(), "lf.csv", "a,b,label\n1,2,0\n3.5,-4,2\n5,6e1,1\n\n"), TargetSpec::default());
    let lf = lf.unwrap();
    for (name, text) in [
        ("cr.csv", "a,b,label\r1,2,0\r3.5,-4,2\r5,6e1,1\r\r"),
        ("mixed.csv", "a,b,label\r\n1,2,0\r3.5,-4,2\n5,6e1,1"),
        ("crlf-split.csv", "a,b,label\r\r\n"), // a header, then a blank line: no data rows
    ] {
        let path = write(dir.path(), name, text);
        match data::load_csv(&path, TargetSpec::default()) {
            Ok(ds) => {
                assert_eq!(
                    (ds.x.clone(), ds.y.clone(), ds.labels.clone()),
                    (lf.x.clone(), lf.y.clone(), lf.labels.clone())
                );
            }
            Err(e) => assert_contains(&e.to_string(), &["crlf-split.csv", "line 1 is a header", "no data rows"]),
        }
    }
    // Errors count CR-only lines.
    assert_contains(
        &csv_error("1,2,0\r3,4,1\r5,x,0\r", "cr-bad.csv", TargetSpec::default()),
        &["line 3, column 2", "\"x\" is not a number"],
    );
    assert_contains(&csv_error("1,2,0\r\r3,4,1\r", "cr-gap.csv", TargetSpec::default()), &["line 2 is blank"]);
}

#[test]
fn csv_quotes_blank_lines_and_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "quoted.csv", "\"a\",\"b, c\",\"label\"\n\"1\",\" 2 \",0\n3,4,\"1\"\n \n\t\n\n");
    let ds = data::load_csv(&path, TargetSpec::default()).unwrap();
    assert_eq!(ds.x, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(ds.labels, Some(vec![0, 1]));
    let spec = TargetSpec::default();
    // A quoted comma is part of the cell, not a column break.
    assert_contains(
        &csv_error("1,2,0\n\"3,5\",4,1\n", "comma.csv", spec),
        &["line 2, column 1", "\"3,5\" is not a number"],
    );
    // A quoted line break belongs to its row; later lines keep their numbers.
    assert_contains(&csv_error("1,2,0\n3,\"4\n\",1\n5,x,0\n", "break.csv", spec), &["line 4, column 2"]);
    // A quote left open at the end holds the rest of the file, on the line where it opened.
    assert_contains(&csv_error("1,2,0\n3,4,\"x", "open.csv", spec), &["line 2, column 3", "\"x\" is not a number"]);
    // Blank lines before the data, or between rows (whitespace only counts as blank), are errors.
    assert_contains(&csv_error("\n1,2,0\n", "leading.csv", spec), &["line 1 is blank"]);
    assert_contains(&csv_error("1,2,0\n \n3,4,1\n", "spaces.csv", spec), &["line 2 is blank"]);
    assert_contains(&csv_error("1,2,0\n\n\n3,4,1\n", "two.csv", spec), &["line 2 is blank"]);
    // gzip-compressed CSV reads like the plain file.
    let gz = write(dir.path(), "quoted.csv.gz", crate::gzip(&std::fs::read(&path).unwrap()));
    let unzipped = data::load_csv(&gz, spec).unwrap();
    assert_eq!((unzipped.x, unzipped.labels), (ds.x, ds.labels));
}

#[test]
fn eval_refuses_a_file_of_features_only_and_predict_drops_extra_columns() {
    let dir = tempfile::tempdir().unwrap();
    let features = write(dir.path(), "features.csv", "f1,f2\n1,2\n3,4\n");
    let labelled = write(dir.path(), "labelled.csv", "f1,f2,label\n1,2,0\n3,4,1\n");
    let request = |purpose, targets| data::Request { purpose, targets, ..data::Request::new(1) };
    let eval = data::Purpose::Eval { input_width: 2 };
    let err = data::load(features.to_str().unwrap(), None, &request(eval, None)).unwrap_err();
    assert_contains(&err.to_string(), &["features.csv", "eval needs labels", "a class label column"]);
    let err = data::load(features.to_str().unwrap(), None, &request(eval, Some(1))).unwrap_err();
    assert_contains(&err.to_string(), &["eval needs labels", "1 target columns"]);
    let ds = data::load(labelled.to_str().unwrap(), None, &request(eval, None)).unwrap();
    assert_eq!((ds.labels, ds.task), (Some(vec![0, 1]), Task::Classification { classes: 2 }));

    let predict = data::Purpose::Predict { input_width: 2 };
    for path in [&features, &labelled] {
        let ds = data::load(path.to_str().unwrap(), None, &request(predict, None)).unwrap();
        assert_eq!((ds.x, ds.y.dim()), (array![[1.0, 2.0], [3.0, 4.0]], (2, 0)));
    }
    let wide = data::Purpose::Predict { input_width: 3 };
    let err = data::load(features.to_str().unwrap(), None, &request(wide, None)).unwrap_err();
    assert_contains(&err.to_string(), &["has 2 columns", "input width is 3"]);
}
