//! `--init`: bare layer tensors as PyTorch writes them, in f32 or f64, with or without metadata; every tensor
//! of the wrong shape, dtype or value, missing or extra, is an error that names the file and the tensor.

use std::collections::HashMap;
use std::path::Path;

use backprop::MlpSpec;
use backprop::checkpoint;
use safetensors::Dtype;

use super::common::bits;
use super::common::pytorch::{Raw, torch_layers, write_raw};
use super::{ce_model, no_panic};

#[test]
fn load_init_reads_pytorch_style_f32_and_f64_files_without_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;

    // F32, no metadata at all.
    let p32 = dir.path().join("torch32.safetensors");
    write_raw(&p32, &torch_layers(&model.params, Raw::f32), None);
    let got = checkpoint::load_init(&p32, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&model.params.to_flat()), "F32 init is bit-exact");
    got.check(spec).unwrap();

    // F32 with PyTorch's {"format": "pt"} metadata and an unrelated extra tensor: still fine for --init.
    let ppt = dir.path().join("torch_pt.safetensors");
    let mut tensors = torch_layers(&model.params, Raw::f32);
    tensors.push(Raw::f32("head.scale", &[1], &[2.0]));
    write_raw(&ppt, &tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())])));
    let got = checkpoint::load_init(&ppt, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&model.params.to_flat()));

    // F64: values exactly representable in f32 come back exact; others round to the nearest f32.
    let mut p64 = model.params.to_f64();
    p64.weights[0][[1, 2]] = 0.1; // not an f32
    p64.biases[1][0] = -1.0 / 3.0;
    let f64_path = dir.path().join("torch64.safetensors");
    write_raw(&f64_path, &torch_layers(&p64, Raw::f64), None);
    let got = checkpoint::load_init(&f64_path, spec).unwrap();
    assert_eq!(bits(&got.to_flat()), bits(&p64.to_f32().to_flat()), "F64 init rounds to f32");
    assert_eq!(got.weights[0][[1, 2]], 0.1f32);
    assert_eq!(got.biases[1][0], -1.0f32 / 3.0);
}

/// `load_init` of the file must fail with a message naming the file and `tensor`.
fn assert_init_err(path: &Path, spec: &MlpSpec, tensor: &str, what: &str) {
    let r = no_panic(what, || checkpoint::load_init(path, spec));
    let e = match r {
        Ok(_) => panic!("{what}: load_init succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(&path.display().to_string()), "{what}: the error does not name the file: {e}");
    assert!(e.contains(tensor), "{what}: the error does not name the tensor {tensor}: {e}");
}

/// Writes `tensors` to `<name>.safetensors` in `dir`; `load_init` of it must fail naming the file and `tensor`.
fn refused(dir: &Path, spec: &MlpSpec, name: &str, tensors: &[Raw], tensor: &str, what: &str) {
    let path = dir.join(format!("{name}.safetensors"));
    write_raw(&path, tensors, None);
    assert_init_err(&path, spec, tensor, what);
}

#[test]
fn load_init_rejects_wrong_shapes_and_missing_tensors_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    let good = || torch_layers(&model.params, Raw::f32);
    let p = &model.params;

    // Weight stored as (I, O), i.e. W itself instead of Wᵀ.
    let mut t = good();
    t[0] = Raw::f32("layers.0.weight", &[5, 7], &p.weights[0].iter().copied().collect::<Vec<_>>());
    refused(dir.path(), spec, "transposed", &t, "layers.0.weight", "(I, O) weight");

    // Flattened weight (same element count, wrong rank).
    let mut t = good();
    t[2] = Raw::f32("layers.1.weight", &[21], &p.weights[1].t().iter().copied().collect::<Vec<_>>());
    refused(dir.path(), spec, "flat_weight", &t, "layers.1.weight", "rank-1 weight");

    // Bias of the wrong length, and a bias of shape (1, O).
    let mut t = good();
    t[1] = Raw::f32("layers.0.bias", &[6], &[0.0; 6]);
    refused(dir.path(), spec, "bias_len", &t, "layers.0.bias", "short bias");
    let mut t = good();
    t[3] = Raw::f32("layers.1.bias", &[1, 3], &[0.0; 3]);
    refused(dir.path(), spec, "bias_2d", &t, "layers.1.bias", "(1, O) bias");

    // A missing tensor.
    let mut t = good();
    t.remove(3);
    refused(dir.path(), spec, "missing", &t, "layers.1.bias", "missing bias");
    let mut t = good();
    t.remove(0);
    refused(dir.path(), spec, "missing_weight", &t, "layers.0.weight", "missing weight");
}

#[test]
fn load_init_rejects_non_finite_values_in_f32_and_f64_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    let p = &model.params;

    for (name, bad) in [("nan", f32::NAN), ("inf", f32::INFINITY), ("neg_inf", f32::NEG_INFINITY)] {
        let mut t = torch_layers(p, Raw::f32);
        let mut w: Vec<f32> = p.weights[1].t().iter().copied().collect();
        w[20] = bad;
        t[2] = Raw::f32("layers.1.weight", &[3, 7], &w);
        refused(dir.path(), spec, name, &t, "layers.1.weight", &format!("{name} in F32"));
    }
    let mut t = torch_layers(&p.to_f64(), Raw::f64);
    t[1] = Raw::f64("layers.0.bias", &[7], &[0.0, 0.0, 0.0, f64::NAN, 0.0, 0.0, 0.0]);
    refused(dir.path(), spec, "f64_nan", &t, "layers.0.bias", "NaN in F64");
    let mut t = torch_layers(&p.to_f64(), Raw::f64);
    t[3] = Raw::f64("layers.1.bias", &[3], &[0.0, 1e300, 0.0]); // finite in f64, infinite in f32
    refused(dir.path(), spec, "f64_overflow", &t, "layers.1.bias", "F64 beyond the f32 range");
}

#[test]
fn load_init_rejects_other_dtypes_and_files_that_are_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    let file = |name: &str| dir.path().join(format!("{name}.safetensors"));

    // Non-float dtypes.
    for (dtype, width) in [(Dtype::I32, 4usize), (Dtype::I64, 8), (Dtype::U8, 1), (Dtype::F16, 2), (Dtype::BF16, 2)] {
        let mut t = torch_layers(&model.params, Raw::f32);
        t[0] = Raw { name: "layers.0.weight".into(), dtype, shape: vec![7, 5], bytes: vec![0u8; 35 * width] };
        let name = format!("dtype_{dtype:?}");
        refused(dir.path(), spec, &name, &t, "layers.0.weight", &format!("{dtype:?} weight"));
    }

    // A file that is not a safetensors file at all, and one that does not exist.
    let path = file("garbage");
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let e = no_panic("garbage", || checkpoint::load_init(&path, spec)).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    let path = file("does_not_exist");
    let e = checkpoint::load_init(&path, spec).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn load_init_rejects_an_extra_layer_naming_the_extra_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = ce_model();
    let spec = &model.spec;
    // A whole extra layer (a deeper PyTorch network than --layers describes).
    let path = dir.path().join("extra.safetensors");
    let mut t = torch_layers(&model.params, Raw::f32);
    t.push(Raw::f32("layers.2.weight", &[3, 3], &[0.0; 9]));
    t.push(Raw::f32("layers.2.bias", &[3], &[0.0; 3]));
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.2", "extra layer");
    // Only the bias of an extra layer.
    let path = dir.path().join("extra_bias.safetensors");
    let mut t = torch_layers(&model.params, Raw::f32);
    t.push(Raw::f32("layers.2.bias", &[3], &[0.0; 3]));
    write_raw(&path, &t, None);
    assert_init_err(&path, spec, "layers.2.bias", "an extra layer's bias alone");
}
