//! A network's parameters: weights (I, O) and biases (O) per layer, their checks against a spec, the flat
//! layout the backends keep them in, and the seeded initialisation.

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

use super::{Activation, MlpSpec};
use crate::error::{Error, Result};

/// Weights (I, O) and biases (O) for every layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    pub weights: Vec<Array2<T>>,
    pub biases: Vec<Array1<T>>,
}

impl<T: Copy + num_traits::Zero> Params<T> {
    /// All zeros, shaped for `spec`.
    pub fn zeros(spec: &MlpSpec) -> Self {
        let weights = (0..spec.layers()).map(|l| Array2::zeros(spec.layer_shape(l))).collect();
        let biases = (0..spec.layers()).map(|l| Array1::zeros(spec.layer_shape(l).1)).collect();
        Self { weights, biases }
    }

    /// Checks that every tensor has the shape `spec` asks for.
    pub fn check(&self, spec: &MlpSpec) -> Result<()> {
        if self.weights.len() != spec.layers() || self.biases.len() != spec.layers() {
            return Err(Error::shape(
                "parameters",
                format!("{} layers", spec.layers()),
                format!("{} weights and {} biases", self.weights.len(), self.biases.len()),
            ));
        }
        for l in 0..spec.layers() {
            let (i, o) = spec.layer_shape(l);
            if self.weights[l].dim() != (i, o) {
                return Err(Error::shape(
                    format!("layer {l} weight"),
                    format!("({i}, {o})"),
                    format!("{:?}", self.weights[l].dim()),
                ));
            }
            if self.biases[l].len() != o {
                return Err(Error::shape(
                    format!("layer {l} bias"),
                    format!("({o})"),
                    format!("({})", self.biases[l].len()),
                ));
            }
        }
        Ok(())
    }

    /// The flat buffer layout: for each layer `W` row-major then `b`.
    pub fn to_flat(&self) -> Vec<T> {
        let mut out = Vec::new();
        for (w, b) in self.weights.iter().zip(&self.biases) {
            out.extend(w.iter().copied());
            out.extend(b.iter().copied());
        }
        out
    }

    /// The inverse of [`Params::to_flat`].
    pub fn from_flat(spec: &MlpSpec, flat: &[T]) -> Result<Self> {
        let layout = spec.param_layout();
        if flat.len() != layout.len {
            return Err(Error::shape("flat parameters", layout.len, flat.len()));
        }
        let mut p = Self::zeros(spec);
        for (l, off) in layout.layers.iter().enumerate() {
            let w = &flat[off.w..off.b];
            p.weights[l] = Array2::from_shape_vec((off.inputs, off.outputs), w.to_vec()).map_err(|e| {
                Error::shape(format!("layer {l} weight"), format!("({}, {})", off.inputs, off.outputs), e)
            })?;
            p.biases[l] = Array1::from_vec(flat[off.b..off.b + off.outputs].to_vec());
        }
        Ok(p)
    }
}

impl Params<f32> {
    /// Seeded Xavier/Glorot-uniform weights (He-uniform for relu layers) and zero biases.
    /// ChaCha8 makes the same seed give the same weights on every platform.
    pub fn init(spec: &MlpSpec, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Self::zeros(spec);
        for l in 0..spec.layers() {
            let (i, o) = spec.layer_shape(l);
            let bound = match spec.activations()[l] {
                Activation::Relu => (6.0 / i as f64).sqrt(),
                _ => (6.0 / (i + o) as f64).sqrt(),
            } as f32;
            // `bound` is finite and positive for widths >= 1, so the range is valid.
            let dist = Uniform::new_inclusive(-bound, bound).expect("finite positive bound");
            p.weights[l].iter_mut().for_each(|w| *w = dist.sample(&mut rng));
        }
        p
    }
}

impl<T: Copy + Into<f64>> Params<T> {
    /// The same parameters in f64 (for the reference).
    pub fn to_f64(&self) -> Params<f64> {
        Params {
            weights: self.weights.iter().map(|w| w.mapv(Into::into)).collect(),
            biases: self.biases.iter().map(|b| b.mapv(Into::into)).collect(),
        }
    }
}

impl Params<f64> {
    /// The same parameters rounded to f32.
    pub fn to_f32(&self) -> Params<f32> {
        Params {
            weights: self.weights.iter().map(|w| w.mapv(|v| v as f32)).collect(),
            biases: self.biases.iter().map(|b| b.mapv(|v| v as f32)).collect(),
        }
    }
}
