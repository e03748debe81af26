//! Reading checkpoints: the safetensors header checked before the crate parses it, every tensor's shape and
//! values checked, and the metadata read strictly (a field that is there but wrong is an error, not a default).

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::checkpoint::file;
use crate::checkpoint::types::{Checkpoint, FORMAT, FORMAT_VERSION, Model, TrainingState};
use crate::data::{Limits, Normalizer, Task};
use crate::error::{Error, Result};
use crate::model::{Activation, Loss, MlpSpec, Params};
use crate::optim::{OptimConfig, OptimState};

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
        let range: Option<Vec<u64>> = off.and_then(|a| a.iter().map(Value::as_u64).collect());
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
    load_init_with(path, spec, &Limits::detect())
}

/// [`load_init`] within `limits`.
pub fn load_init_with(path: &Path, spec: &MlpSpec, limits: &Limits) -> Result<Params<f32>> {
    let bytes = file::read(path, limits)?;
    let (st, _) = parse(path, &bytes)?;
    layers(path, &st, spec)
}

fn meta_json(path: &Path, meta: &HashMap<String, String>, key: &str) -> Result<Value> {
    let s = meta.get(key).ok_or_else(|| Error::data(path, format!("metadata lacks '{key}'")))?;
    serde_json::from_str(s).map_err(|e| Error::data(path, format!("metadata '{key}' is not valid JSON: {e}")))
}

/// Reads a checkpoint written by [`save`](crate::checkpoint::save).
pub fn load(path: &Path) -> Result<Checkpoint> {
    load_with(path, &Limits::detect())
}

/// [`load`] within `limits`.
pub fn load_with(path: &Path, limits: &Limits) -> Result<Checkpoint> {
    let bytes = file::read(path, limits)?;
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
    let task = task(path, &meta_json(path, &meta, "task")?)?;
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
        Some(_) => Some(training(path, &st, &meta_json(path, &meta, "training")?, &spec)?),
    };
    Ok(Checkpoint { model: Model { spec, params, normalizer, task }, training })
}

/// The `task` metadata: `null`, or a kind with its count.
fn task(path: &Path, v: &Value) -> Result<Option<Task>> {
    if v.is_null() {
        return Ok(None);
    }
    let count = |key: &str| match v.get(key).and_then(Value::as_u64).map(usize::try_from) {
        Some(Ok(n)) => Ok(n),
        _ => Err(Error::data(path, format!("metadata 'task' {v}: \"{key}\" must be a whole number of at least 0"))),
    };
    match v.get("kind").and_then(Value::as_str) {
        Some("classification") => Ok(Some(Task::Classification { classes: count("classes")? })),
        Some("regression") => Ok(Some(Task::Regression { targets: count("targets")? })),
        _ => Err(Error::data(
            path,
            format!("metadata 'task' {v} is not a task: its \"kind\" must be \"classification\" or \"regression\""),
        )),
    }
}

/// The `training` metadata (`t`) with the optimizer's state tensors.
fn training(path: &Path, st: &SafeTensors<'_>, t: &Value, spec: &MlpSpec) -> Result<TrainingState> {
    let bad = |m: String| Error::data(path, m);
    let optimizer = OptimConfig::from_json(&t["optimizer"]).map_err(|e| bad(format!("metadata 'training': {e}")))?;
    let count = |key: &str| match t.get(key) {
        None => Err(bad(format!("metadata 'training' lacks '{key}'"))),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(format!(
                "metadata 'training': '{key}' is {v}, but it counts, so it must be a whole number from 0 to {}",
                u64::MAX
            ))
        }),
    };
    let n = spec.param_layout().len;
    let vector = |name: &str, used: bool| -> Result<Vec<f32>> {
        if !used {
            return Ok(Vec::new());
        }
        let (shape, v) = tensor(path, st, name)?;
        if shape != [n] {
            return Err(bad(format!("{name} has shape {shape:?}; expected [{n}]")));
        }
        Ok(v)
    };
    let k = optimizer.state_vectors();
    let state =
        OptimState { m: vector("optimizer.m", k >= 1)?, v: vector("optimizer.v", k >= 2)?, step: count("step")? };
    let epoch = count("epoch")?;
    let epoch = usize::try_from(epoch)
        .map_err(|_| bad(format!("metadata 'training': 'epoch' is {epoch}, more than this machine can count")))?;
    Ok(TrainingState { optimizer, state, epoch, seed: count("seed")? })
}
