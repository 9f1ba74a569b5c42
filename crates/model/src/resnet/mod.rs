//! ResNet-18/34/50/101/152 (He et al. 2016) as torchvision builds them (v1.5: a bottleneck's
//! stride is on its 3x3 conv), loaded from a torchvision `state_dict` ([`ResNet::load`]).
//! BatchNorm (ε 1e-5) is folded into each conv, except in the layers a fine-tuning run trains,
//! where it stays beside the raw weight as constants (eval mode), as for EfficientNet.
//!
//! | layer            | op                                            | out channels (18/34; 50+) |
//! |------------------|-----------------------------------------------|---------------------------|
//! | conv1            | conv 7x7 s2 + BN + ReLU                       | 64                        |
//! | maxpool          | max pool 3x3 s2 (pad 1)                       | 64                        |
//! | layer1.0 …       | blocks ×(2,3,3,3,3)                           | 64; 256                   |
//! | layer2.0 …       | blocks ×(2,4,4,4,8), the first s2             | 128; 512                  |
//! | layer3.0 …       | blocks ×(2,6,6,23,36), the first s2           | 256; 1024                 |
//! | layer4.0 …       | blocks ×(2,3,3,3,3), the first s2 (→ GAP)     | 512; 2048                 |
//!
//! Basic block (18, 34): conv 3x3 + BN + ReLU → conv 3x3 + BN → + shortcut → ReLU.
//! Bottleneck (50+): conv 1x1 + BN + ReLU → conv 3x3 (stride) + BN + ReLU → conv 1x1 (×4) + BN →
//! plus the shortcut → ReLU. The shortcut is `downsample` (conv 1x1 with the stride + BN) when
//! the shape changes, else the input.
//!
//! A stage's name (`layer4`) is its last block's output when explained, its first block when
//! training starts there (`train_from = "layer4"`). Channel widths are read off the file, so
//! narrower torchvision-keyed networks load too.

use std::sync::OnceLock;

use burn::backend::ops::ConvOptions;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::bn_conv::BnConv;

mod fast;
mod load;

/// BatchNorm ε of torchvision's ResNets.
const BN_EPS: f32 = 1e-5;

/// One ResNet depth: blocks per stage and the block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// 18, 34, 50, 101 or 152.
    layers: usize,
    /// Blocks in `layer1` … `layer4`.
    blocks: [usize; 4],
    /// Bottleneck blocks (50+) or basic blocks (18, 34).
    bottleneck: bool,
}

/// The five depths torchvision ships.
pub const DEPTHS: [Depth; 5] = [
    Depth::new(18, [2, 2, 2, 2], false),
    Depth::new(34, [3, 4, 6, 3], false),
    Depth::new(50, [3, 4, 6, 3], true),
    Depth::new(101, [3, 4, 23, 3], true),
    Depth::new(152, [3, 8, 36, 3], true),
];

impl Depth {
    const fn new(layers: usize, blocks: [usize; 4], bottleneck: bool) -> Self {
        Self {
            layers,
            blocks,
            bottleneck,
        }
    }

    /// The depth with this many layers (one of [`DEPTHS`]; the only way to make one).
    pub fn of(layers: usize) -> Option<Depth> {
        DEPTHS.into_iter().find(|d| d.layers == layers)
    }

    /// 18, 34, 50, 101 or 152.
    pub fn layers(self) -> usize {
        self.layers
    }

    /// Whether the blocks are bottlenecks (50+) rather than basic blocks (18, 34).
    pub fn bottleneck(self) -> bool {
        self.bottleneck
    }

    /// `(stage 1..=4, block within it)` of every block, in order.
    pub fn block_positions(self) -> Vec<(usize, usize)> {
        (0..4)
            .flat_map(|s| (0..self.blocks[s]).map(move |b| (s + 1, b)))
            .collect()
    }

    /// Layer names: `conv1`, `maxpool`, then every block `layer1.0` … `layer4.2`.
    pub fn layer_names(self) -> Vec<&'static str> {
        static NAMES: [OnceLock<Vec<&'static str>>; 5] = [const { OnceLock::new() }; 5];
        let slot = DEPTHS.iter().position(|d| *d == self).unwrap_or(0);
        NAMES[slot]
            .get_or_init(|| {
                let mut names = vec!["conv1", "maxpool"];
                // Built once per depth for the process: the names live as long as it does.
                names.extend(self.block_positions().into_iter().map(|(s, b)| {
                    &*Box::leak(format!("layer{s}.{b}").into_boxed_str()) as &'static str
                }));
                names
            })
            .clone()
    }

    /// The stride of block `b` of stage `stage`: 2 for the first block of stages 2–4 (its 3x3
    /// conv in a bottleneck, its first conv in a basic block, and the shortcut's projection).
    pub fn stride((stage, b): (usize, usize)) -> usize {
        if stage > 1 && b == 0 {
            2
        } else {
            1
        }
    }

    /// The index of layer `name`, where a stage name (`layer3`) is its last block (the stage's
    /// output, what an explanation of `layer3` shows).
    pub fn layer(self, name: &str) -> Option<usize> {
        self.stage_blocks(name)
            .map(|(_, last)| last)
            .or_else(|| self.layer_names().iter().position(|n| *n == name))
    }

    /// The first and last layer index of stage `name` (`layer1` … `layer4`).
    pub fn stage_blocks(self, name: &str) -> Option<(usize, usize)> {
        let stage: usize = name.strip_prefix("layer")?.parse().ok()?;
        if !(1..=4).contains(&stage) {
            return None;
        }
        let first = 2 + self.blocks[..stage - 1].iter().sum::<usize>();
        Some((first, first + self.blocks[stage - 1] - 1))
    }
}

/// One residual block (basic: `conv1`, `conv2`; bottleneck: also `conv3`).
#[derive(Module, Debug)]
pub struct Block {
    /// First conv (3x3 basic, 1x1 bottleneck) + BN + ReLU.
    pub conv1: BnConv,
    /// Second conv (3x3, with the block's stride in a bottleneck).
    pub conv2: BnConv,
    /// The bottleneck's 1x1 expansion.
    pub conv3: Option<BnConv>,
    /// The shortcut's 1x1 conv + BN, when the shape changes.
    pub downsample: Option<BnConv>,
}

/// A ResNet up to `layer4` (the `fc` is a head: see [`crate::Head::load`]).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem conv 7x7 s2 (+ BN).
    pub conv1: BnConv,
    /// Every block of `layer1` … `layer4`, in order.
    pub blocks: Vec<Block>,
}

/// `conv` (with its BatchNorm) on x [N, C, H, W], padded by k/2 on every side (torchvision's
/// padding for its 7x7, 3x3 and 1x1 convs), then ReLU when `relu`.
fn conv_bn(conv: &BnConv, x: Tensor<4>, relu_after: bool) -> Tensor<4> {
    let (weight, bias) = conv.weight_and_bias();
    let k = conv.conv.kernel_size[0];
    let options = ConvOptions::new(conv.conv.stride, [k / 2; 2], [1; 2], 1);
    let y = conv2d(x, weight, Some(bias), options);
    if relu_after {
        relu(y)
    } else {
        y
    }
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv_bn(&self.conv1, x.clone(), true);
        let y = match &self.conv3 {
            Some(conv3) => conv_bn(conv3, conv_bn(&self.conv2, y, true), false),
            None => conv_bn(&self.conv2, y, false),
        };
        let shortcut = match &self.downsample {
            Some(down) => conv_bn(down, x, false),
            None => x,
        };
        relu(y + shortcut)
    }

    /// Output channels (the last conv's).
    fn out_channels(&self) -> usize {
        self.conv3
            .as_ref()
            .unwrap_or(&self.conv2)
            .conv
            .weight
            .dims()[0]
    }

    /// The block's convs with their torchvision key prefixes (`conv1`, `bn1`, …).
    fn convs(&self) -> Vec<(&'static str, &BnConv)> {
        let mut convs = vec![("conv1", &self.conv1), ("conv2", &self.conv2)];
        if let Some(c) = &self.conv3 {
            convs.push(("conv3", c));
        }
        if let Some(d) = &self.downsample {
            convs.push(("downsample.0", d));
        }
        convs
    }

    fn map_convs(self, f: &impl Fn(BnConv) -> BnConv) -> Self {
        Self {
            conv1: f(self.conv1),
            conv2: f(self.conv2),
            conv3: self.conv3.map(f),
            downsample: self.downsample.map(f),
        }
    }
}

impl ResNet {
    /// A randomly initialised torchvision-width ResNet of `depth` (He-normal convs, BatchNorm
    /// the identity): tests and timing. Layers `train_from..` are laid out as
    /// [`load_trainable`](Self::load_trainable) makes them (BatchNorm kept beside the raw
    /// weight, weights tracking gradients); the others folded.
    pub fn random(depth: Depth, train_from: Option<usize>, device: &Device) -> Self {
        let random_conv = |c_out: usize, c_in: usize, k: usize, stride: usize, layer: usize| {
            let trained = train_from.is_some_and(|from| layer >= from);
            BnConv::random([c_out, c_in, k, k], stride, 1, trained, device)
        };
        let stem = 64;
        let mut c_in = stem;
        let mut blocks = Vec::new();
        for (i, (stage, b)) in depth.block_positions().into_iter().enumerate() {
            let layer = i + 2;
            let planes = stem << (stage - 1);
            let stride = Depth::stride((stage, b));
            let (conv1, conv2, conv3, c_out) = if depth.bottleneck {
                (
                    random_conv(planes, c_in, 1, 1, layer),
                    random_conv(planes, planes, 3, stride, layer),
                    Some(random_conv(planes * 4, planes, 1, 1, layer)),
                    planes * 4,
                )
            } else {
                (
                    random_conv(planes, c_in, 3, stride, layer),
                    random_conv(planes, planes, 3, 1, layer),
                    None,
                    planes,
                )
            };
            let downsample =
                (stride != 1 || c_in != c_out).then(|| random_conv(c_out, c_in, 1, stride, layer));
            blocks.push(Block {
                conv1,
                conv2,
                conv3,
                downsample,
            });
            c_in = c_out;
        }
        let net = Self {
            conv1: random_conv(stem, 3, 7, 2, 0),
            blocks,
        };
        let layers = net.blocks.len() + 2;
        (0..layers).fold(net.set_require_grad(false), |net, index| {
            net.set_trainable(index, train_from.is_some_and(|from| index >= from))
        })
    }

    /// Which depth this network is (from its block count and type; a network is only ever built
    /// for one of [`DEPTHS`]).
    pub fn depth(&self) -> Depth {
        let bottleneck = self.blocks.first().is_some_and(|b| b.conv3.is_some());
        DEPTHS
            .into_iter()
            .find(|d| {
                d.bottleneck == bottleneck && d.blocks.iter().sum::<usize>() == self.blocks.len()
            })
            .unwrap_or(DEPTHS[0])
    }

    /// Output channels of `conv1` (64 for torchvision's ResNets).
    pub fn stem_channels(&self) -> usize {
        self.conv1.conv.weight.dims()[0]
    }

    /// Output channels of layer `index` (read off the loaded weights: the block's last conv).
    pub fn channels(&self, index: usize) -> usize {
        match index
            .checked_sub(2)
            .and_then(|b| self.blocks.get(b).or(self.blocks.last()))
        {
            Some(block) if index >= 2 => block.out_channels(),
            _ => self.stem_channels(),
        }
    }

    /// Run layers `start..=end` (0 = conv1, 1 = maxpool, 2.. = blocks) on `x`, the input of
    /// layer `start`. On the CPU outside autodiff, a bottleneck network takes the fast path
    /// ([`fast`]); otherwise burn's ops ([`run_burn`](Self::run_burn)).
    pub fn run(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        let end = end.min(self.blocks.len() + 1);
        if start > end || !self.fast_path_applies(&x, start, end) {
            return self.run_burn(x, start, end);
        }
        match self.run_fast(x.clone(), start, end) {
            Some(y) => y,
            None => self.run_burn(x, start, end),
        }
    }

    /// [`run`](Self::run) on burn's ops only (any device, autodiff): the reference the fast path
    /// is tested and timed against.
    pub fn run_burn(&self, mut x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        for index in start..=end.min(self.blocks.len() + 1) {
            x = match index {
                0 => conv_bn(&self.conv1, x, true),
                1 => max_pool2d(
                    x,
                    MaxPoolOptions {
                        kernel_size: [3, 3],
                        stride: [2, 2],
                        padding: [(1, 1); 2],
                        dilation: [1, 1],
                        ceil_mode: false,
                    },
                ),
                i => self.blocks[i - 2].forward(x),
            };
        }
        x
    }

    /// The convs of layer `index` with their torchvision weight keys.
    pub fn layer_convs(&self, index: usize) -> Vec<(String, &BnConv)> {
        match index {
            0 => vec![("conv1.weight".to_string(), &self.conv1)],
            1 => Vec::new(),
            i => {
                let (stage, block) = self.depth().block_positions()[i - 2];
                self.blocks[i - 2]
                    .convs()
                    .into_iter()
                    .map(|(name, c)| (format!("layer{stage}.{block}.{name}.weight"), c))
                    .collect()
            }
        }
    }

    /// The unfolded (trainable) conv weights of layer `index`, under their file keys.
    pub fn raw_weights(&self, index: usize) -> Vec<(String, burn::tensor::TensorData)> {
        crate::bn_conv::raw_weights(self.layer_convs(index))
    }

    /// Layer `index`'s conv weights train (those kept unfolded) or not; BatchNorm never does.
    pub fn set_trainable(mut self, index: usize, trainable: bool) -> Self {
        let set = |c: BnConv| c.trainable(trainable);
        match index {
            0 => self.conv1 = set(self.conv1),
            1 => {}
            i => {
                let block = self.blocks.remove(i - 2);
                self.blocks.insert(i - 2, block.map_convs(&set));
            }
        }
        self
    }

    /// Re-initialise layer `index`'s convs (He-normal, zero bias, BatchNorm dropped).
    pub fn reinitialize(&mut self, index: usize) {
        let re = |c: BnConv| BnConv {
            conv: crate::reinitialized(&c.conv),
            bn: None,
        };
        match index {
            0 => self.conv1 = re(self.conv1.clone()),
            1 => {}
            i => {
                let block = self.blocks[i - 2].clone();
                self.blocks[i - 2] = block.map_convs(&re);
            }
        }
    }
}
