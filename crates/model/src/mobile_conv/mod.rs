//! Depthwise and pointwise (1x1) convolutions with their own CPU kernels and backward passes —
//! the two convolutions MobileNet-style networks (EfficientNet-Lite0) are made of — on
//! channels-last (NHWC) activations, where a 1x1 conv over a whole batch is one matrix product
//! and a depthwise conv runs along contiguous channels.
//!
//! burn's generic backward runs a depthwise conv's weight gradient as one small conv per channel
//! (1,152 of them in EfficientNet's last blocks) and a 1x1 conv's through im2col on transposed
//! copies; a fine-tuning step spent most of its time there. These ops are a burn backend
//! extension ([`MobileConvOps`]): on flex they run [`kernels`] (direct loops for depthwise, one
//! `gemm` per sample for pointwise), under autodiff they record a backward step that calls the
//! matching gradient kernels, and [`depthwise_conv`] / [`pointwise_conv`] fall back to burn's
//! `conv2d` on any other device (CUDA), so results never depend on which path ran.

mod autodiff;
pub mod kernels;

use burn::backend::flex::FlexTensor;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Device, Tensor, TensorData};

use kernels::Depthwise;

/// Depthwise and pointwise convolutions with bias, and their gradients, on channels-last
/// activations [N, H, W, C]. Padding is (top, left, bottom, right) zeros.
#[backend_extension(Flex, Autodiff)]
pub trait MobileConvOps: Backend {
    /// x [N, H, W, C], weight [C, 1, k, k], bias [C] → [N, H', W', C], then ReLU6 when `relu6`.
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FloatTensor<Self>;
    /// ∂L/∂x of [`depthwise_conv`](Self::depthwise_conv) (x only gives the shape).
    fn depthwise_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;
    /// ∂L/∂weight of [`depthwise_conv`](Self::depthwise_conv).
    fn depthwise_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
    ) -> FloatTensor<Self>;
    /// x [N, H, W, Ci], weight [Co, Ci, 1, 1], bias [Co] → [N, H, W, Co], then ReLU6 when
    /// `relu6`.
    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu6: bool,
    ) -> FloatTensor<Self>;
    /// ∂L/∂x of [`pointwise_conv`](Self::pointwise_conv).
    fn pointwise_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// ∂L/∂weight of [`pointwise_conv`](Self::pointwise_conv).
    fn pointwise_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// ∂L/∂bias of either conv: ∂L/∂y [N, H, W, C] summed to [C].
    fn channel_sums(grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// ∂L/∂(pre-activation) of a fused ReLU6, from ∂L/∂output and the output: the gradient
    /// passes where 0 < output < 6.
    fn relu6_grad(grad: FloatTensor<Self>, output: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The tensor made contiguous (a no-op when it already is), to read with [`values`].
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 values of a tensor from [`contiguous`].
fn values(t: &FlexTensor) -> &[f32] {
    match t.as_slice::<f32>() {
        Some(v) => v,
        None => panic!("mobile_conv: expected contiguous f32, got {:?}", t.dtype()),
    }
}

fn flex_tensor(v: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape.into()))
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn depthwise_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: usize,
    padding: [usize; 4],
) -> Depthwise {
    Depthwise::new(dims4(x), dims4(weight)[2], stride, padding)
}

/// (pixels of the batch, ci, co) of a pointwise conv.
fn pointwise_sizes(x: &FlexTensor, weight: &FlexTensor) -> (usize, usize, usize) {
    let [n, h, w, ci] = dims4(x);
    (n * h * w, ci, dims4(weight)[0])
}

impl MobileConvOps for Flex {
    fn depthwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FlexTensor {
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        let g = depthwise_geometry(&x, &weight, stride, padding);
        let mut y = kernels::depthwise_forward(&g, values(&x), values(&weight), values(&bias));
        if relu6 {
            kernels::relu6(&mut y);
        }
        flex_tensor(y, [g.n, g.out_h, g.out_w, g.c])
    }

    fn depthwise_input_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        let (weight, grad) = (contiguous(weight), contiguous(grad));
        let g = depthwise_geometry(&x, &weight, stride, padding);
        let dx = kernels::depthwise_input_grad(&g, values(&weight), values(&grad));
        flex_tensor(dx, dims4(&x))
    }

    fn depthwise_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: usize,
        padding: [usize; 4],
    ) -> FlexTensor {
        let (x, grad) = (contiguous(x), contiguous(grad));
        let g = depthwise_geometry(&x, &weight, stride, padding);
        let dw = kernels::depthwise_weight_grad(&g, values(&x), values(&grad));
        flex_tensor(dw, dims4(&weight))
    }

    fn pointwise_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        relu6: bool,
    ) -> FlexTensor {
        let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
        let sizes @ (_, _, co) = pointwise_sizes(&x, &weight);
        let [n, h, w, _] = dims4(&x);
        let mut y = kernels::pointwise_forward(sizes, values(&x), values(&weight), values(&bias));
        if relu6 {
            kernels::relu6(&mut y);
        }
        flex_tensor(y, [n, h, w, co])
    }

    fn pointwise_input_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (weight, grad) = (contiguous(weight), contiguous(grad));
        let sizes = pointwise_sizes(&x, &weight);
        let dx = kernels::pointwise_input_grad(sizes, values(&weight), values(&grad));
        flex_tensor(dx, dims4(&x))
    }

    fn pointwise_weight_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (x, grad) = (contiguous(x), contiguous(grad));
        let sizes = pointwise_sizes(&x, &weight);
        let dw = kernels::pointwise_weight_grad(sizes, values(&x), values(&grad));
        flex_tensor(dw, dims4(&weight))
    }

    fn channel_sums(grad: FlexTensor) -> FlexTensor {
        let grad = contiguous(grad);
        let c = dims4(&grad)[3];
        flex_tensor(kernels::channel_sums(c, values(&grad)), [c])
    }

    fn relu6_grad(grad: FlexTensor, output: FlexTensor) -> FlexTensor {
        let (grad, output) = (contiguous(grad), contiguous(output));
        let masked = values(&grad)
            .iter()
            .zip(values(&output))
            .map(|(&g, &y)| if y > 0.0 && y < 6.0 { g } else { 0.0 })
            .collect();
        flex_tensor(masked, dims4(&grad))
    }
}

/// Whether the kernels here can run: the flex device, every tensor f32.
fn on_flex(x: &Tensor<4>, weight: &Tensor<4>, bias: &Tensor<1>) -> bool {
    x.device().inner() == Device::flex()
        && [x.dtype(), weight.dtype(), bias.dtype()] == [DType::F32; 3]
}

/// NHWC → NCHW and back, for burn's own `conv2d` on other devices.
fn channels_first(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 3, 1, 2])
}

fn channels_last(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 2, 3, 1])
}

/// Depthwise k×k conv with bias and zero padding (top, left, bottom, right) on x [N, H, W, C],
/// then ReLU6 (clamp to [0, 6]) when `relu6`; differentiable. Off flex it is burn's `conv2d`.
pub fn depthwise_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: [usize; 4],
    relu6: bool,
) -> Tensor<4> {
    if on_flex(&x, &weight, &bias) {
        return Tensor::from_dispatch(Dispatch::depthwise_conv(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            stride,
            padding,
            relu6,
        ));
    }
    depthwise_conv_burn(x, weight, bias, stride, padding, relu6)
}

/// [`depthwise_conv`] on burn's `conv2d` (channels-first, permuted there and back): what runs
/// off flex.
fn depthwise_conv_burn(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: [usize; 4],
    relu6: bool,
) -> Tensor<4> {
    let [top, left, bottom, right] = padding;
    let channels = weight.dims()[0];
    let options = ConvOptions::new_with_padding(
        [stride; 2],
        [(top, bottom), (left, right)],
        [1; 2],
        channels,
    );
    let y = burn::tensor::module::conv2d(channels_first(x), weight, Some(bias), options);
    channels_last(activation(y, relu6))
}

/// 1x1 conv with bias on x [N, H, W, Ci], then ReLU6 when `relu6`; differentiable. Off flex it
/// is burn's `conv2d`.
pub fn pointwise_conv(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, relu6: bool) -> Tensor<4> {
    if on_flex(&x, &weight, &bias) {
        return Tensor::from_dispatch(Dispatch::pointwise_conv(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            relu6,
        ));
    }
    pointwise_conv_burn(x, weight, bias, relu6)
}

/// [`pointwise_conv`] on burn's `conv2d` (see [`depthwise_conv_burn`]).
fn pointwise_conv_burn(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, relu6: bool) -> Tensor<4> {
    let options = ConvOptions::new([1; 2], [0; 2], [1; 2], 1);
    let y = burn::tensor::module::conv2d(channels_first(x), weight, Some(bias), options);
    channels_last(activation(y, relu6))
}

/// ReLU6 (clamp to [0, 6]) when `relu6`, on burn's ops: the activation beside burn's conv2d.
pub(crate) fn activation(y: Tensor<4>, relu6: bool) -> Tensor<4> {
    if relu6 {
        y.clamp(0.0, 6.0)
    } else {
        y
    }
}
