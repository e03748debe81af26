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

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use crate::data::{Normalizer, Task};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::{Activation, Loss, MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};

/// The format name in the metadata.
pub const FORMAT: &str = "backprop-mlp";
/// The version of the layout described above.
pub const FORMAT_VERSION: &str = "1";

/// A trained network and what is needed to use it on new data.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub spec: MlpSpec,
    pub params: Params<f32>,
    /// The normalisation fitted on the training data, applied to every input.
    pub normalizer: Option<Normalizer>,
    /// Classification (with its class count) or regression.
    pub task: Option<Task>,
}

/// Where training stands, to resume it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingState {
    pub optimizer: OptimConfig,
    pub state: OptimState,
    /// Epochs completed.
    pub epoch: usize,
    /// The seed of the run (shuffles are derived from it and the epoch).
    pub seed: u64,
}

/// What a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: Model,
    pub training: Option<TrainingState>,
}

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

fn task_from_json(v: &Value) -> Option<Task> {
    let n = v.get("classes").or_else(|| v.get("targets")).and_then(Value::as_u64)? as usize;
    match v.get("kind")?.as_str()? {
        "classification" => Some(Task::Classification { classes: n }),
        "regression" => Some(Task::Regression { targets: n }),
        _ => None,
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
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    let bytes = to_bytes(ck)?;
    fsutil::write_atomic(path, &bytes)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    if path.is_dir() {
        return Err(Error::io(path, std::io::Error::other("is a directory, not a file")));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Checks the header's sizes before the safetensors crate sees them: every `data_offsets` range must lie
/// inside the file (its own check can overflow on crafted offsets).
fn precheck(bytes: &[u8]) -> std::result::Result<(), String> {
    let n = bytes.get(..8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let n = n.ok_or("shorter than the 8-byte header length")?;
    let end =
        8u64.checked_add(n).filter(|&e| e <= bytes.len() as u64).ok_or("header length past the end of the file")?;
    let header: Value =
        serde_json::from_slice(&bytes[8..end as usize]).map_err(|e| format!("header is not JSON: {e}"))?;
    let data_len = bytes.len() as u64 - end;
    for (name, t) in header.as_object().ok_or("header is not a JSON object")? {
        if name == "__metadata__" {
            continue;
        }
        let off = t.get("data_offsets").and_then(Value::as_array);
        let range: Option<Vec<u64>> = off.map(|a| a.iter().filter_map(Value::as_u64).collect());
        match range.as_deref() {
            Some([a, b]) if a <= b && *b <= data_len => {}
            _ => return Err(format!("tensor '{name}' has data offsets outside the file")),
        }
    }
    Ok(())
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let bad = |m: String| Error::data(path, m);
    precheck(bytes).map_err(|m| bad(format!("not a valid safetensors file (corrupt or truncated): {m}")))?;
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file (corrupt or truncated): {e}")))?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file (corrupt or truncated): {e}")))?;
    Ok((st, meta))
}

/// A tensor as f32 values with its shape (F32 or F64 in the file).
fn tensor(path: &Path, st: &SafeTensors<'_>, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = st.tensor(name).map_err(|_| Error::data(path, format!("has no tensor '{name}'")))?;
    let values: Vec<f32> = match t.dtype() {
        Dtype::F32 => t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => return Err(Error::data(path, format!("tensor '{name}' is {other:?}; expected F32 or F64"))),
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::data(path, format!("tensor '{name}' holds a non-finite value at index {i}")));
    }
    Ok((t.shape().to_vec(), values))
}

/// Reads the `layers.{l}.*` tensors for `spec`, checking every shape before building anything.
fn layers(path: &Path, st: &SafeTensors<'_>, spec: &MlpSpec) -> Result<Params<f32>> {
    for name in st.names() {
        let layer =
            name.strip_prefix("layers.").and_then(|r| r.split('.').next()).and_then(|l| l.parse::<usize>().ok());
        if let Some(l) = layer.filter(|&l| l >= spec.layers()) {
            return Err(Error::data(
                path,
                format!("has extra tensor '{name}' (layer {l}); the network has {} layers", spec.layers()),
            ));
        }
    }
    let (mut weights, mut biases) = (Vec::new(), Vec::new());
    for l in 0..spec.layers() {
        let (i, o) = spec.layer_shape(l);
        let name = format!("layers.{l}.weight");
        let shape = st
            .tensor(&name)
            .map(|t| t.shape().to_vec())
            .map_err(|_| Error::data(path, format!("has no tensor '{name}'")))?;
        if shape != [o, i] {
            return Err(Error::data(path, format!("{name} has shape {shape:?}; the network needs [{o}, {i}]")));
        }
        let (_, w) = tensor(path, st, &name)?;
        let wt = Array2::from_shape_vec((o, i), w).map_err(|e| Error::data(path, e.to_string()))?;
        weights.push(wt.t().to_owned());
        let name = format!("layers.{l}.bias");
        let (shape, b) = tensor(path, st, &name)?;
        if shape != [o] {
            return Err(Error::data(path, format!("{name} has shape {shape:?}; the network needs [{o}]")));
        }
        biases.push(Array1::from_vec(b));
    }
    Ok(Params { weights, biases })
}

/// Initial weights for `spec` from a file holding `layers.{l}.weight` (O, I) and `layers.{l}.bias` (O), as
/// PyTorch's `save_file(model.state_dict())` writes them; metadata is not needed.
pub fn load_init(path: &Path, spec: &MlpSpec) -> Result<Params<f32>> {
    let bytes = read_file(path)?;
    let (st, _) = parse(path, &bytes)?;
    layers(path, &st, spec)
}

fn meta_json(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<Value> {
    let s = meta.get(key).ok_or_else(|| Error::data(path, format!("metadata lacks '{key}'")))?;
    serde_json::from_str(s).map_err(|e| Error::data(path, format!("metadata '{key}' is not valid JSON: {e}")))
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = read_file(path)?;
    let (st, meta) = parse(path, &bytes)?;
    let bad = |m: String| Error::data(path, m);
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(bad(format!("format is '{other}', not '{FORMAT}' (use --init to start from bare weights)")));
        }
        None => return Err(bad(format!("has no '{FORMAT}' metadata (use --init to start from bare weights)"))),
    }
    if meta.get("format_version").map(String::as_str) != Some(FORMAT_VERSION) {
        return Err(bad(format!(
            "format_version {:?} is not supported (expected {FORMAT_VERSION})",
            meta.get("format_version")
        )));
    }
    let sizes: Vec<usize> =
        serde_json::from_value(meta_json(path, &meta, "sizes")?).map_err(|e| bad(format!("metadata 'sizes': {e}")))?;
    let acts: Vec<String> = serde_json::from_value(meta_json(path, &meta, "activations")?)
        .map_err(|e| bad(format!("metadata 'activations': {e}")))?;
    let acts =
        acts.iter().map(|a| a.parse::<Activation>()).collect::<Result<Vec<_>>>().map_err(|e| bad(e.to_string()))?;
    let loss: Loss = meta
        .get("loss")
        .ok_or_else(|| bad("metadata lacks 'loss'".into()))?
        .parse()
        .map_err(|e: Error| bad(e.to_string()))?;
    let spec = MlpSpec::new(sizes, acts, loss).map_err(|e| bad(e.to_string()))?;
    let params = layers(path, &st, &spec)?;
    let norm = meta_json(path, &meta, "normalization")?;
    let normalizer = if norm.is_null() {
        None
    } else {
        let n = Normalizer::from_json(&norm).map_err(|e| bad(format!("metadata 'normalization': {e}")))?;
        if n.offset.len() != spec.input_width() {
            return Err(bad(format!(
                "normalisation has {} features; the network takes {}",
                n.offset.len(),
                spec.input_width()
            )));
        }
        Some(n)
    };
    let task = task_from_json(&meta_json(path, &meta, "task")?);
    let width = match task {
        Some(Task::Classification { classes }) => Some(classes),
        Some(Task::Regression { targets }) => Some(targets),
        None => None,
    };
    if let Some(w) = width.filter(|&w| w != spec.output_width()) {
        return Err(bad(format!("task has {w} outputs; the network has {}", spec.output_width())));
    }
    if let Some(out) = meta.get("output") {
        if out != spec.output().name() {
            return Err(bad(format!("metadata 'output' is '{out}' but the layers say '{}'", spec.output().name())));
        }
    }
    let training = match meta.get("training") {
        None => None,
        Some(_) => {
            let t = meta_json(path, &meta, "training")?;
            let optimizer =
                OptimConfig::from_json(&t["optimizer"]).map_err(|e| bad(format!("metadata 'training': {e}")))?;
            let num = |k: &str| t[k].as_u64().ok_or_else(|| bad(format!("metadata 'training' lacks '{k}'")));
            let n = spec.param_layout().len;
            let vector = |name: &str, used: bool| -> Result<Vec<f32>> {
                if !used {
                    return Ok(Vec::new());
                }
                let (shape, v) = tensor(path, &st, name)?;
                if shape != [n] {
                    return Err(bad(format!("{name} has shape {shape:?}; expected [{n}]")));
                }
                Ok(v)
            };
            let k = optimizer.state_vectors();
            let state =
                OptimState { m: vector("optimizer.m", k >= 1)?, v: vector("optimizer.v", k >= 2)?, step: num("step")? };
            Some(TrainingState { optimizer, state, epoch: num("epoch")? as usize, seed: num("seed")? })
        }
    };
    Ok(Checkpoint { model: Model { spec, params, normalizer, task }, training })
}
