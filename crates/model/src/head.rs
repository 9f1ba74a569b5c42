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

use burn::module::{Module, Param, ParamId};
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
    /// gap-linear (or `fc.weight`, `fc.bias`: a torchvision ResNet file's own classifier); `fc1.weight` [64, C], `fc1.bias`, `fc2.weight` [n, 64], `fc2.bias` for
    /// gap-dense. The number of classes is read off the file.
    pub fn load(
        file: &WeightFile,
        kind: HeadKind,
        channels: usize,
        device: &Device,
    ) -> Result<Self, WeightError> {
        match kind {
            HeadKind::GapLinear => {
                // A torchvision classifier file (`fc.weight`, `fc.bias`: a ResNet's own fc)
                // is read as the head when given as one.
                let prefix = if !file.contains("weight") && file.contains("fc.weight") {
                    "fc."
                } else {
                    ""
                };
                let n = out_features(file, &format!("{prefix}weight"), channels)?;
                Ok(Self {
                    fc1: linear_from(file, prefix, channels, n, device)?,
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

    /// A head initialised as PyTorch's `nn.Linear` does, U(−1/√in, 1/√in) for weights and
    /// biases, with the values drawn from `uniform` (which returns numbers in [0, 1)) layer by
    /// layer, weight before bias, row-major in burn's [in, out] layout. Its parameters have fixed
    /// ids ([`param_id`]), so an optimizer's state saved with them finds them again in another
    /// process.
    pub fn seeded(
        kind: HeadKind,
        channels: usize,
        classes: usize,
        mut uniform: impl FnMut() -> f64,
        device: &Device,
    ) -> Self {
        let mut linear = |name: &str, d_in: usize, d_out: usize| {
            let bound = 1.0 / (d_in as f64).sqrt();
            let mut draw = |count: usize| -> Vec<f32> {
                (0..count)
                    .map(|_| ((uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let w = draw(d_in * d_out);
            let b = draw(d_out);
            Linear {
                weight: Param::initialized(
                    param_id(&format!("{name}.weight")),
                    Tensor::from_data(TensorData::new(w, [d_in, d_out]), device),
                )
                .set_require_grad(true),
                bias: Some(
                    Param::initialized(
                        param_id(&format!("{name}.bias")),
                        Tensor::from_data(TensorData::new(b, [d_out]), device),
                    )
                    .set_require_grad(true),
                ),
            }
        };
        match kind {
            HeadKind::GapLinear => Self {
                fc1: linear("fc1", channels, classes),
                fc2: None,
            },
            HeadKind::GapDense => Self {
                fc1: linear("fc1", channels, DENSE_HIDDEN),
                fc2: Some(linear("fc2", DENSE_HIDDEN, classes)),
            },
        }
    }

    /// The layers' weights and biases in PyTorch layout (weight [out, in]) under the names
    /// [`load`](Self::load) reads: `weight`, `bias` (gap-linear) or `fc1.weight` … `fc2.bias`.
    pub fn pytorch_tensors(&self) -> Vec<(String, Tensor<2>)> {
        let prefix = |i: usize| match self.kind() {
            HeadKind::GapLinear => String::new(),
            HeadKind::GapDense => format!("fc{}.", i + 1),
        };
        self.linears()
            .enumerate()
            .flat_map(|(i, fc)| {
                let weight = fc.weight.val().transpose();
                let bias = match &fc.bias {
                    Some(b) => b.val().unsqueeze_dim(0),
                    None => Tensor::zeros([1, fc.weight.dims()[1]], &fc.weight.device()),
                };
                [
                    (format!("{}weight", prefix(i)), weight),
                    (format!("{}bias", prefix(i)), bias),
                ]
            })
            .collect()
    }

    fn linears(&self) -> impl Iterator<Item = &Linear> {
        std::iter::once(&self.fc1).chain(self.fc2.as_ref())
    }

    /// Logits [N, n] from pooled features [N, C]: `fc1`, then ReLU and `fc2` for gap-dense.
    pub fn forward_pooled(&self, pooled: Tensor<2>) -> Tensor<2> {
        let x = self.fc1.forward(pooled);
        match &self.fc2 {
            Some(fc2) => fc2.forward(relu(x)),
            None => x,
        }
    }

    /// Logits [N, n] from a feature map [N, C, h, w] (global average pooling first).
    pub fn forward(&self, features: Tensor<4>) -> Tensor<2> {
        self.forward_pooled(global_average_pool(features))
    }
}

/// The fixed id of the head parameter `name` (`fc1.weight`, …): an FNV-1a hash of the name.
pub fn param_id(name: &str) -> ParamId {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    ParamId::from(hash)
}

/// Global average pooling: [N, C, h, w] → [N, C].
pub fn global_average_pool(features: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = features.dims();
    features.mean_dim(3).mean_dim(2).reshape([n, c])
}
