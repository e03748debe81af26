//! Round trips: every field back bit for bit, the same bytes for the same checkpoint, a save that a load
//! accepts, and atomic writes that leave nothing behind.

use std::collections::BTreeSet;
use std::path::Path;

use backprop::checkpoint::{self, Checkpoint, Model};
use backprop::optim::OptimConfig;

use super::common::assert_same_checkpoint;
use super::{adam, ce_model, momentum, mse_model, save_load, training};

fn list(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn round_trip_is_bitwise_for_both_models_with_and_without_training_state() {
    let dir = tempfile::tempdir().unwrap();
    let ce = ce_model();
    let mse = mse_model();
    let cases = [
        ("ce-adam", Checkpoint { model: ce.clone(), training: Some(training(&ce, adam())) }),
        ("ce-momentum", Checkpoint { model: ce.clone(), training: Some(training(&ce, momentum())) }),
        ("ce-sgd", Checkpoint { model: ce.clone(), training: Some(training(&ce, OptimConfig::sgd())) }),
        ("ce-bare", Checkpoint { model: ce.clone(), training: None }),
        ("mse-adam", Checkpoint { model: mse.clone(), training: Some(training(&mse, adam())) }),
        ("mse-bare", Checkpoint { model: mse.clone(), training: None }),
        (
            "mse-no-normalizer-no-task",
            Checkpoint { model: Model { normalizer: None, task: None, ..mse.clone() }, training: None },
        ),
    ];
    for (name, ck) in &cases {
        let file = format!("{name}.safetensors");
        let loaded = save_load(dir.path(), &file, ck);
        assert_same_checkpoint(&loaded, ck, name);
        // The loaded checkpoint saves and loads to the same values again.
        let again = save_load(dir.path(), &format!("{name}-again.safetensors"), &loaded);
        assert_same_checkpoint(&again, ck, &format!("{name} saved twice"));
    }
    // The Adam case really has non-zero moments, step 17, epoch 3, seed 9.
    let t = cases[0].1.training.as_ref().unwrap();
    assert!(t.state.m.iter().any(|&v| v != 0.0) && t.state.v.iter().all(|&v| v > 0.0));
    assert_eq!((t.state.step, t.epoch, t.seed), (17, 3, 9));
}

#[test]
fn extreme_seed_step_and_epoch_survive_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let m = mse_model();
    let mut t = training(&m, adam());
    t.seed = u64::MAX;
    t.state.step = (1 << 53) + 1; // not representable as an f64
    t.epoch = 1_000_000_007;
    let ck = Checkpoint { model: m, training: Some(t) };
    let loaded = save_load(dir.path(), "extreme.safetensors", &ck);
    assert_same_checkpoint(&loaded, &ck, "extreme seed/step/epoch");
}

#[test]
fn saving_the_same_checkpoint_twice_writes_the_same_bytes() {
    // Checkpoints of the same run should be byte-for-byte reproducible (checksums, caches, diffs).
    let m = ce_model();
    let ck = Checkpoint { model: m.clone(), training: Some(training(&m, adam())) };
    let first = checkpoint::to_bytes(&ck).unwrap();
    for i in 0..8 {
        let again = checkpoint::to_bytes(&ck).unwrap();
        assert_eq!(first.len(), again.len());
        if again != first {
            let header = |b: &[u8]| {
                let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                String::from_utf8_lossy(&b[8..8 + n.min(160)]).into_owned()
            };
            panic!(
                "to_bytes #{i} of the same checkpoint differs from the first:\n first: {}...\n again: {}...",
                header(&first),
                header(&again)
            );
        }
    }
}

#[test]
fn a_checkpoint_that_saves_also_loads() {
    // `load` rejects non-finite values; `save` must not write a file `load` will refuse (a diverged run would
    // otherwise replace the last good checkpoint with one that cannot be read). Either outcome is fine here:
    // save refuses (and leaves the previous file), or the file it writes loads.
    let dir = tempfile::tempdir().unwrap();
    let model = mse_model();
    let good = Checkpoint { model: model.clone(), training: Some(training(&model, adam())) };
    let path = dir.path().join("diverged.safetensors");
    let mut nan_params = good.clone();
    nan_params.model.params.weights[1][[2, 3]] = f32::NAN;
    let mut inf_bias = good.clone();
    inf_bias.model.params.biases[0][1] = f32::INFINITY;
    let mut inf_v = good.clone();
    inf_v.training.as_mut().unwrap().state.v[4] = f32::INFINITY; // g² overflowed; θ itself stays finite
    for (what, ck) in [("NaN weight", nan_params), ("infinite bias", inf_bias), ("infinite Adam v", inf_v)] {
        checkpoint::save(&path, &good).unwrap();
        let before = std::fs::read(&path).unwrap();
        match checkpoint::save(&path, &ck) {
            Err(_) => assert_eq!(std::fs::read(&path).unwrap(), before, "{what}: a refused save keeps the old file"),
            Ok(()) => {
                if let Err(e) = checkpoint::load(&path) {
                    panic!("{what}: save wrote a checkpoint that load rejects: {e}");
                }
            }
        }
    }
}

#[test]
fn saving_is_atomic_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let ck = Checkpoint { model: model.clone(), training: Some(training(&model, adam())) };
    let path = dir.path().join("model.safetensors");
    checkpoint::save(&path, &ck).unwrap();
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]), "after the first save");

    // Overwriting works and leaves only the file.
    let ck2 = Checkpoint { model: mse_model(), training: None };
    checkpoint::save(&path, &ck2).unwrap();
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]), "after overwriting");
    assert_same_checkpoint(&checkpoint::load(&path).unwrap(), &ck2, "overwritten");
    checkpoint::save(&path, &ck).unwrap();
    assert_same_checkpoint(&checkpoint::load(&path).unwrap(), &ck, "overwritten back");
    let original = std::fs::read(&path).unwrap();

    // A path whose directory is missing: an error naming the path, and nothing is created anywhere.
    let missing = dir.path().join("no_such_dir").join("model.safetensors");
    let e = checkpoint::save(&missing, &ck).unwrap_err().to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(!dir.path().join("no_such_dir").exists());
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string()]));
    assert_eq!(std::fs::read(&path).unwrap(), original, "the existing checkpoint is untouched");

    // A directory as the path: an error; the directory is still an (empty) directory.
    let sub = dir.path().join("sub.safetensors");
    std::fs::create_dir(&sub).unwrap();
    let e = checkpoint::save(&sub, &ck).unwrap_err().to_string();
    assert!(e.contains(&sub.display().to_string()), "{e}");
    assert!(sub.is_dir());
    assert!(list(&sub).is_empty());
    let e = checkpoint::save(dir.path(), &ck).unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string(), "sub.safetensors".to_string()]));

    // A checkpoint that cannot be written (state of the wrong length, params of the wrong shape) over an
    // existing file: an error, and the old file is untouched.
    let mut bad = ck.clone();
    bad.training.as_mut().unwrap().state.v.pop();
    assert!(checkpoint::save(&path, &bad).is_err());
    let mut bad = ck.clone();
    bad.model.params.biases[0] = ndarray::Array1::zeros(2);
    assert!(checkpoint::save(&path, &bad).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), original, "a failed save leaves the old checkpoint");
    assert_eq!(list(dir.path()), BTreeSet::from(["model.safetensors".to_string(), "sub.safetensors".to_string()]));

    // Saving a second file (another extension) beside the first leaves exactly the named files.
    let other = dir.path().join("other.ckpt");
    checkpoint::save(&other, &ck).unwrap();
    assert_eq!(
        list(dir.path()),
        BTreeSet::from(["model.safetensors".into(), "other.ckpt".into(), "sub.safetensors".into()])
    );
}
