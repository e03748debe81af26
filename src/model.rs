//! The network's description (`MlpSpec`) and its parameters (`Params`), with seeded initialisation.
//!
//! Weights follow the seed's convention: `W` is (I, O) and `W[i][j]` connects input `i` to output `j`.
//! On the GPU all parameters live in one flat buffer: for each layer its `W` (row-major) then its `b`.

use std::fmt;
use std::str::FromStr;

mod params;

pub use params::Params;

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float, FromPrimitive};

use crate::error::{Error, Result};

/// The float types the reference and the optimizers run in (f32 and f64).
pub trait Real: Float + FromPrimitive + LinalgScalar + ScalarOperand + fmt::Debug + Send + Sync + 'static {}
impl<T: Float + FromPrimitive + LinalgScalar + ScalarOperand + fmt::Debug + Send + Sync + 'static> Real for T {}

/// An elementwise activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Sigmoid,
    Relu,
    Tanh,
}

impl Activation {
    /// Every activation, in the order of their shader ids.
    pub const ALL: [Activation; 4] = [Self::Identity, Self::Sigmoid, Self::Relu, Self::Tanh];

    /// The id the WGSL shaders use (`ACT_*` in `shaders/common.wgsl`).
    pub fn shader_id(self) -> u32 {
        match self {
            Self::Identity => 0,
            Self::Sigmoid => 1,
            Self::Relu => 2,
            Self::Tanh => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Sigmoid => "sigmoid",
            Self::Relu => "relu",
            Self::Tanh => "tanh",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s.to_ascii_lowercase()).ok_or_else(|| {
            Error::Invalid(format!("unknown activation '{s}' (expected identity, sigmoid, relu or tanh)"))
        })
    }
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Mean squared error over all B·O elements (PyTorch `MSELoss`, reduction mean).
    Mse,
    /// Softmax over each output row fused with cross-entropy, averaged over the batch (PyTorch
    /// `CrossEntropyLoss` on logits with probability targets). The last layer's activation is the identity
    /// (it produces logits `Z_L`); the network's output `A_L` is `softmax(Z_L)`.
    CrossEntropy,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mse => "mse",
            Self::CrossEntropy => "cross-entropy",
        }
    }
}

impl FromStr for Loss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mse" => Ok(Self::Mse),
            "cross-entropy" | "cross_entropy" | "crossentropy" | "ce" => Ok(Self::CrossEntropy),
            _ => Err(Error::Invalid(format!("unknown loss '{s}' (expected mse or cross-entropy)"))),
        }
    }
}

/// What the last layer outputs, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Identity,
    Sigmoid,
    /// Softmax over each row; only with the cross-entropy loss, fused with it.
    Softmax,
}

impl Output {
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Sigmoid => "sigmoid",
            Self::Softmax => "softmax",
        }
    }
}

impl FromStr for Output {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "identity" | "linear" => Ok(Self::Identity),
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            _ => Err(Error::Invalid(format!("unknown output '{s}' (expected identity, sigmoid or softmax)"))),
        }
    }
}

/// The most parameters a network may have (about 2^36 f32 values on 64-bit, 256 GiB; 2^28 on 32-bit targets such as
/// wasm32, 1 GiB), far past any device; it keeps every size computation below from overflowing.
pub const MAX_PARAMS: usize = if usize::BITS >= 64 { usize::MAX >> 28 } else { usize::MAX >> 4 };

/// The shape of a multilayer perceptron: widths (input first, output last), one activation per layer, a loss.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    sizes: Vec<usize>,
    activations: Vec<Activation>,
    loss: Loss,
}

impl MlpSpec {
    /// `sizes` lists every width, input first; `activations` has one entry per layer (`sizes.len() - 1`).
    pub fn new(sizes: Vec<usize>, activations: Vec<Activation>, loss: Loss) -> Result<Self> {
        if sizes.len() < 2 {
            return Err(Error::Model(format!(
                "a network needs at least an input and an output width, got {} width(s)",
                sizes.len()
            )));
        }
        if let Some(pos) = sizes.iter().position(|&s| s == 0) {
            return Err(Error::Model(format!("width {pos} is 0; every width must be at least 1")));
        }
        if activations.len() != sizes.len() - 1 {
            return Err(Error::Model(format!(
                "{} layers need {} activations, got {}",
                sizes.len() - 1,
                sizes.len() - 1,
                activations.len()
            )));
        }
        let mut total: usize = 0;
        for w in sizes.windows(2) {
            let layer = w[0].checked_mul(w[1]).and_then(|p| p.checked_add(w[1]));
            total = match layer.and_then(|p| total.checked_add(p)) {
                Some(t) if t <= MAX_PARAMS => t,
                _ => {
                    return Err(Error::Model(format!("widths {sizes:?} need more than {MAX_PARAMS} parameters")));
                }
            };
        }
        if loss == Loss::CrossEntropy && activations[activations.len() - 1] != Activation::Identity {
            return Err(Error::Model(
                "the cross-entropy loss applies softmax to the last layer itself; its activation must be identity"
                    .into(),
            ));
        }
        Ok(Self { sizes, activations, loss })
    }

    /// Hidden layers with `hidden`, the last layer as `output`, and `loss`; checks that the pair is valid
    /// (softmax goes with cross-entropy, and cross-entropy with softmax).
    pub fn with_output(sizes: Vec<usize>, hidden: Activation, output: Output, loss: Loss) -> Result<Self> {
        let last = match (output, loss) {
            (Output::Softmax, Loss::CrossEntropy) => Activation::Identity,
            (Output::Softmax, Loss::Mse) => {
                return Err(Error::Model("--output softmax needs --loss cross-entropy (the two are fused)".into()));
            }
            (o, Loss::CrossEntropy) => {
                return Err(Error::Model(format!("--loss cross-entropy needs --output softmax, not {}", o.name())));
            }
            (Output::Identity, Loss::Mse) => Activation::Identity,
            (Output::Sigmoid, Loss::Mse) => Activation::Sigmoid,
        };
        let n = sizes.len().saturating_sub(1);
        let mut acts = vec![hidden; n];
        if let Some(a) = acts.last_mut() {
            *a = last;
        }
        Self::new(sizes, acts, loss)
    }

    /// What the last layer outputs.
    pub fn output(&self) -> Output {
        match (self.loss, self.activations[self.activations.len() - 1]) {
            (Loss::CrossEntropy, _) => Output::Softmax,
            (_, Activation::Sigmoid) => Output::Sigmoid,
            _ => Output::Identity,
        }
    }

    /// Every layer with the same activation.
    pub fn uniform(sizes: Vec<usize>, activation: Activation, loss: Loss) -> Result<Self> {
        let n = sizes.len().saturating_sub(1);
        Self::new(sizes, vec![activation; n], loss)
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// Number of layers (weight matrices).
    pub fn layers(&self) -> usize {
        self.activations.len()
    }
    pub fn input_width(&self) -> usize {
        self.sizes[0]
    }
    pub fn output_width(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    /// (I, O) of layer `l`.
    pub fn layer_shape(&self, l: usize) -> (usize, usize) {
        (self.sizes[l], self.sizes[l + 1])
    }

    /// Offsets of each layer's `W` and `b` in the flat parameter buffer, and the total length.
    pub fn param_layout(&self) -> ParamLayout {
        let mut offset = 0;
        let mut layers = Vec::with_capacity(self.layers());
        for l in 0..self.layers() {
            let (i, o) = self.layer_shape(l);
            let w = offset;
            let b = w + i * o;
            offset = b + o;
            layers.push(LayerOffsets { w, b, inputs: i, outputs: o });
        }
        ParamLayout { layers, len: offset }
    }

    /// Checks that a batch `x` (B, I_0) and targets `y` (B, O_L) fit this network: at least one row, the
    /// input width, and as many target rows as input rows of the output width.
    pub fn check_batch(&self, x: (usize, usize), y: Option<(usize, usize)>) -> Result<()> {
        if x.0 == 0 {
            return Err(Error::shape("batch", "at least 1 row", "0 rows"));
        }
        if x.1 != self.input_width() {
            return Err(Error::shape("input columns", self.input_width(), x.1));
        }
        if let Some((rows, cols)) = y {
            if rows != x.0 {
                return Err(Error::shape("target rows", x.0, rows));
            }
            if cols != self.output_width() {
                return Err(Error::shape("target columns", self.output_width(), cols));
            }
        }
        Ok(())
    }

    /// FLOP of one training step at batch `b`: 6·B·Σ I·O (forward, input and weight gradient products).
    pub fn step_flops(&self, batch: usize) -> f64 {
        let macs: usize = (0..self.layers()).map(|l| self.sizes[l] * self.sizes[l + 1]).sum();
        6.0 * batch as f64 * macs as f64
    }
}

/// Where one layer's parameters sit in the flat buffer (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOffsets {
    pub w: usize,
    pub b: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// The flat parameter layout of a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    pub layers: Vec<LayerOffsets>,
    pub len: usize,
}
