//! Classification heads on global-average-pooled backbone features.
//!
//! - `gap-linear`: GAP → Linear(C, n). The CAM paper's VGGnet-GAP; on VGG16 it reads
//!   `block5_conv3`, so the CAM weights act on the very map that is pooled.
//! - `gap-dense`: GAP → Linear(C, 64) → ReLU → Linear(64, n). The seed blog's Grad-CAM model;
//!   on VGG16 it reads `block5_pool`.
//!
//! n = 1 is a single sigmoid logit (class 1, "dog", when the logit is ≥ 0); n ≥ 2 are softmax
//! classes.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::weights::{WeightError, WeightFile};

/// Hidden width of the `gap-dense` head (the seed blog's Dense(64)).
pub const DENSE_HIDDEN: usize = 64;

/// Which head architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// GAP → Linear(C, n).
    GapLinear,
    /// GAP → Linear(C, 64) → ReLU → Linear(64, n).
    GapDense,
}

impl HeadKind {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::GapLinear => "gap-linear",
            HeadKind::GapDense => "gap-dense",
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gap-linear" => Ok(HeadKind::GapLinear),
            "gap-dense" => Ok(HeadKind::GapDense),
            other => Err(format!(
                "unknown head `{other}` (expected gap-linear or gap-dense)"
            )),
        }
    }
}

/// A head: `fc1` alone (gap-linear) or `fc1` → ReLU → `fc2` (gap-dense).
#[derive(Module, Debug)]
pub struct Head {
    /// First (for gap-linear: only) linear layer. burn layout: weight [in, out].
    pub fc1: Linear,
    /// Second linear layer of gap-dense.
    pub fc2: Option<Linear>,
}

fn linear_from(
    file: &WeightFile,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    device: &Device,
) -> Result<Linear, WeightError> {
    // PyTorch stores Linear weights as [out, in]; burn as [in, out].
    let w = file.tensor(&format!("{prefix}weight"), &[d_out, d_in])?;
    let b = file.tensor(&format!("{prefix}bias"), &[d_out])?;
    let w = Tensor::<2>::from_data(TensorData::new(w, [d_out, d_in]), device).transpose();
    Ok(Linear {
        weight: Param::from_tensor(w),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [d_out]),
            device,
        ))),
    })
}

/// Output size (number of logits) of the PyTorch-layout tensor `key`, read off its shape.
fn out_features(file: &WeightFile, key: &str, d_in: usize) -> Result<usize, WeightError> {
    match file.tensor(key, &[1, d_in]) {
        Ok(_) => Ok(1),
        Err(WeightError::Shape { found, .. }) if found.len() == 2 && found[1] == d_in => {
            Ok(found[0])
        }
        Err(e) => Err(e),
    }
}

impl Head {
    /// A freshly initialised head with `channels` inputs and `classes` logits.
    pub fn new(kind: HeadKind, channels: usize, classes: usize, device: &Device) -> Self {
        match kind {
            HeadKind::GapLinear => Self {
                fc1: LinearConfig::new(channels, classes).init(device),
                fc2: None,
            },
            HeadKind::GapDense => Self {
                fc1: LinearConfig::new(channels, DENSE_HIDDEN).init(device),
                fc2: Some(LinearConfig::new(DENSE_HIDDEN, classes).init(device)),
            },
        }
    }

    /// Import a head from PyTorch-layout safetensors: `weight` [n, C] and `bias` [n] for
    /// gap-linear; `fc1.weight` [64, C], `fc1.bias`, `fc2.weight` [n, 64], `fc2.bias` for
    /// gap-dense. The number of classes is read off the file.
    pub fn load(
        file: &WeightFile,
        kind: HeadKind,
        channels: usize,
        device: &Device,
    ) -> Result<Self, WeightError> {
        match kind {
            HeadKind::GapLinear => {
                let n = out_features(file, "weight", channels)?;
                Ok(Self {
                    fc1: linear_from(file, "", channels, n, device)?,
                    fc2: None,
                })
            }
            HeadKind::GapDense => {
                let n = out_features(file, "fc2.weight", DENSE_HIDDEN)?;
                Ok(Self {
                    fc1: linear_from(file, "fc1.", channels, DENSE_HIDDEN, device)?,
                    fc2: Some(linear_from(file, "fc2.", DENSE_HIDDEN, n, device)?),
                })
            }
        }
    }

    /// Which architecture this head is.
    pub fn kind(&self) -> HeadKind {
        if self.fc2.is_some() {
            HeadKind::GapDense
        } else {
            HeadKind::GapLinear
        }
    }

    /// Number of logits.
    pub fn num_classes(&self) -> usize {
        match &self.fc2 {
            Some(fc2) => fc2.weight.dims()[1],
            None => self.fc1.weight.dims()[1],
        }
    }

    /// Logits [N, n] from pooled features [N, C].
    pub fn forward_pooled(&self, pooled: Tensor<2>) -> Tensor<2> {
        dense_forward(pooled, &self.parameters())
    }

    /// The layers' (weight [in, out], bias [out]) pairs, first layer first.
    pub fn parameters(&self) -> Vec<(Tensor<2>, Tensor<1>)> {
        std::iter::once(&self.fc1)
            .chain(self.fc2.as_ref())
            .map(|fc| {
                let [_, d_out] = fc.weight.dims();
                let bias = fc
                    .bias
                    .as_ref()
                    .map_or_else(|| Tensor::zeros([d_out], &fc.weight.device()), |b| b.val());
                (fc.weight.val(), bias)
            })
            .collect()
    }

    /// A head of the same architecture with these parameters (as [`parameters`](Self::parameters)
    /// returns them).
    pub fn with_parameters(&self, parameters: Vec<(Tensor<2>, Tensor<1>)>) -> Self {
        let mut layers = parameters.into_iter().map(|(w, b)| Linear {
            weight: Param::from_tensor(w),
            bias: Some(Param::from_tensor(b)),
        });
        let fc1 = layers.next().unwrap_or_else(|| self.fc1.clone());
        Self {
            fc1,
            fc2: layers.next(),
        }
    }

    /// Logits [N, n] from a feature map [N, C, h, w] (global average pooling first).
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        self.forward_pooled(global_average_pool(features))
    }
}

/// Linear layers with ReLU between them: x·W₁ + b₁ → ReLU → x·W₂ + b₂ … (burn layout, W [in, out]).
/// The head's forward pass, shared by [`Head`] and by training code that holds the
/// parameters as plain (autodiff) tensors.
pub fn dense_forward(x: Tensor<2>, layers: &[(Tensor<2>, Tensor<1>)]) -> Tensor<2> {
    let mut x = x;
    for (i, (w, b)) in layers.iter().enumerate() {
        if i > 0 {
            x = relu(x);
        }
        x = x.matmul(w.clone()) + b.clone().unsqueeze_dim(0);
    }
    x
}

/// Global average pooling: [N, C, h, w] → [N, C].
pub fn global_average_pool(features: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = features.dims();
    features.mean_dim(3).mean_dim(2).reshape([n, c])
}
