//! The metadata read strictly: a missing format points to `--init`, every other problem is an error that
//! names the file, absurd widths allocate nothing, and impossible counts and tasks are named.

use std::collections::HashMap;
use std::path::Path;

use backprop::checkpoint;
use serde_json::{Value, json};

use super::common::bits;
use super::common::pytorch::{Raw, torch_layers, write_raw};
use super::{assert_load_err, ce_model};

/// A file with the documented metadata, where the metadata is chosen by the test.
fn write_with_meta(path: &Path, tensors: &[Raw], edit: impl FnOnce(&mut HashMap<String, String>)) {
    let mut meta: HashMap<String, String> = [
        ("format", "backprop-mlp"),
        ("format_version", "1"),
        ("sizes", "[5,7,3]"),
        ("activations", "[\"tanh\",\"identity\"]"),
        ("output", "softmax"),
        ("loss", "cross-entropy"),
        ("normalization", "null"),
        ("task", "null"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    edit(&mut meta);
    write_raw(path, tensors, Some(meta));
}

#[test]
fn metadata_problems_are_errors_and_a_missing_format_points_to_init() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let layers = torch_layers(&model.params, Raw::f32);
    let path = dir.path().join("meta.safetensors");

    // The hand-written metadata is accepted as is (the baseline for the edits below).
    write_with_meta(&path, &layers, |_| {});
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(bits(&ck.model.params.to_flat()), bits(&model.params.to_flat()));
    assert_eq!(ck.model.spec, model.spec);

    // No metadata at all, or metadata without "format": the message names the file and --init.
    write_raw(&path, &layers, None);
    let e = assert_load_err(&path, "no metadata");
    assert!(e.contains("--init"), "a bare weights file should point to --init: {e}");
    write_with_meta(&path, &layers, |m| {
        m.remove("format");
    });
    let e = assert_load_err(&path, "no format key");
    assert!(e.contains("--init"), "a file without format should point to --init: {e}");

    type Edit = Box<dyn FnOnce(&mut HashMap<String, String>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("other format", Box::new(|m| drop(m.insert("format".into(), "gguf".into())))),
        ("version 2", Box::new(|m| drop(m.insert("format_version".into(), "2".into())))),
        ("no version", Box::new(|m| drop(m.remove("format_version")))),
        ("sizes not JSON", Box::new(|m| drop(m.insert("sizes".into(), "[5,7,".into())))),
        ("sizes disagree with tensors", Box::new(|m| drop(m.insert("sizes".into(), "[5,8,3]".into())))),
        ("a zero width", Box::new(|m| drop(m.insert("sizes".into(), "[5,0,3]".into())))),
        ("negative width", Box::new(|m| drop(m.insert("sizes".into(), "[5,-7,3]".into())))),
        ("one width", Box::new(|m| drop(m.insert("sizes".into(), "[5]".into())))),
        ("unknown activation", Box::new(|m| drop(m.insert("activations".into(), "[\"gelu\",\"identity\"]".into())))),
        ("too few activations", Box::new(|m| drop(m.insert("activations".into(), "[\"tanh\"]".into())))),
        ("unknown loss", Box::new(|m| drop(m.insert("loss".into(), "hinge".into())))),
        ("no loss", Box::new(|m| drop(m.remove("loss")))),
        ("no normalization", Box::new(|m| drop(m.remove("normalization")))),
        (
            "normalisation of the wrong width",
            Box::new(|m| {
                drop(m.insert("normalization".into(), "{\"kind\":\"standard\",\"offset\":[0],\"scale\":[1]}".into()))
            }),
        ),
        ("no task", Box::new(|m| drop(m.remove("task")))),
        ("training not JSON", Box::new(|m| drop(m.insert("training".into(), "{".into())))),
        (
            "training without optimizer tensors",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "adam", "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999,
                    "eps": 1e-8}, "step": 1, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
        (
            "training without a step",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "sgd", "weight_decay": 0.0}, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
        (
            "training with an invalid optimizer",
            Box::new(|m| {
                let t = json!({"optimizer": {"name": "sgd", "weight_decay": -1.0}, "step": 1, "epoch": 1, "seed": 1});
                drop(m.insert("training".into(), t.to_string()))
            }),
        ),
    ];
    for (what, edit) in cases {
        write_with_meta(&path, &layers, edit);
        assert_load_err(&path, what);
    }
}

#[test]
fn metadata_with_absurd_widths_is_an_error_not_a_panic() {
    // One corrupted width must not make the loader allocate (or overflow on) a huge parameter set before it
    // compares the tensors' shapes.
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let layers = torch_layers(&model.params, Raw::f32);
    let path = dir.path().join("absurd.safetensors");
    let huge = 1u64 << 32;
    // (Only sizes whose very first layer overflows: a merely huge first layer could make the allocator abort
    // the whole test binary.)
    for sizes in [format!("[{huge},{huge}]"), format!("[{},{huge},3]", huge * 2)] {
        let n = sizes.matches(',').count();
        let acts = json!(vec!["identity"; n]).to_string();
        write_with_meta(&path, &layers, |m| {
            m.insert("sizes".into(), sizes.clone());
            m.insert("activations".into(), acts);
            m.insert("output".into(), "identity".into());
            m.insert("loss".into(), "mse".into());
        });
        assert_load_err(&path, &format!("sizes {sizes}"));
    }
}

#[test]
fn impossible_counts_and_tasks_in_the_metadata_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.safetensors");
    let layers = torch_layers(&ce_model().params, Raw::f32);
    let training = |step: Value, epoch: Value, seed: Value| json!({"optimizer": {"name": "sgd", "weight_decay": 0.0}, "step": step, "epoch": epoch, "seed": seed});
    let cases = [
        (
            "training",
            training(json!(5), json!(-1), json!(1)),
            vec!["metadata 'training': 'epoch' is -1", "whole number"],
        ),
        ("training", training(json!(1.5), json!(1), json!(1)), vec!["'step' is 1.5"]),
        ("training", training(json!(5), json!(1), json!("7")), vec!["'seed' is \"7\""]),
        ("training", training(json!(5), json!(1e20), json!(1)), vec!["'epoch' is 1e+20"]),
        ("task", json!({"kind": "classification", "targets": 3}), vec!["metadata 'task'", "\"classes\""]),
        ("task", json!({"kind": "clusters", "classes": 3}), vec!["metadata 'task'", "not a task"]),
        ("task", json!("3"), vec!["metadata 'task' \"3\" is not a task"]),
    ];
    for (key, value, needles) in cases {
        write_with_meta(&path, &layers, |m| drop(m.insert(key.into(), value.to_string())));
        let e = assert_load_err(&path, &format!("{key} {value}"));
        for n in needles {
            assert!(e.contains(n), "{key} {value}: {e:?} does not say {n:?}");
        }
    }
    // The largest counts are possible, and load.
    write_with_meta(&path, &layers, |m| {
        drop(m.insert("training".into(), training(json!(u64::MAX), json!(u64::MAX), json!(u64::MAX)).to_string()))
    });
    assert_eq!(checkpoint::load(&path).unwrap().training.unwrap().state.step, u64::MAX);
}
