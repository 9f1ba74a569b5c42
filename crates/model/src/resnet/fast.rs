//! A CPU fast path for ResNet-50/101/152 (inference, float32, BatchNorm folded): image by
//! image, the images in parallel (one image's activations stay in cache from conv to conv),
//! channels-last ([H, W, C]) on the host from the stem to the last block. Each 1x1 conv is one
//! GEMM over the pixels on the image's thread, its bias, ReLU and (for a block's last conv) the
//! shortcut added in one pass after it ([`pointwise_forward_serial`]); each stride-1 3x3 conv
//! runs on the VGG path's kernels ([`Conv3x3`]: Winograd F(2x2, 3x3) or direct, bias and ReLU
//! fused); the stem's 7x7 and the stride-2 3x3 convs gather their patches (im2col) into one
//! GEMM. The weights are read (and the Winograd filters transformed) once per call.
//! [`ResNet::run`](super::ResNet::run) takes this path on `flex` outside autodiff.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{Block, ResNet};
use crate::bn_conv::BnConv;
use crate::conv3x3::Conv3x3;
use crate::mobile_conv::kernels::pointwise_forward_serial;
use crate::winograd::{to_channels_first, to_channels_last};

/// A tensor's values on the host, or `None` when they cannot be read as f32.
fn host<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

/// A folded conv's weight [K, C, kh, kw] and bias [K] on the host.
fn weights(conv: &BnConv) -> Option<(Vec<f32>, Vec<f32>, [usize; 4])> {
    let (weight, bias) = conv.weight_and_bias();
    let dims = weight.dims();
    Some((host(weight)?, host(bias)?, dims))
}

/// A batch of activations on the host, channels-last.
struct Nhwc {
    values: Vec<f32>,
    n: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl Nhwc {
    fn from_tensor(x: Tensor<4>) -> Option<Self> {
        let [n, c, h, w] = x.dims();
        let values = to_channels_last(&host(x)?, n, c, h, w);
        Some(Self { values, n, h, w, c })
    }

    fn into_tensor(self, device: &burn::tensor::Device) -> Tensor<4> {
        let Self { values, n, h, w, c } = self;
        let values = to_channels_first(&values, n, h, w, c);
        Tensor::from_data(TensorData::new(values, [n, c, h, w]), device)
    }

    /// Every second row and column (a 1x1 conv's stride 2).
    fn subsampled(&self) -> Self {
        let (h, w) = (self.h.div_ceil(2), self.w.div_ceil(2));
        let c = self.c;
        let mut values = Vec::with_capacity(self.n * h * w * c);
        for image in self.values.chunks(self.h * self.w * c) {
            for y in 0..h {
                for x in 0..w {
                    let at = ((2 * y) * self.w + 2 * x) * c;
                    values.extend_from_slice(&image[at..at + c]);
                }
            }
        }
        Self {
            values,
            h,
            w,
            ..*self
        }
    }

    /// `conv` (im2col: each image's patches gathered into rows, channels fastest, then one
    /// GEMM), then ReLU.
    fn conv_relu(&self, conv: &Im2col) -> Self {
        let (k, stride, c, k_out) = (conv.k, conv.stride, self.c, conv.k_out);
        let pad = k / 2;
        let h = (self.h + 2 * pad - k) / stride + 1;
        let w = (self.w + 2 * pad - k) / stride + 1;
        let patch = k * k * c;
        let mut values = Vec::with_capacity(self.n * h * w * k_out);
        for image in self.values.chunks(self.h * self.w * c) {
            let mut rows = vec![0.0f32; h * w * patch];
            rows.par_chunks_mut(w * patch)
                .enumerate()
                .for_each(|(oy, row)| {
                    for ox in 0..w {
                        let cell = &mut row[ox * patch..(ox + 1) * patch];
                        for y in 0..k {
                            let iy = (oy * stride + y) as isize - pad as isize;
                            if iy < 0 || iy >= self.h as isize {
                                continue;
                            }
                            for x in 0..k {
                                let ix = (ox * stride + x) as isize - pad as isize;
                                if ix < 0 || ix >= self.w as isize {
                                    continue;
                                }
                                let from = (iy as usize * self.w + ix as usize) * c;
                                cell[(y * k + x) * c..][..c]
                                    .copy_from_slice(&image[from..from + c]);
                            }
                        }
                    }
                });
            let dims = (h * w, patch, k_out);
            let y = pointwise_forward_serial(dims, &rows, &conv.filters, &conv.bias, true, None);
            values.extend_from_slice(&y);
        }
        Self {
            values,
            h,
            w,
            c: k_out,
            n: self.n,
        }
    }

    /// Max pooling 3x3, stride 2, padding 1 (torchvision's stem; padding never wins).
    fn max_pool_3x3_s2(&self) -> Self {
        let (h, w, c) = ((self.h + 2 - 3) / 2 + 1, (self.w + 2 - 3) / 2 + 1, self.c);
        let mut values = vec![f32::NEG_INFINITY; self.n * h * w * c];
        values
            .par_chunks_mut(h * w * c)
            .zip(self.values.par_chunks(self.h * self.w * c))
            .for_each(|(out, image)| {
                for oy in 0..h {
                    for ox in 0..w {
                        let cell = &mut out[(oy * w + ox) * c..][..c];
                        for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(self.h) {
                            for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(self.w) {
                                let from = &image[(iy * self.w + ix) * c..][..c];
                                cell.iter_mut().zip(from).for_each(|(m, v)| *m = m.max(*v));
                            }
                        }
                    }
                }
            });
        Self {
            values,
            h,
            w,
            ..*self
        }
    }

    /// A 1x1 conv (weight [K, C, 1, 1], bias [K]), then ReLU when `relu`, with `residual`
    /// added before it; one GEMM on the calling thread (the images run in parallel).
    fn pointwise(
        &self,
        (weight, bias, dims): &HostConv,
        relu: bool,
        residual: Option<&Nhwc>,
    ) -> Self {
        let rows = self.n * self.h * self.w;
        let values = pointwise_forward_serial(
            (rows, self.c, dims[0]),
            &self.values,
            weight,
            bias,
            relu,
            residual.map(|r| r.values.as_slice()),
        );
        Self {
            values,
            c: dims[0],
            ..*self
        }
    }
}

/// A conv's host weights: (weight [K, C, kh, kw], bias [K], dims).
type HostConv = (Vec<f32>, Vec<f32>, [usize; 4]);

/// A k×k conv as im2col uses it: the filters laid out [K, k, k, C] (the patches' order).
struct Im2col {
    filters: Vec<f32>,
    bias: Vec<f32>,
    k_out: usize,
    k: usize,
    stride: usize,
}

impl Im2col {
    fn new((weight, bias, [k_out, c, k, _]): HostConv, stride: usize) -> Self {
        let mut filters = vec![0.0f32; weight.len()];
        for o in 0..k_out {
            for ci in 0..c {
                for y in 0..k {
                    for x in 0..k {
                        filters[((o * k + y) * k + x) * c + ci] =
                            weight[((o * c + ci) * k + y) * k + x];
                    }
                }
            }
        }
        Self {
            filters,
            bias,
            k_out,
            k,
            stride,
        }
    }
}

/// A bottleneck's weights on the host, read once per call for every image.
struct FastBlock {
    conv1: HostConv,
    /// The 3x3: on the VGG kernels (stride 1) or im2col (stride 2).
    conv2: Result<Conv3x3, Im2col>,
    conv3: HostConv,
    downsample: Option<(HostConv, usize)>,
}

impl FastBlock {
    fn new(block: &Block) -> Option<Self> {
        let conv2 = weights(&block.conv2)?;
        let stride = block.conv2.conv.stride[0];
        let conv2 = if stride == 1 {
            let [k, c, _, _] = conv2.2;
            Ok(Conv3x3::new(&conv2.0, &conv2.1, k, c))
        } else {
            Err(Im2col::new(conv2, stride))
        };
        let downsample = match &block.downsample {
            Some(d) => Some((weights(d)?, d.conv.stride[0])),
            None => None,
        };
        Some(Self {
            conv1: weights(&block.conv1)?,
            conv2,
            conv3: weights(block.conv3.as_ref()?)?,
            downsample,
        })
    }

    /// The bottleneck on one image (or a batch).
    fn forward(&self, x: Nhwc) -> Nhwc {
        let y = x.pointwise(&self.conv1, true, None);
        let y = match &self.conv2 {
            Ok(conv) => {
                let values = conv.forward_relu(y.values, y.n, y.h, y.w);
                Nhwc {
                    values,
                    c: conv.out_channels(),
                    ..y
                }
            }
            Err(conv) => y.conv_relu(conv),
        };
        let shortcut = match &self.downsample {
            Some((down, stride)) => {
                let input = if *stride == 2 { x.subsampled() } else { x };
                input.pointwise(down, false, None)
            }
            None => x,
        };
        // conv3, its bias, the shortcut and the ReLU in one pass after the product.
        y.pointwise(&self.conv3, true, Some(&shortcut))
    }
}

impl ResNet {
    /// Whether [`run`](Self::run) can take the fast path for layers `start..=end`: a
    /// bottleneck network, a float32 input on `flex` outside autodiff, and those layers folded
    /// and frozen (a fine-tuning run's frozen part below its cut takes it too).
    pub(super) fn fast_path_applies(&self, x: &Tensor<4>, start: usize, end: usize) -> bool {
        let frozen = |c: &BnConv| c.bn.is_none() && !c.conv.weight.val().is_require_grad();
        let blocks = match end.checked_sub(2) {
            Some(last) if last < self.blocks.len() => &self.blocks[start.max(2) - 2..=last],
            Some(_) => return false,
            None => &self.blocks[..0],
        };
        x.device() == burn::tensor::Device::flex()
            && x.dtype() == burn::tensor::DType::F32
            && !x.device().is_autodiff()
            && !x.is_require_grad()
            && self.blocks.first().is_some_and(|b| b.conv3.is_some())
            && (start > 0 || frozen(&self.conv1))
            && blocks.iter().all(|b| {
                [
                    Some(&b.conv1),
                    Some(&b.conv2),
                    b.conv3.as_ref(),
                    b.downsample.as_ref(),
                ]
                .into_iter()
                .flatten()
                .all(frozen)
            })
    }

    /// Layers `start..=end` on the host (`x` is the input of layer `start`): the stem conv
    /// and its max pool, then the blocks. Image by image, the images in parallel (as VGG16's
    /// fast path): one image's activations stay in cache from conv to conv.
    pub(super) fn run_fast(&self, x: Tensor<4>, start: usize, end: usize) -> Option<Tensor<4>> {
        let device = x.device();
        let stem = match start {
            0 => Some(Im2col::new(
                weights(&self.conv1)?,
                self.conv1.conv.stride[0],
            )),
            _ => None,
        };
        let blocks = match end.checked_sub(2) {
            Some(last) => self.blocks[start.max(2) - 2..=last]
                .iter()
                .map(FastBlock::new)
                .collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        let all = Nhwc::from_tensor(x)?;
        let plane = all.h * all.w * all.c;
        let images: Vec<Nhwc> = all
            .values
            .par_chunks(plane.max(1))
            .map(|image| {
                let mut y = Nhwc {
                    values: image.to_vec(),
                    n: 1,
                    ..all
                };
                for index in start..=end {
                    y = match index {
                        0 => match &stem {
                            Some(stem) => y.conv_relu(stem),
                            None => y,
                        },
                        1 => y.max_pool_3x3_s2(),
                        i => blocks[i - start.max(2)].forward(y),
                    };
                }
                y
            })
            .collect();
        let first = images.first()?;
        let (h, w, c) = (first.h, first.w, first.c);
        let mut values = Vec::with_capacity(all.n * h * w * c);
        for image in &images {
            values.extend_from_slice(&image.values);
        }
        Some(
            Nhwc {
                values,
                n: all.n,
                h,
                w,
                c,
            }
            .into_tensor(&device),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Depth, ResNet};
    use burn::tensor::{Device, Distribution, Tensor};

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn fast_path_matches_burn_and_autodiff_takes_burn() {
        let device = Device::flex();
        device.seed(3);
        let net = ResNet::random(Depth::of(50).unwrap(), None, &device);
        // Odd sizes: the stride-2 subsampling keeps the last row and column (ceil).
        let x = Tensor::<4>::random([2, 3, 70, 98], Distribution::Normal(0.0, 1.0), &device);
        let last = net.blocks.len() + 1;
        assert!(net.fast_path_applies(&x, 0, last));
        for (start, end) in [(0, last), (0, 5), (6, 9), (2, 2), (0, 0), (0, 1), (1, 1)] {
            let input = match start {
                0 => x.clone(),
                s => net.run_burn(x.clone(), 0, s - 1),
            };
            let fast = values(net.run(input.clone(), start, end));
            let reference = values(net.run_burn(input, start, end));
            let scale = reference.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
            let err = fast
                .iter()
                .zip(&reference)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(err < 1e-4, "layers {start}..={end}: error {err}");
        }
        // A float64 input (how `train explain` runs a ResNet) takes burn's ops too.
        let x64 = x.clone().cast(burn::tensor::FloatDType::F64);
        assert!(!net.fast_path_applies(&x64, 0, 3));
        let y64 = crate::in_float64(net.clone()).run(x64, 0, 3);
        assert_eq!(y64.dtype(), burn::tensor::DType::F64);
        // Under autodiff the burn ops run, so gradients reach the input.
        let leaf = x.autodiff().require_grad();
        assert!(!net.fast_path_applies(&leaf, 0, 4));
        let grads = net.run(leaf.clone(), 0, 4).sum().backward();
        assert!(leaf.grad(&grads).is_some());
        // A fine-tuning network (BatchNorm kept beside trained convs) takes burn's ops too.
        let trained = ResNet::random(Depth::of(50).unwrap(), Some(15), &device);
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        assert!(!trained.fast_path_applies(&x, 0, 17));
        // …but its frozen part below the cut does.
        assert!(trained.fast_path_applies(&x, 0, 14));
    }
}
