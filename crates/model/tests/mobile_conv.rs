//! The depthwise and pointwise ops with their own kernels and backward passes (channels-last)
//! equal burn's own `conv2d` (channels-first; forward, and the gradients of x, weight and bias)
//! on flex, for the shapes
//! EfficientNet uses and awkward ones: strides 1 and 2, TF "SAME" asymmetric padding, odd sizes,
//! a single image, a batch smaller and larger than the thread pool; with and without the fused
//! ReLU6 (burn's `clamp(0, 6)` after the conv).

use burn::backend::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use model::mobile_conv::{depthwise_conv, pointwise_conv};

/// Seeded values in [-1, 1).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(seed: u64, shape: [usize; D], device: &Device) -> Tensor<D> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(values(seed, len), shape), device)
}

fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

fn assert_close(what: &str, ours: &[f32], reference: &[f32]) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 2e-5 * scale,
        "{what}: largest difference {worst} (values up to {scale})"
    );
}

type Conv = dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>;

/// Output, ∂x, ∂weight and ∂bias of `conv` for loss = Σ y ⊙ r.
fn run(conv: &Conv, shapes: ([usize; 4], [usize; 4]), seed: u64) -> [Vec<f32>; 4] {
    let device = Device::flex().autodiff();
    let (x_shape, w_shape) = shapes;
    let x = tensor(seed, x_shape, &device).require_grad();
    let w = tensor(seed + 1, w_shape, &device).require_grad();
    let b = tensor(seed + 2, [w_shape[0]], &device).require_grad();
    let y = conv(x.clone(), w.clone(), b.clone());
    let r = tensor(seed + 3, y.dims(), &device);
    let grads = (y.clone() * r).sum().backward();
    let grad = |t: &dyn Fn(&burn::tensor::Gradients) -> Vec<f32>| t(&grads);
    [
        flat(y),
        grad(&|g| flat(x.grad(g).expect("x gradient"))),
        grad(&|g| flat(w.grad(g).expect("weight gradient"))),
        grad(&|g| flat(b.grad(g).expect("bias gradient"))),
    ]
}

fn compare(name: &str, ours: &Conv, burn_conv: &Conv, shapes: ([usize; 4], [usize; 4])) {
    let a = run(ours, shapes, 7);
    let b = run(burn_conv, shapes, 7);
    for (i, part) in ["output", "x gradient", "weight gradient", "bias gradient"]
        .iter()
        .enumerate()
    {
        assert_close(&format!("{name} {part}"), &a[i], &b[i]);
    }
}

fn activation(y: Tensor<4>, relu6: bool) -> Tensor<4> {
    if relu6 {
        y.clamp(0.0, 6.0)
    } else {
        y
    }
}

/// TF "SAME" padding (top, left, bottom, right) for a square kernel.
fn same(h: usize, w: usize, k: usize, s: usize) -> [usize; 4] {
    let total = |i: usize| ((i.div_ceil(s) - 1) * s + k).saturating_sub(i);
    let (th, tw) = (total(h), total(w));
    [th / 2, tw / 2, th - th / 2, tw - tw / 2]
}

#[test]
fn depthwise_equals_burn_conv2d_forward_and_backward() {
    // (batch, channels, h, w, kernel, stride, padding)
    let cases = [
        (3, 16, 7, 7, 5, 1, same(7, 7, 5, 1)),
        (1, 8, 14, 14, 5, 2, same(14, 14, 5, 2)),
        (5, 6, 9, 11, 3, 2, same(9, 11, 3, 2)),
        (2, 4, 10, 6, 3, 1, same(10, 6, 3, 1)),
        (2, 3, 8, 8, 3, 2, [0, 0, 0, 0]),
        (4, 5, 6, 7, 5, 1, [2, 1, 0, 3]),
    ];
    for ((n, c, h, w, k, s, padding), relu6) in
        cases.into_iter().zip([true, false].into_iter().cycle())
    {
        let ours = move |x: Tensor<4>, wt, b| {
            let y = depthwise_conv(x.permute([0, 2, 3, 1]), wt, b, s, padding, relu6);
            y.permute([0, 3, 1, 2])
        };
        let [top, left, bottom, right] = padding;
        let burn_conv = move |x, wt, b| {
            let options =
                ConvOptions::new_with_padding([s; 2], [(top, bottom), (left, right)], [1; 2], c);
            activation(burn::tensor::module::conv2d(x, wt, Some(b), options), relu6)
        };
        compare(
            &format!("depthwise n{n} c{c} {h}x{w} k{k} s{s} pad{padding:?} relu6 {relu6}"),
            &ours,
            &burn_conv,
            ([n, c, h, w], [c, 1, k, k]),
        );
    }
}

#[test]
fn pointwise_equals_burn_conv2d_forward_and_backward() {
    // (batch, in, out, h, w)
    let cases = [
        (3, 24, 40, 7, 7),
        (1, 16, 8, 5, 9),
        (6, 7, 33, 3, 4),
        (2, 64, 96, 14, 14),
        // 272 pixels: one product per sample instead of the batch side by side.
        (3, 8, 12, 17, 16),
        (1, 5, 9, 20, 20),
    ];
    for ((n, ci, co, h, w), relu6) in cases.into_iter().zip([true, false].into_iter().cycle()) {
        let burn_conv = move |x, wt, b| {
            let options = ConvOptions::new([1; 2], [0; 2], [1; 2], 1);
            activation(burn::tensor::module::conv2d(x, wt, Some(b), options), relu6)
        };
        let ours = move |x: Tensor<4>, wt, b| {
            pointwise_conv(x.permute([0, 2, 3, 1]), wt, b, relu6).permute([0, 3, 1, 2])
        };
        compare(
            &format!("pointwise n{n} {ci}->{co} {h}x{w} relu6 {relu6}"),
            &ours,
            &burn_conv,
            ([n, ci, h, w], [co, ci, 1, 1]),
        );
    }
}

#[test]
fn outside_autodiff_the_ops_give_the_same_values() {
    let device = Device::flex();
    let x = tensor(3, [2, 9, 9, 6], &device);
    let w = tensor(4, [6, 1, 3, 3], &device);
    let b = tensor(5, [6], &device);
    let plain = flat(depthwise_conv(x, w, b, 2, [0, 0, 1, 1], true));
    let tracked = run(
        &|x, w, b| depthwise_conv(x, w, b, 2, [0, 0, 1, 1], true),
        ([2, 9, 9, 6], [6, 1, 3, 3]),
        3,
    );
    assert_close("plain vs autodiff output", &plain, &tracked[0]);
}

/// A direct f64 depthwise convolution (NCHW, zero padding (top, left, bottom, right)) and its
/// gradients for loss = Σ y ⊙ r: the reference written from the definition, no library.
#[allow(clippy::type_complexity)]
fn depthwise_f64(
    (x, [n, c, h, w]): (&[f32], [usize; 4]),
    (weight, k): (&[f32], usize),
    bias: &[f32],
    stride: usize,
    [top, left, bottom, right]: [usize; 4],
    r: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (oh_n, ow_n) = (
        (h + top + bottom - k) / stride + 1,
        (w + left + right - k) / stride + 1,
    );
    let mut y = vec![0f64; n * c * oh_n * ow_n];
    let mut dx = vec![0f64; n * c * h * w];
    let mut dw = vec![0f64; c * k * k];
    for s in 0..n {
        for ch in 0..c {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let out = ((s * c + ch) * oh_n + oh) * ow_n + ow;
                    let mut acc = bias[ch] as f64;
                    for kh in 0..k {
                        for kw in 0..k {
                            let (py, px) = (oh * stride + kh, ow * stride + kw);
                            if py < top || px < left || py - top >= h || px - left >= w {
                                continue;
                            }
                            let at = ((s * c + ch) * h + py - top) * w + px - left;
                            let wv = weight[(ch * k + kh) * k + kw] as f64;
                            acc += wv * x[at] as f64;
                            dx[at] += wv * r[out] as f64;
                            dw[(ch * k + kh) * k + kw] += x[at] as f64 * r[out] as f64;
                        }
                    }
                    y[out] = acc;
                }
            }
        }
    }
    (y, dx, dw)
}

/// [`assert_close_f64`] on an op's output, x gradient and weight gradient, in that order.
fn assert_output_and_grads_close(name: &str, ours: &[Vec<f32>; 3], reference: [&[f64]; 3]) {
    for ((what, ours), reference) in ["output", "x gradient", "weight gradient"]
        .iter()
        .zip(ours)
        .zip(reference)
    {
        assert_close_f64(&format!("{name} {what}"), ours, reference);
    }
}

fn assert_close_f64(what: &str, ours: &[f32], reference: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= 1e-5 * scale,
        "{what}: largest difference {worst} (values up to {scale})"
    );
}

#[test]
fn depthwise_equals_a_direct_f64_convolution_on_odd_sizes() {
    let device = Device::flex().autodiff();
    for (n, c, h, w, k, s, padding) in [
        (2, 5, 9, 11, 3, 2, same(9, 11, 3, 2)),
        (1, 7, 13, 7, 5, 1, same(13, 7, 5, 1)),
        (3, 3, 6, 5, 5, 2, [1, 2, 3, 0]),
    ] {
        let x = tensor(11, [n, c, h, w], &device).require_grad();
        let wt = tensor(12, [c, 1, k, k], &device).require_grad();
        let b = tensor(13, [c], &device);
        let y = depthwise_conv(
            x.clone().permute([0, 2, 3, 1]),
            wt.clone(),
            b.clone(),
            s,
            padding,
            false,
        )
        .permute([0, 3, 1, 2]);
        let r = tensor(14, y.dims(), &device);
        let grads = (y.clone() * r.clone()).sum().backward();
        let (y64, dx64, dw64) = depthwise_f64(
            (&flat(x.clone()), [n, c, h, w]),
            (&flat(wt.clone()), k),
            &flat(b),
            s,
            padding,
            &flat(r),
        );
        let name = format!("depthwise n{n} c{c} {h}x{w} k{k} s{s} pad{padding:?}");
        let ours = [y, x.grad(&grads).unwrap(), wt.grad(&grads).unwrap()].map(flat);
        assert_output_and_grads_close(&name, &ours, [&y64, &dx64, &dw64]);
    }
}

#[test]
fn pointwise_equals_a_direct_f64_product_on_odd_sizes() {
    let device = Device::flex().autodiff();
    for (n, ci, co, h, w) in [(3, 7, 5, 3, 5), (1, 13, 9, 17, 16)] {
        let x = tensor(21, [n, ci, h, w], &device).require_grad();
        let wt = tensor(22, [co, ci, 1, 1], &device).require_grad();
        let b = tensor(23, [co], &device);
        let y = pointwise_conv(
            x.clone().permute([0, 2, 3, 1]),
            wt.clone(),
            b.clone(),
            false,
        )
        .permute([0, 3, 1, 2]);
        let r = tensor(24, y.dims(), &device);
        let grads = (y.clone() * r.clone()).sum().backward();
        let (xv, wv, bv, rv) = (flat(x.clone()), flat(wt.clone()), flat(b), flat(r));
        let p = h * w;
        let (mut y64, mut dx64, mut dw64) = (
            vec![0f64; n * co * p],
            vec![0f64; n * ci * p],
            vec![0f64; co * ci],
        );
        for s in 0..n {
            for o in 0..co {
                for q in 0..p {
                    let out = (s * co + o) * p + q;
                    y64[out] = bv[o] as f64;
                    for i in 0..ci {
                        let at = (s * ci + i) * p + q;
                        y64[out] += wv[o * ci + i] as f64 * xv[at] as f64;
                        dx64[at] += wv[o * ci + i] as f64 * rv[out] as f64;
                        dw64[o * ci + i] += xv[at] as f64 * rv[out] as f64;
                    }
                }
            }
        }
        let name = format!("pointwise n{n} {ci}->{co} {h}x{w}");
        let ours = [y, x.grad(&grads).unwrap(), wt.grad(&grads).unwrap()].map(flat);
        assert_output_and_grads_close(&name, &ours, [&y64, &dx64, &dw64]);
    }
}
