//! The commands beside training: `worked-example` on the GPU and the CPU (as a table and as JSON), `devices`
//! and its adapters' limits, the adapter filters and the message when there is no adapter, and `bench`
//! (its flags that do not apply, and what a forced fused step cannot take).

// The rows these tests expect are the library's list; the README's table of `backprop worked-example`,
// which readme.rs compares with a real run, spells them out independently, so a wrong list fails there.
use backprop::worked_example::QUANTITIES;

use backprop::gpu::{AdapterRequest, list_adapters};

use super::common::battery::{error_lines, failure_problems};
use super::common::cli::{backprop, cmd, digits_model, stderr, stdout};

#[test]
fn worked_example_table_on_the_gpu() {
    let o = backprop(&["worked-example", "--backend", "gpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("GPU: "), "{out}");
    assert!(!out.contains("GPU: none"), "{out}");
    for name in QUANTITIES {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{out}"));
        // Every row has a GPU value: no "-" in the gpu column means at least 4 numeric cells.
        assert!(line.matches('.').count() >= 2, "{line}");
    }
    let hidden = out.lines().find(|l| l.starts_with("hidden_input")).unwrap();
    assert!(
        hidden.contains("[0.31, 0.29]") && hidden.contains("0.41000000") && hidden.trim_end().ends_with("NO"),
        "{hidden}"
    );
}

#[test]
fn worked_example_json_on_the_gpu() {
    let o = backprop(&["worked-example", "--backend", "gpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    let adapter = &v["adapter"];
    for k in ["name", "backend", "device_type"] {
        assert!(adapter[k].is_string(), "adapter.{k} missing: {v}");
    }
    let q = v["quantities"].as_array().unwrap();
    let names: Vec<&str> = q.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, QUANTITIES);
    for r in q {
        for k in ["name", "seed", "cpu_f64", "gpu_f32", "max_abs_diff", "seed_agrees"] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        let diff = r["max_abs_diff"].as_f64().expect("a GPU ran, so every difference is a number");
        assert!(diff < 1e-6, "{}: |gpu - cpu| = {diff}", r["name"]);
        assert_eq!(r["seed"].is_null(), r["seed_agrees"].is_null(), "{r}");
    }
    let find = |n: &str| q.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(find("hidden_input")["seed"], serde_json::json!([0.31, 0.29]));
    assert_eq!(find("hidden_input")["seed_agrees"], false);
    assert!((find("output_input")["cpu_f64"].as_f64().unwrap() - 1.0914213562).abs() < 1e-9);
    assert!(find("grad_w1")["seed"].is_null());
    assert_eq!(find("grad_w1")["cpu_f64"].as_array().unwrap().len(), 2, "grad_w1 is a 2x2 nested array");
    assert_eq!(find("w2_updated")["gpu_f32"].as_array().unwrap().len(), 2);
}

#[test]
fn worked_example_on_the_cpu_only() {
    let o = backprop(&["worked-example", "--backend", "cpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["adapter"].is_null());
    for r in v["quantities"].as_array().unwrap() {
        assert!(r["gpu_f32"].is_null() && r["max_abs_diff"].is_null(), "{r}");
        assert!(r["cpu_f64"].is_number() || r["cpu_f64"].is_array(), "{r}");
    }
    let text = backprop(&["worked-example", "--backend", "cpu"]);
    assert!(stdout(&text).starts_with("GPU: none"), "{}", stdout(&text));
}

#[test]
fn devices_lists_adapters_with_their_limits() {
    let o = backprop(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for k in [
        "backend:",
        "type:",
        "driver:",
        "max_storage_buffer_binding_size",
        "max_buffer_size",
        "min_storage_buffer_offset_alignment",
        "max_compute_workgroup_storage_size",
        "max_compute_invocations_per_workgroup",
    ] {
        assert!(out.contains(k), "devices output lacks {k}:\n{out}");
    }
    let j = backprop(&["devices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert!(!list.is_empty(), "no adapters listed");
    for a in list {
        assert!(
            a["name"].is_string()
                && a["backend"].is_string()
                && a["device_type"].is_string()
                && a["driver"].is_string()
        );
        assert!(a["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
        assert!(a["limits"]["max_compute_invocations_per_workgroup"].as_u64().unwrap() > 0);
    }
}

/// On a headless machine with no XDG_RUNTIME_DIR (CI runs as root without a login session), the Vulkan
/// loader would print "error: XDG_RUNTIME_DIR is invalid" lines on a successful run; the binary gives it
/// a private directory first.
#[test]
fn a_missing_runtime_dir_prints_no_spurious_errors() {
    for vars in [vec![], vec![("XDG_RUNTIME_DIR", "/nonexistent/backprop-test")]] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_backprop"));
        c.env_remove("XDG_RUNTIME_DIR").envs(vars.clone());
        let o = c.args(["devices"]).output().expect("the binary runs");
        assert!(o.status.success(), "{vars:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(!err.contains("XDG_RUNTIME_DIR") && !err.contains("error"), "{vars:?}: stderr:\n{err}");
        assert!(stdout(&o).contains("max_storage_buffer_binding_size"), "{vars:?}: {}", stdout(&o));
    }
}

#[test]
fn adapter_filters_and_bad_flags_fail_with_one_clear_line() {
    let o = backprop(&["worked-example", "--adapter", "no-such-adapter-xyz"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.starts_with("error: no GPU adapter found whose name contains 'no-such-adapter-xyz'"), "{err}");
    assert!(err.contains("the adapters found are"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let o = backprop(&["worked-example", "--backend", "quantum"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown backend 'quantum'"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

/// `--adapter` chooses a GPU adapter: with `--backend cpu` it is an error in every command, not ignored.
#[test]
fn an_adapter_with_the_cpu_backend_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (model, out) = (digits_model(1), dir.path().join("p.csv"));
    let (model, out) = (model.to_str().unwrap(), out.to_str().unwrap());
    let commands: [&[&str]; 6] = [
        &["train", "--epochs", "1"],
        &["--epochs", "1"],
        &["eval", "--model", model],
        &["predict", "--model", model, "--out", out],
        &["worked-example"],
        &["bench", "--configs", "seed", "--steps", "1"],
    ];
    for args in commands {
        let o = backprop(&[args, &["--backend", "cpu", "--adapter", "radeon"]].concat());
        let err = stderr(&o);
        assert!(!o.status.success() && stdout(&o).is_empty(), "{args:?} ran anyway: {}", stdout(&o));
        let want = "error: --adapter radeon chooses a GPU adapter and does not apply to --backend cpu\n";
        assert_eq!(err, want, "{args:?}");
    }
    assert!(!std::path::Path::new(out).exists());
}

/// `WGPU_ADAPTER_NAME` naming no adapter: `auto` falls back to the CPU saying so, with the adapters found (as
/// `--adapter` lists them); `--backend gpu` is the error `--adapter` gives, naming the variable.
#[test]
fn an_adapter_name_from_the_environment_that_matches_none_is_named() {
    let train = ["train", "--data", "xor", "--epochs", "1", "--json"];
    let o = cmd().args(train).env("WGPU_ADAPTER_NAME", "no-such-adapter-xyz").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stderr(&o).lines().next().unwrap_or_default().to_string();
    let want = "backend: cpu (no GPU adapter found whose name contains 'no-such-adapter-xyz' (WGPU_ADAPTER_NAME): \
                the adapters found are: ";
    assert!(line.starts_with(want) && line.len() > want.len() + 2, "{line}");
    let o = cmd().args(train).args(["--backend", "gpu"]).env("WGPU_ADAPTER_NAME", "no-such-adapter-xyz").output();
    let o = o.unwrap();
    let err = stderr(&o);
    assert!(!o.status.success() && err.starts_with("error: no GPU adapter found whose name contains"), "{err}");
    assert!(err.contains("'no-such-adapter-xyz' (WGPU_ADAPTER_NAME): the adapters found are: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Named by the environment, a software adapter is taken under `auto` too, as with `--adapter`.
    let name = list_adapters(&AdapterRequest::default()).unwrap()[0].name.clone();
    let o = cmd().args(train).env("WGPU_ADAPTER_NAME", &name).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(v["backend"].as_str().unwrap().contains(&name), "{v}");
}

#[test]
fn no_adapter_at_all_says_how_to_get_one() {
    // Point the Vulkan loader at no driver and allow only Vulkan: wgpu then finds nothing.
    let o = cmd()
        .args(["worked-example", "--backend", "vulkan"])
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // `auto` falls back to the CPU and says so.
    let o = cmd()
        .args(["worked-example", "--json"])
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("running on the CPU only"), "{}", stderr(&o));
}

#[test]
fn bench_prints_every_configuration_and_backend_as_json() {
    // The unfused GPU step (the fused one's launches: tests/gpu/fused_choice.rs).
    let mut unfused = cmd();
    unfused.env("BACKPROP_GPU_PATH", "unfused");
    let o = unfused
        .args(["bench", "--configs", "seed,small", "--steps", "3", "--warmup", "1", "--crossover-max", "2", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "seed and small on cpu and gpu: {v}");
    for r in results {
        for k in ["config", "backend", "adapter", "batch", "ms_per_step", "gflops"] {
            assert!(!r[k].is_null(), "{k} missing in {r}");
        }
        assert!(r["ms_per_step"].as_f64().unwrap() > 0.0);
        // Steps as train runs them: groups of resident-data steps, one read-back each.
        assert!(r["train_ms_per_step"].as_f64().unwrap() > 0.0, "{r}");
        assert!((1..=32).contains(&r["train_group"].as_u64().unwrap()), "{r}");
        if r["backend"] == "gpu" {
            assert!(r["kernel_ms"].as_f64().unwrap() > 0.0 && r["kernel_timer"].is_string(), "{r}");
            // seed: gather X and Y, 2 forward products, the MSE loss, δ_L (the loss gradient and f' fused),
            // then per layer the W and b updates with plain SGD fused in (2 + 2) and one δ_prev product, and
            // `optim_prepare`: 12. small has one more layer: 4 more. The separate SGD pass would add one.
            let want = if r["config"] == "seed" { 12 } else { 16 };
            assert_eq!(r["dispatches_per_step"].as_u64(), Some(want), "{r}");
            assert_eq!(r["gpu_path"], "unfused", "{r}");
        } else {
            assert!(r["dispatches_per_step"].is_null() && r["gpu_path"].is_null(), "{r}");
        }
    }
    let batches: Vec<u64> = results.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 1, 64, 64]);
    // Progress on stderr as it goes, one line per measurement.
    let progress: Vec<String> = stderr(&o).lines().filter(|l| l.starts_with("bench: ")).map(str::to_string).collect();
    for want in [
        "seed on the cpu, batch 1",
        "seed on the gpu, batch 1",
        "small on the cpu, batch 64",
        "crossover on mnist, batch 2",
    ] {
        assert!(progress.iter().any(|l| l.contains(want)), "no progress line '{want}' in {progress:?}");
    }
    let points = v["crossover"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "batches 1 and 2");
    let text = backprop(&["bench", "--configs", "seed", "--steps", "3", "--backend", "cpu"]);
    assert!(stdout(&text).contains("ms/step") && stdout(&text).contains("seed"), "{}", stdout(&text));
    assert!(stdout(&text).contains("train ms/step"), "{}", stdout(&text));
    let bad = backprop(&["bench", "--configs", "huge"]);
    assert!(!bad.status.success() && stderr(&bad).contains("unknown configuration 'huge'"));
}

/// A flag of `bench` that does not apply to the backends asked for (or to a search that does not run) and
/// a configuration named twice are refused with one line that names them, before anything is timed: each
/// would otherwise be ignored, or time the configuration twice. The flags still apply where they should.
#[test]
fn bench_refuses_flags_that_do_not_apply_and_configurations_named_twice() {
    let refused = |args: &[&str], needles: &[&str], code: i32| {
        let o = backprop(&[&["bench", "-q", "--steps", "1", "--warmup", "0"][..], args].concat());
        let problems = failure_problems(&o);
        assert!(problems.is_empty() && o.stdout.is_empty(), "{args:?}: {problems:?}\n{}", stderr(&o));
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let line = &error_lines(&o)[0];
        assert!(needles.iter().all(|n| line.contains(n)), "{args:?}: {line}");
    };
    // Each names seed alone: a flag that was not refused would time seed only, not all four.
    let flags: [(&[&str], &[&str]); 6] = [
        (&["--backend", "cpu", "--peak-gflops", "1"], &["--peak-gflops", "not --backend cpu", "--cpu-peak-gflops"]),
        (&["--backend", "gpu", "--cpu-peak-gflops", "1"], &["--cpu-peak-gflops", "not --backend gpu"]),
        (&["--backend", "cpu", "--crossover-max", "4"], &["--crossover-max", "both backends", "not --backend cpu"]),
        (&["--backend", "gpu", "--crossover-max", "4"], &["--crossover-max", "both backends", "not --backend gpu"]),
        (&["--no-crossover", "--crossover-max", "4"], &["--crossover-max", "--no-crossover skips"]),
        (&["--backend", "cpu", "--adapter", "llvmpipe"], &["--adapter llvmpipe", "does not apply to --backend cpu"]),
    ];
    for (args, needles) in flags {
        refused(&[&["--configs", "seed"][..], args].concat(), needles, 1);
    }
    refused(&["--configs", "seed,seed"], &["--configs", "'seed' is named twice"], 2);
    refused(&["--configs", "small, seed,small"], &["'small' is named twice"], 2);
    let cpu_peak = ["--backend", "cpu", "--configs", "seed", "--steps", "3", "--cpu-peak-gflops", "1", "--json"];
    let o = backprop(&[&["bench", "-q"][..], &cpu_peak].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(v["results"][0]["peak_fraction"].as_f64().unwrap() > 0.0, "{v}");
}

/// Under a forced fused step (`BACKPROP_GPU_PATH=fused`), a configuration or a crossover search the fused
/// step cannot take (mnist: 256 wide) becomes a note that names it and says why; the rest is timed and
/// printed, and bench succeeds: nothing failed, the forced step does not apply there.
#[test]
fn bench_notes_what_a_forced_fused_step_cannot_take_and_prints_the_rest() {
    let run = |args: &[&str]| cmd().env("BACKPROP_GPU_PATH", "fused").args(args).output().unwrap();
    let why = |note: &str| note.contains("BACKPROP_GPU_PATH=fused") && note.contains("784-256-256-10 network");
    let o =
        run(&["bench", "-q", "--configs", "seed", "--crossover-max", "2", "--steps", "3", "--warmup", "0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let rows: Vec<(&str, &str, Option<&str>)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["config"].as_str().unwrap(), r["backend"].as_str().unwrap(), r["gpu_path"].as_str()))
        .collect();
    assert_eq!(rows, [("seed", "cpu", None), ("seed", "gpu", Some("fused"))], "{v}");
    assert!(v["crossover"].is_null(), "{v}");
    let notes: Vec<&str> = v["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    assert!(notes.len() == 1 && notes[0].starts_with("crossover search on mnist skipped: ") && why(notes[0]), "{v}");
    assert!(notes[0].contains("256 wide"), "{v}");

    let o = run(&["bench", "-q", "--configs", "seed,mnist", "--backend", "gpu", "--steps", "3", "--warmup", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("seed ") && l.contains(" fused ")), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("mnist ")), "{out}");
    let note = out.lines().find(|l| l.starts_with("note: gpu skipped mnist: ")).unwrap_or_default();
    assert!(why(note) && note.contains("256 wide"), "{out}");
}
