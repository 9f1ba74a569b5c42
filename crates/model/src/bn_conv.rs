//! A convolution with its BatchNorm in eval mode ([`BnConv`]): folded into the conv at load time
//! (inference runs conv + bias only) or, in the layers a fine-tuning run trains, kept beside it as
//! constants, so Adam updates the same raw weight PyTorch's would. Shared by EfficientNet-Lite0
//! and ResNet; [`read_bn_conv`] reads one from a PyTorch state_dict.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::weights::{WeightError, WeightFile};

/// A BatchNorm in eval mode, kept beside its conv: output · `scale` + `shift` per channel
/// (scale = γ/√(var + ε), shift = β − mean·scale). Constants: never trained.
#[derive(Module, Debug)]
pub struct FrozenBn {
    /// Per output channel.
    pub scale: Tensor<1>,
    /// Per output channel.
    pub shift: Tensor<1>,
}

/// A conv followed by its (frozen) BatchNorm: folded into the conv (`bn` is `None`, the conv has
/// the folded bias) or kept beside it (`bn` is `Some`, the conv has the raw weight and no bias).
#[derive(Module, Debug)]
pub struct BnConv {
    /// The convolution.
    pub conv: Conv2d,
    /// The BatchNorm, when not folded.
    pub bn: Option<FrozenBn>,
}

impl BnConv {
    /// The conv's weight and bias with its BatchNorm. A kept BatchNorm is applied to the weight
    /// (weight · scale, bias = shift): the same function of the raw weight, so its gradient
    /// reaches the raw weight as PyTorch's does, without two passes over the activations.
    pub(crate) fn weight_and_bias(&self) -> (Tensor<4>, Tensor<1>) {
        match &self.bn {
            None => {
                let weight = self.conv.weight.val();
                let bias = match &self.conv.bias {
                    Some(bias) => bias.val(),
                    None => Tensor::zeros([weight.dims()[0]], &weight.device()),
                };
                (weight, bias)
            }
            Some(bn) => {
                let c = bn.scale.dims()[0];
                let weight = self.conv.weight.val() * bn.scale.clone().reshape([c, 1, 1, 1]);
                (weight, bn.shift.clone())
            }
        }
    }

    /// The weight as the PyTorch file has it (unfolded): the raw conv weight; `None` when the
    /// BatchNorm is folded into it.
    pub(crate) fn raw_weight(&self) -> Option<Tensor<4>> {
        self.bn.as_ref().map(|_| self.conv.weight.val())
    }

    /// This conv with its weight training (when unfolded and `trainable`) or not; the
    /// BatchNorm constants never train.
    pub(crate) fn trainable(self, trainable: bool) -> Self {
        Self {
            conv: self.conv.set_require_grad(trainable && self.bn.is_some()),
            bn: self.bn,
        }
    }

    /// A He-normal random conv of `shape` [out, in/groups, k, k]: unfolded beside an identity
    /// BatchNorm when `trained` (as a fine-tuning run loads it), else folded with a zero bias.
    pub(crate) fn random(
        shape: [usize; 4],
        stride: usize,
        groups: usize,
        trained: bool,
        device: &Device,
    ) -> Self {
        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
        let w = Tensor::random(
            shape,
            Distribution::Normal(0.0, (2.0 / fan_in).sqrt()),
            device,
        );
        let zeros = || Tensor::zeros([shape[0]], device);
        match trained {
            true => Self {
                conv: conv(w, None, stride, groups),
                bn: Some(FrozenBn {
                    scale: Tensor::ones([shape[0]], device),
                    shift: zeros(),
                }),
            },
            false => Self {
                conv: conv(w, Some(zeros()), stride, groups),
                bn: None,
            },
        }
    }
}

/// The unfolded (trainable) weights among `convs`, under their file keys: what a fine-tuned
/// backbone's weight file replaces (BatchNorm entries never change).
pub(crate) fn raw_weights(convs: Vec<(String, &BnConv)>) -> Vec<(String, TensorData)> {
    convs
        .into_iter()
        .filter_map(|(key, c)| c.raw_weight().map(|w| (key, w.into_data())))
        .collect()
}

/// A burn `Conv2d` holding `weight` [out, in/groups, kh, kw] and `bias` (its padding field is
/// unused: the networks pad explicitly).
pub(crate) fn conv(
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: usize,
    groups: usize,
) -> Conv2d {
    let [_, _, kh, kw] = weight.dims();
    Conv2d {
        weight: Param::from_tensor(weight),
        bias: bias.map(Param::from_tensor),
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups,
        padding: PaddingConfig2d::Valid,
    }
}

/// Read conv `conv_key` (no bias, shape `shape`) and its BatchNorm `bn.*` (ε = `eps`): folded
/// into the conv, or (`fold` false) kept beside it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_bn_conv(
    file: &WeightFile,
    conv_key: &str,
    bn: &str,
    shape: [usize; 4],
    stride: usize,
    groups: usize,
    eps: f32,
    fold: bool,
    device: &Device,
) -> Result<BnConv, WeightError> {
    let mut w = file.tensor(conv_key, &shape)?;
    let c = shape[0];
    let gamma = file.tensor(&format!("{bn}.weight"), &[c])?;
    let beta = file.tensor(&format!("{bn}.bias"), &[c])?;
    let mean = file.tensor(&format!("{bn}.running_mean"), &[c])?;
    let var = file.tensor(&format!("{bn}.running_var"), &[c])?;
    let scale: Vec<f32> = (0..c).map(|o| gamma[o] / (var[o] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|o| beta[o] - mean[o] * scale[o]).collect();
    let vector = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [c]), device);
    if !fold {
        return Ok(BnConv {
            conv: conv(
                Tensor::from_data(TensorData::new(w, shape), device),
                None,
                stride,
                groups,
            ),
            bn: Some(FrozenBn {
                scale: vector(scale),
                shift: vector(shift),
            }),
        });
    }
    let per_out = w.len() / c;
    for o in 0..c {
        w[o * per_out..(o + 1) * per_out]
            .iter_mut()
            .for_each(|v| *v *= scale[o]);
    }
    Ok(BnConv {
        conv: conv(
            Tensor::from_data(TensorData::new(w, shape), device),
            Some(vector(shift)),
            stride,
            groups,
        ),
        bn: None,
    })
}
