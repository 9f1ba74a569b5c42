//! VGG16's convolutional part (Simonyan & Zisserman 2015, configuration D), exactly as
//! torchvision's `vgg16().features`, with every layer addressable by its Keras name.
//!
//! | block | layers (3x3 conv, pad 1, + ReLU)          | channels | then          |
//! |-------|--------------------------------------------|----------|---------------|
//! | 1     | block1_conv1, block1_conv2                 | 64       | block1_pool   |
//! | 2     | block2_conv1, block2_conv2                 | 128      | block2_pool   |
//! | 3     | block3_conv1 .. block3_conv3               | 256      | block3_pool   |
//! | 4     | block4_conv1 .. block4_conv3               | 512      | block4_pool   |
//! | 5     | block5_conv1 .. block5_conv3               | 512      | block5_pool   |
//!
//! Pools are 2x2 max-pools with stride 2. A conv layer's output is taken after its ReLU.
//! `width_divisor` divides every channel count (1 = the real network; the test fixtures
//! also use 8).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rayon::prelude::*;

use crate::weights::{WeightError, WeightFile};

/// One layer of the table: a 3x3 conv (+ReLU) or a 2x2 max-pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// 3x3 convolution, padding 1, followed by ReLU. `torch_index` is its position in
    /// torchvision's `features` (the weight keys are `features.{torch_index}.weight|bias`).
    Conv {
        /// Input channels (of the real network).
        c_in: usize,
        /// Output channels (of the real network).
        c_out: usize,
        /// Index in torchvision's `vgg16().features`.
        torch_index: usize,
    },
    /// 2x2 max-pool, stride 2.
    Pool,
}

const fn conv(c_in: usize, c_out: usize, torch_index: usize) -> Op {
    Op::Conv {
        c_in,
        c_out,
        torch_index,
    }
}

/// VGG16's layers in order, with their Keras names.
pub const VGG16_LAYERS: [(&str, Op); 18] = [
    ("block1_conv1", conv(3, 64, 0)),
    ("block1_conv2", conv(64, 64, 2)),
    ("block1_pool", Op::Pool),
    ("block2_conv1", conv(64, 128, 5)),
    ("block2_conv2", conv(128, 128, 7)),
    ("block2_pool", Op::Pool),
    ("block3_conv1", conv(128, 256, 10)),
    ("block3_conv2", conv(256, 256, 12)),
    ("block3_conv3", conv(256, 256, 14)),
    ("block3_pool", Op::Pool),
    ("block4_conv1", conv(256, 512, 17)),
    ("block4_conv2", conv(512, 512, 19)),
    ("block4_conv3", conv(512, 512, 21)),
    ("block4_pool", Op::Pool),
    ("block5_conv1", conv(512, 512, 24)),
    ("block5_conv2", conv(512, 512, 26)),
    ("block5_conv3", conv(512, 512, 28)),
    ("block5_pool", Op::Pool),
];

/// VGG16 `features`: 13 convs and 5 pools.
#[derive(Module, Debug)]
pub struct Vgg16 {
    /// The 13 convolutions, in order (`block1_conv1` first).
    pub convs: Vec<Conv2d>,
}

/// Index of the layer called `name` in [`VGG16_LAYERS`].
pub fn layer_index(name: &str) -> Option<usize> {
    VGG16_LAYERS.iter().position(|(n, _)| *n == name)
}

/// Channel count of a layer's output for the given width divisor.
pub fn layer_channels(index: usize, width_divisor: usize) -> usize {
    VGG16_LAYERS[..=index]
        .iter()
        .rev()
        .find_map(|(_, op)| match op {
            Op::Conv { c_out, .. } => Some(c_out / width_divisor),
            Op::Pool => None,
        })
        .unwrap_or(3)
}

fn conv_shapes(width_divisor: usize) -> impl Iterator<Item = (usize, [usize; 4])> {
    VGG16_LAYERS.iter().filter_map(move |(_, op)| match *op {
        Op::Conv {
            c_in,
            c_out,
            torch_index,
        } => {
            let c_in = if c_in == 3 { 3 } else { c_in / width_divisor };
            Some((torch_index, [c_out / width_divisor, c_in, 3, 3]))
        }
        Op::Pool => None,
    })
}

fn make_conv(weight: Tensor<4>, bias: Tensor<1>) -> Conv2d {
    Conv2d {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
        stride: [1, 1],
        kernel_size: [3, 3],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
    }
}

impl Vgg16 {
    /// A randomly initialised VGG16 (Kaiming-normal weights, zero biases, as torchvision).
    pub fn random(width_divisor: usize, device: &Device) -> Self {
        let convs = conv_shapes(width_divisor)
            .map(|(_, shape)| {
                let fan_out = (shape[0] * 9) as f64;
                let std = (2.0 / fan_out).sqrt();
                let w = Tensor::random(shape, Distribution::Normal(0.0, std), device);
                make_conv(w, Tensor::zeros([shape[0]], device))
            })
            .collect();
        Self { convs }
    }

    /// Load torchvision-named weights (`features.N.weight|bias`; other keys such as
    /// `classifier.*` are ignored). The width divisor is read off the file.
    pub fn load(file: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let first = "features.0.weight";
        // Read the first conv's output channels to find the width (64 = the real VGG16).
        let width_divisor = match file.tensor(first, &[64, 3, 3, 3]) {
            Ok(_) => 1,
            Err(WeightError::Shape { found, .. }) if found.len() == 4 && found[0] > 0 => {
                64 / found[0].min(64)
            }
            Err(e) => return Err(e),
        };
        let convs = conv_shapes(width_divisor)
            .map(|(i, shape)| {
                let w = file.tensor(&format!("features.{i}.weight"), &shape)?;
                let b = file.tensor(&format!("features.{i}.bias"), &shape[..1])?;
                Ok(make_conv(
                    Tensor::from_data(TensorData::new(w, shape), device),
                    Tensor::from_data(TensorData::new(b, [shape[0]]), device),
                ))
            })
            .collect::<Result<Vec<_>, WeightError>>()?;
        Ok(Self { convs })
    }

    /// Channel count divisor relative to the real VGG16 (1 for the real network).
    pub fn width_divisor(&self) -> usize {
        64 / self.convs[0].weight.dims()[0].max(1)
    }

    /// Layer `index`'s conv (weight and bias) trains or not (a no-op for pools).
    pub fn set_trainable(mut self, index: usize, trainable: bool) -> Self {
        if let Some((_, Op::Conv { .. })) = VGG16_LAYERS.get(index) {
            let ordinal = Self::convs_before(index);
            let conv = self.convs.remove(ordinal);
            self.convs.insert(ordinal, conv.set_require_grad(trainable));
        }
        self
    }

    /// Layer `index`'s weights under torchvision's keys (none for pools).
    pub fn layer_weights(&self, index: usize) -> Vec<(String, TensorData)> {
        let Some((_, Op::Conv { torch_index, .. })) = VGG16_LAYERS.get(index) else {
            return Vec::new();
        };
        let conv = &self.convs[Self::convs_before(index)];
        let mut out = vec![(
            format!("features.{torch_index}.weight"),
            conv.weight.val().into_data(),
        )];
        if let Some(b) = &conv.bias {
            out.push((format!("features.{torch_index}.bias"), b.val().into_data()));
        }
        out
    }

    /// Re-initialise layer `index` (a no-op for pools).
    pub fn reinitialize(&mut self, index: usize) {
        if let Some((_, Op::Conv { .. })) = VGG16_LAYERS.get(index) {
            let ordinal = VGG16_LAYERS[..index]
                .iter()
                .filter(|(_, op)| matches!(op, Op::Conv { .. }))
                .count();
            self.convs[ordinal] = crate::reinitialized(&self.convs[ordinal]);
        }
    }

    /// Run layers `start..=end` of [`VGG16_LAYERS`] on `x` (the input of layer `start`).
    /// `run(x, 0, layer_index("block5_conv3"))` runs the network from the image.
    ///
    /// On the CPU (`flex`) and outside autodiff, the layers run on the fast path
    /// ([`run_fast`](Self::run_fast)); otherwise on burn's ops ([`run_burn`](Self::run_burn)).
    pub fn run(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        // Device equality ignores autodiff, and `is_require_grad` is true only for leaves: check
        // the device's autodiff flag too, so a tracked non-leaf never leaves the graph.
        let fast = x.device() == Device::flex()
            && !x.device().is_autodiff()
            && !x.is_require_grad()
            && !self.convs.iter().any(|c| c.weight.val().is_require_grad());
        match fast {
            true => self
                .run_fast(x.clone(), start, end)
                .unwrap_or_else(|| self.run_burn(x, start, end)),
            false => self.run_burn(x, start, end),
        }
    }

    /// [`run`](Self::run) on burn's conv, ReLU and pooling ops (any device, autodiff).
    pub fn run_burn(&self, mut x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        let mut conv_index = Self::convs_before(start);
        for (_, op) in &VGG16_LAYERS[start..=end] {
            x = match op {
                Op::Conv { .. } => {
                    conv_index += 1;
                    relu(self.convs[conv_index - 1].forward(x))
                }
                Op::Pool => max_pool2d(x, MaxPoolOptions::new([2, 2])),
            };
        }
        x
    }

    /// [`run`](Self::run) on the host with our 3x3 convolutions (direct or Winograd per layer,
    /// bias and ReLU fused: [`crate::conv3x3`]) and pooling, channels-last, image by image. `None`
    /// when a tensor cannot be read back as f32 (then [`run`](Self::run) falls back to burn).
    pub fn run_fast(&self, x: Tensor<4>, start: usize, end: usize) -> Option<Tensor<4>> {
        let [n, c0, h0, w0] = x.dims();
        if n == 0 {
            return None;
        }
        let device = x.device();
        let host = |t: Tensor<4>| t.into_data().convert::<f32>().try_into_vec::<f32>().ok();
        let input = host(x)?;
        let mut conv_index = Self::convs_before(start);
        let mut layers = Vec::new();
        for (_, op) in &VGG16_LAYERS[start..=end] {
            layers.push(match op {
                Op::Conv { .. } => {
                    let conv = &self.convs[conv_index];
                    conv_index += 1;
                    let [k, c, _, _] = conv.weight.dims();
                    let weight = conv
                        .weight
                        .val()
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .ok()?;
                    let bias = match &conv.bias {
                        Some(b) => b
                            .val()
                            .into_data()
                            .convert::<f32>()
                            .try_into_vec::<f32>()
                            .ok()?,
                        None => vec![0.0; k],
                    };
                    Some(crate::conv3x3::Conv3x3::new(&weight, &bias, k, c))
                }
                Op::Pool => None,
            });
        }
        // Image by image, the images in parallel: one image's activations stay in cache from
        // layer to layer (a whole batch's would not), and each layer still splits its tiles
        // over the threads that are free (a batch of one image uses them all).
        let images: Vec<(Vec<f32>, [usize; 3])> = input
            .par_chunks(c0 * h0 * w0)
            .map(|image| {
                let (mut c, mut h, mut w) = (c0, h0, w0);
                let mut y = crate::winograd::to_channels_last(image, 1, c, h, w);
                for layer in &layers {
                    y = match layer {
                        Some(conv) => {
                            c = conv.out_channels();
                            conv.forward_relu(y, 1, h, w)
                        }
                        None => {
                            let pooled = crate::winograd::max_pool_2x2(&y, 1, h, w, c);
                            (h, w) = (h / 2, w / 2);
                            pooled
                        }
                    };
                }
                (
                    crate::winograd::to_channels_first(&y, 1, h, w, c),
                    [c, h, w],
                )
            })
            .collect();
        let [c, h, w] = images.first()?.1;
        let mut out = Vec::with_capacity(n * c * h * w);
        for (y, _) in &images {
            out.extend_from_slice(y);
        }
        Some(Tensor::from_data(
            TensorData::new(out, [n, c, h, w]),
            &device,
        ))
    }

    fn convs_before(start: usize) -> usize {
        VGG16_LAYERS[..start]
            .iter()
            .filter(|(_, op)| matches!(op, Op::Conv { .. }))
            .count()
    }
}
