//! The edits a checkpoint case makes to a valid file, drawn by proptest: structured changes to the JSON
//! header (metadata close to valid, any JSON value, tensors changed, removed or renamed) and changes to the
//! bytes (truncations, flips, length prefixes, data bits), and how each is applied.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

const META_KEYS: &[&str] = &[
    "format",
    "format_version",
    "sizes",
    "activations",
    "output",
    "loss",
    "normalization",
    "task",
    "training",
    "extra",
];
const JSON_KEYS: &[&str] = &[
    "kind",
    "classes",
    "targets",
    "name",
    "beta1",
    "beta2",
    "eps",
    "momentum",
    "weight_decay",
    "offset",
    "scale",
    "optimizer",
    "step",
    "epoch",
    "seed",
    "dtype",
    "shape",
    "data_offsets",
];
const JSON_STRINGS: &[&str] = &[
    "",
    "adam",
    "sgd",
    "momentum",
    "classification",
    "regression",
    "standard",
    "minmax",
    "none",
    "relu",
    "tanh",
    "identity",
    "sigmoid",
    "softmax",
    "mse",
    "cross-entropy",
    "backprop-mlp",
    "1",
    "2",
    "F32",
    "F64",
    "[5,7,3]",
    "null",
    "{",
    "\u{0}",
    "é",
];
const DTYPES: &[&str] = &[
    "F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2",
    "F4", "F6_E2M3", "E8M0", "C64", "X",
];
const BIG: &[u64] =
    &[0, 1, 2, 3, 7, 8, 65536, 1 << 31, 1 << 32, 1 << 61, (1 << 62) + 1, u64::MAX / 4, u64::MAX - 1, u64::MAX];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        select(BIG).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-2f64..2.0).prop_map(Value::from),
        select(vec![1e308, -1e308, 5e-324, -0.0, 0.999, 1.0]).prop_map(Value::from),
        select(JSON_STRINGS).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((select(JSON_KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn small_or_big() -> impl Strategy<Value = Value> {
    prop_oneof![4 => (0u64..9).prop_map(Value::from), 1 => select(BIG).prop_map(Value::from), 1 => json_value()]
}

fn name_of(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![4 => select(names).prop_map(Value::from), 1 => json_value()]
}

/// A metadata value that is close to a valid one for `key`, as the JSON text the metadata holds.
fn plausible_meta() -> impl Strategy<Value = (&'static str, String)> {
    let sizes = prop::collection::vec(small_or_big(), 0..5).prop_map(|v| ("sizes", Value::from(v).to_string()));
    let acts = prop::collection::vec(name_of(&["relu", "tanh", "identity", "sigmoid", "RELU", "softmax"]), 0..4)
        .prop_map(|v| ("activations", Value::from(v).to_string()));
    let task = (name_of(&["classification", "regression"]), select(vec!["classes", "targets"]), small_or_big())
        .prop_map(|(k, f, n)| ("task", json!({"kind": k, f: n}).to_string()));
    let finite = || prop::collection::vec(prop_oneof![(-3f64..3.0).prop_map(Value::from), json_value()], 0..7);
    let norm = (name_of(&["standard", "minmax", "none"]), finite(), finite())
        .prop_map(|(k, o, s)| ("normalization", json!({"kind": k, "offset": o, "scale": s}).to_string()));
    let number = || prop_oneof![(-0.5f64..1.5).prop_map(Value::from), json_value()];
    let optimizer = (name_of(&["sgd", "momentum", "adam"]), number(), number(), number(), number(), number())
        .prop_map(|(name, b1, b2, eps, m, wd)| {
            json!({"name": name, "beta1": b1, "beta2": b2, "eps": eps, "momentum": m, "weight_decay": wd})
        });
    let training = (optimizer, small_or_big(), small_or_big(), small_or_big()).prop_map(|(o, step, epoch, seed)| {
        ("training", json!({"optimizer": o, "step": step, "epoch": epoch, "seed": seed}).to_string())
    });
    let simple = (
        select(vec!["format", "format_version", "output", "loss"]),
        select(vec!["backprop-mlp", "1", "2", "", "identity", "sigmoid", "softmax", "mse", "cross-entropy", "CE"]),
    )
        .prop_map(|(k, v)| (k, v.to_string()));
    prop_oneof![sizes, acts, task, norm, training, simple]
}

/// A structured change to the JSON header; the length prefix is rewritten to match.
#[derive(Clone, Debug)]
pub(crate) enum HeaderEdit {
    SetMeta(&'static str, String),
    /// A value that is not a string (safetensors metadata must be strings).
    SetMetaRaw(&'static str, Value),
    RemoveMeta(&'static str),
    /// Inserts text into the metadata string at a (char-boundary-rounded) position.
    SpliceMeta(&'static str, Index, String),
    SetTensorField(Index, &'static str, Value),
    RemoveTensor(Index),
    RenameTensor(Index, String),
}

/// A change to the file's bytes, after the header edits.
#[derive(Clone, Debug)]
pub(crate) enum RawEdit {
    Truncate(Index),
    Flip(Index, u8),
    FlipPrefix(u8, u8),
    SetPrefix(u64),
    /// Adds `delta` (may be negative) to the length prefix.
    NudgePrefix(i8),
    FlipHeader(Index, u8),
    /// Writes f32 bits into the data area (NaN, infinities, anything).
    SetData(Index, u32),
    Append(Vec<u8>),
}

pub(crate) fn header_edit() -> impl Strategy<Value = HeaderEdit> {
    let tensor_value = prop_oneof![
        select(DTYPES).prop_map(|d| ("dtype", Value::from(d))),
        prop::collection::vec(small_or_big(), 0..4).prop_map(|s| ("shape", Value::from(s))),
        (small_or_big(), small_or_big()).prop_map(|(a, b)| ("data_offsets", json!([a, b]))),
        json_value().prop_map(|v| ("data_offsets", v)),
    ];
    let tensor_name = prop_oneof![
        Just("layers.0.weight".to_string()),
        Just("layers.9.bias".to_string()),
        Just("layers.99999999999999999999.weight".to_string()),
        Just("optimizer.m".to_string()),
        Just("optimizer.v".to_string()),
        Just("__metadata__".to_string()),
        "[a-z.0-9]{0,12}",
    ];
    prop_oneof![
        6 => plausible_meta().prop_map(|(k, v)| HeaderEdit::SetMeta(k, v)),
        2 => (select(META_KEYS), json_value()).prop_map(|(k, v)| HeaderEdit::SetMeta(k, v.to_string())),
        1 => (select(META_KEYS), json_value()).prop_map(|(k, v)| HeaderEdit::SetMetaRaw(k, v)),
        2 => select(META_KEYS).prop_map(HeaderEdit::RemoveMeta),
        2 => (select(META_KEYS), any::<Index>(), prop_oneof![json_value().prop_map(|v| v.to_string()), "[\\[\\]{}\",:0-9a-z]{1,6}"])
            .prop_map(|(k, i, s)| HeaderEdit::SpliceMeta(k, i, s)),
        3 => (any::<Index>(), tensor_value).prop_map(|(i, (f, v))| HeaderEdit::SetTensorField(i, f, v)),
        1 => any::<Index>().prop_map(HeaderEdit::RemoveTensor),
        1 => (any::<Index>(), tensor_name).prop_map(|(i, n)| HeaderEdit::RenameTensor(i, n)),
    ]
}

pub(crate) fn raw_edit() -> impl Strategy<Value = RawEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(RawEdit::Truncate),
        3 => (any::<Index>(), 1u8..).prop_map(|(i, m)| RawEdit::Flip(i, m)),
        2 => (0u8..8, 1u8..).prop_map(|(i, m)| RawEdit::FlipPrefix(i, m)),
        1 => prop_oneof![select(BIG), any::<u64>(), Just(100_000_000), Just(100_000_001)].prop_map(RawEdit::SetPrefix),
        2 => (-9i8..=9).prop_map(RawEdit::NudgePrefix),
        3 => (any::<Index>(), 1u8..).prop_map(|(i, m)| RawEdit::FlipHeader(i, m)),
        2 => (
            any::<Index>(),
            prop_oneof![select(vec![0x7fc0_0000u32, 0x7f80_0000, 0xff80_0000, 0x7f7f_ffff, 1]), any::<u32>()]
        )
            .prop_map(|(i, b)| RawEdit::SetData(i, b)),
        1 => prop::collection::vec(any::<u8>(), 1..9).prop_map(RawEdit::Append),
    ]
}

pub(crate) fn edit_header(header: &mut serde_json::Map<String, Value>, e: &HeaderEdit) {
    let tensors: Vec<String> = header.keys().filter(|k| *k != "__metadata__").cloned().collect();
    let meta = header.entry("__metadata__").or_insert_with(|| json!({}));
    match e {
        HeaderEdit::SetMeta(k, v) => {
            if let Some(m) = meta.as_object_mut() {
                m.insert(k.to_string(), Value::from(v.as_str()));
            }
        }
        HeaderEdit::SetMetaRaw(k, v) => {
            if let Some(m) = meta.as_object_mut() {
                m.insert(k.to_string(), v.clone());
            }
        }
        HeaderEdit::RemoveMeta(k) => {
            if let Some(m) = meta.as_object_mut() {
                m.remove(*k);
            }
        }
        HeaderEdit::SpliceMeta(k, i, text) => {
            if let Some(Value::String(s)) = meta.get_mut(*k) {
                let mut at = i.index(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, text);
            }
        }
        HeaderEdit::SetTensorField(i, field, v) if !tensors.is_empty() => {
            if let Some(Value::Object(t)) = header.get_mut(&tensors[i.index(tensors.len())]) {
                t.insert(field.to_string(), v.clone());
            }
        }
        HeaderEdit::RemoveTensor(i) if !tensors.is_empty() => {
            header.remove(&tensors[i.index(tensors.len())]);
        }
        HeaderEdit::RenameTensor(i, name) if !tensors.is_empty() => {
            if let Some(v) = header.remove(&tensors[i.index(tensors.len())]) {
                header.insert(name.clone(), v);
            }
        }
        _ => {}
    }
}

pub(crate) fn edit_raw(bytes: &mut Vec<u8>, e: &RawEdit) {
    let prefix = |b: &[u8]| b.get(..8).map(|p| u64::from_le_bytes(p.try_into().unwrap()));
    match *e {
        RawEdit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        RawEdit::Flip(i, m) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] ^= m;
        }
        RawEdit::FlipPrefix(i, m) if usize::from(i) < bytes.len() => bytes[usize::from(i)] ^= m,
        RawEdit::SetPrefix(v) if bytes.len() >= 8 => bytes[..8].copy_from_slice(&v.to_le_bytes()),
        RawEdit::NudgePrefix(d) => {
            if let Some(p) = prefix(bytes) {
                bytes[..8].copy_from_slice(&p.wrapping_add_signed(i64::from(d)).to_le_bytes());
            }
        }
        RawEdit::FlipHeader(i, m) => {
            if let Some(n) = prefix(bytes).and_then(|p| usize::try_from(p).ok()) {
                let end = n.saturating_add(8).min(bytes.len());
                if end > 8 {
                    let at = 8 + i.index(end - 8);
                    bytes[at] ^= m;
                }
            }
        }
        RawEdit::SetData(i, bits) => {
            if let Some(n) = prefix(bytes).and_then(|p| usize::try_from(p).ok()) {
                let start = n.saturating_add(8);
                if start < bytes.len() && bytes.len() - start >= 4 {
                    let at = start + 4 * i.index((bytes.len() - start) / 4);
                    bytes[at..at + 4].copy_from_slice(&bits.to_le_bytes());
                }
            }
        }
        RawEdit::Append(ref extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}
