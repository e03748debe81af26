//! Per-feature normalisation: fitted on the training rows, applied to every input, kept in checkpoints.

use std::str::FromStr;

use ndarray::{Array2, Axis};

use crate::error::{Error, Result};

/// How features are rescaled before training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// Unchanged.
    None,
    /// Zero mean, unit (population) standard deviation per feature.
    Standard,
    /// Each feature mapped to [0, 1] by its minimum and maximum.
    MinMax,
}

impl Normalization {
    /// The name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Standard => "standard",
            Self::MinMax => "minmax",
        }
    }
}

impl FromStr for Normalization {
    type Err = Error;

    /// "none" | "standard" | "minmax".
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "standard" => Ok(Self::Standard),
            "minmax" => Ok(Self::MinMax),
            _ => Err(Error::Invalid(format!("unknown normalization {s:?}: valid values are none, standard, minmax"))),
        }
    }
}

/// Per-feature affine map x' = (x - offset) * scale, fitted on training data and kept in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    /// How offset and scale were fitted.
    pub kind: Normalization,
    /// Subtracted from each feature, length F.
    pub offset: Vec<f32>,
    /// Then multiplied into each feature, length F.
    pub scale: Vec<f32>,
}

impl Normalizer {
    /// standard: offset = mean, scale = 1/std (population std); minmax: offset = min, scale = 1/(max-min); none:
    /// offset 0, scale 1. A constant feature (std or range 0), one with no rows, or one whose spread is so small
    /// that 1/spread overflows f32, gets scale 1; an offset that is not a finite f32 (only from non-finite
    /// values, which no loader returns) becomes 0: the map is never inf/NaN.
    pub fn fit(kind: Normalization, x: &Array2<f32>) -> Normalizer {
        let finite_or = |v: f64, default: f32| if (v as f32).is_finite() { v as f32 } else { default };
        let scale_of = |spread: f64| {
            if spread > 0.0 { finite_or(1.0 / spread, 1.0) } else { 1.0 }
        };
        let n = x.nrows() as f64;
        let (offset, scale) = x
            .axis_iter(Axis(1)) // one feature column (N) at a time
            .map(|col| match kind {
                _ if col.is_empty() => (0.0, 1.0),
                Normalization::None => (0.0, 1.0),
                Normalization::Standard => {
                    let mean = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                    let var = col.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
                    (finite_or(mean, 0.0), scale_of(var.sqrt()))
                }
                Normalization::MinMax => {
                    let min = col.iter().copied().fold(f32::INFINITY, f32::min);
                    let max = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    (finite_or(f64::from(min), 0.0), scale_of(f64::from(max) - f64::from(min)))
                }
            })
            .unzip();
        Normalizer { kind, offset, scale }
    }

    /// Applies the map to x (N, F) in place; Error::Invalid if F differs from the normalizer's width.
    pub fn apply(&self, x: &mut Array2<f32>) -> Result<()> {
        if x.ncols() != self.offset.len() {
            return Err(Error::Invalid(format!(
                "the normalizer was fitted on {} features but the data has {}",
                self.offset.len(),
                x.ncols()
            )));
        }
        for mut row in x.axis_iter_mut(Axis(0)) {
            for ((v, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *v = (*v - o) * s;
            }
        }
        Ok(())
    }

    /// `{"kind": "standard", "offset": [...], "scale": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind.name(), "offset": self.offset, "scale": self.scale })
    }

    /// The inverse of [`Normalizer::to_json`]; checks that the kind is known, the lengths are equal and every value
    /// is a finite number (Error::Invalid otherwise).
    pub fn from_json(v: &serde_json::Value) -> Result<Normalizer> {
        let bad = |msg: String| Error::Invalid(format!("invalid normalizer: {msg}"));
        let kind =
            v.get("kind").and_then(|k| k.as_str()).ok_or_else(|| bad("\"kind\" is missing or not a string".into()))?;
        let kind: Normalization = kind.parse().map_err(|e: Error| bad(e.to_string()))?;
        let numbers = |key: &str| -> Result<Vec<f32>> {
            let arr = v
                .get(key)
                .and_then(|a| a.as_array())
                .ok_or_else(|| bad(format!("{key:?} is missing or not an array")))?;
            arr.iter()
                .enumerate()
                .map(|(i, e)| match e.as_f64().map(|f| f as f32) {
                    Some(f) if f.is_finite() => Ok(f),
                    _ => Err(bad(format!("{key}[{i}] = {e} is not a finite number"))),
                })
                .collect()
        };
        let (offset, scale) = (numbers("offset")?, numbers("scale")?);
        if offset.len() != scale.len() {
            return Err(bad(format!("\"offset\" has {} values but \"scale\" has {}", offset.len(), scale.len())));
        }
        Ok(Normalizer { kind, offset, scale })
    }
}
