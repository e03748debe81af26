//! Checkpoints as safetensors in PyTorch's `nn.Linear` layout, written atomically.
//!
//! Tensors: `layers.{l}.weight` (O, I) — that is Wᵀ — and `layers.{l}.bias` (O), f32, so a PyTorch model
//! with `self.layers = nn.ModuleList([nn.Linear(I, O), ...])` loads them with `load_state_dict(load_file(p),
//! strict=False)`. A checkpoint written during training also holds the optimizer's state as flat tensors
//! `optimizer.m` and `optimizer.v` (P) in the flat parameter order of `MlpSpec::param_layout`.
//!
//! Metadata (all strings): `format` = `backprop-mlp`, `format_version` = `1`, `sizes` (JSON list, input
//! first), `activations` (JSON list, one per layer), `output`, `loss`, `normalization` (JSON or `null`),
//! `task` (JSON or `null`), and for resumable checkpoints `training` (JSON: optimizer, step, epoch, seed).
//!
//! Writing is here; what a checkpoint holds is in `types`, reading in `read` (within memory limits by way of
//! `file`). Files are native only: on wasm32 a checkpoint is its types and its bytes (`to_bytes`).

#[cfg(not(target_arch = "wasm32"))]
mod file;
#[cfg(not(target_arch = "wasm32"))]
mod read;
mod types;

#[cfg(not(target_arch = "wasm32"))]
pub use read::{load, load_init, load_init_with, load_with};
pub use types::{Checkpoint, FORMAT, FORMAT_VERSION, Model, TrainingState};

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::data::{Normalizer, Task};
use crate::error::{Error, Result};

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn task_json(t: &Option<Task>) -> Value {
    match t {
        Some(Task::Classification { classes }) => json!({"kind": "classification", "classes": classes}),
        Some(Task::Regression { targets }) => json!({"kind": "regression", "targets": targets}),
        None => Value::Null,
    }
}

/// The bytes of a checkpoint file.
pub fn to_bytes(ck: &Checkpoint) -> Result<Vec<u8>> {
    // Non-finite values (a diverged run) are refused, so a good checkpoint on disk is never replaced by one
    // that `load` would reject.
    let m = &ck.model;
    m.params.check(&m.spec)?;
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in 0..m.spec.layers() {
        let (i, o) = m.spec.layer_shape(l);
        let wt: Vec<f32> = m.params.weights[l].t().iter().copied().collect(); // (O, I) row-major
        buffers.push((format!("layers.{l}.weight"), vec![o, i], le_bytes(&wt)));
        buffers.push((format!("layers.{l}.bias"), vec![o], le_bytes(&m.params.biases[l].to_vec())));
    }
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("format_version".into(), FORMAT_VERSION.into());
    meta.insert("sizes".into(), json!(m.spec.sizes()).to_string());
    let acts: Vec<&str> = m.spec.activations().iter().map(|a| a.name()).collect();
    meta.insert("activations".into(), json!(acts).to_string());
    meta.insert("output".into(), m.spec.output().name().into());
    meta.insert("loss".into(), m.spec.loss().name().into());
    meta.insert(
        "normalization".into(),
        m.normalizer.as_ref().map(Normalizer::to_json).unwrap_or(Value::Null).to_string(),
    );
    meta.insert("task".into(), task_json(&m.task).to_string());
    if let Some(t) = &ck.training {
        let n = m.spec.param_layout().len;
        t.state.check(&t.optimizer, n)?;
        let training =
            json!({"optimizer": t.optimizer.to_json(), "step": t.state.step, "epoch": t.epoch, "seed": t.seed});
        meta.insert("training".into(), training.to_string());
        if !t.state.m.is_empty() {
            buffers.push(("optimizer.m".into(), vec![n], le_bytes(&t.state.m)));
        }
        if !t.state.v.is_empty() {
            buffers.push(("optimizer.v".into(), vec![n], le_bytes(&t.state.v)));
        }
    }
    for (name, _, bytes) in &buffers {
        let bad = bytes.chunks_exact(4).position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite());
        if let Some(i) = bad {
            return Err(Error::Invalid(format!(
                "training diverged: {name}[{i}] is not finite; the checkpoint is not written (an earlier one is kept)"
            )));
        }
    }
    Ok(serialize(&buffers, &meta))
}

/// The safetensors encoding: an 8-byte little-endian header length, the JSON header (metadata with sorted keys,
/// then the tensors in order, padded with spaces to a multiple of 8), then the data. Written here rather than
/// with `safetensors::serialize` so the same checkpoint always gives the same bytes.
fn serialize(buffers: &[(String, Vec<usize>, Vec<u8>)], meta: &HashMap<String, String>) -> Vec<u8> {
    let mut sorted: Vec<(&String, &String)> = meta.iter().collect();
    sorted.sort();
    let mut header = serde_json::Map::new();
    let meta_obj: serde_json::Map<String, Value> = sorted.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    header.insert("__metadata__".into(), Value::Object(meta_obj));
    let mut offset = 0usize;
    for (name, shape, bytes) in buffers {
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut head = Value::Object(header).to_string().into_bytes();
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, bytes) in buffers {
        out.extend_from_slice(bytes);
    }
    out
}

/// Writes a checkpoint atomically: an existing file at `path` is replaced only once the new one is complete.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, ck: &Checkpoint) -> Result<()> {
    let bytes = to_bytes(ck)?;
    crate::fsutil::write_atomic(path, &bytes)
}
