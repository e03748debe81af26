//! Safetensors files written as other programs write them, with the `safetensors` crate itself: raw tensors of
//! any dtype and shape, and bare layer weights as PyTorch's `save_file(model.state_dict())` writes them for
//! `nn.Linear` layers (what `--init` reads).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use backprop::Params;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A raw tensor to write with the safetensors crate.
pub struct Raw {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Raw {
    pub fn f32(name: &str, shape: &[usize], v: &[f32]) -> Raw {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Raw { name: name.into(), dtype: Dtype::F32, shape: shape.to_vec(), bytes }
    }
    pub fn f64(name: &str, shape: &[usize], v: &[f64]) -> Raw {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Raw { name: name.into(), dtype: Dtype::F64, shape: shape.to_vec(), bytes }
    }
}

/// Writes `tensors`, with `meta` as the file's metadata when given.
pub fn write_raw(path: &Path, tensors: &[Raw], meta: Option<HashMap<String, String>>) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, meta).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The tensors PyTorch writes for `nn.Linear` layers, each made by `raw` (`Raw::f32` or `Raw::f64`):
/// `layers.{l}.weight` of shape (O, I) = Wᵀ and `layers.{l}.bias` of shape (O).
pub fn torch_layers<T: Copy>(p: &Params<T>, raw: fn(&str, &[usize], &[T]) -> Raw) -> Vec<Raw> {
    let mut out = Vec::new();
    for (l, (w, b)) in p.weights.iter().zip(&p.biases).enumerate() {
        let (i, o) = w.dim();
        let wt: Vec<T> = w.t().iter().copied().collect(); // (O, I) row-major
        out.push(raw(&format!("layers.{l}.weight"), &[o, i], &wt));
        out.push(raw(&format!("layers.{l}.bias"), &[o], &b.to_vec()));
    }
    out
}

/// Writes `params` as a PyTorch user would: the `nn.Linear` tensors in f32, no metadata at all.
pub fn write_init(path: &Path, params: &Params<f32>) {
    write_raw(path, &torch_layers(params, Raw::f32), None);
}
