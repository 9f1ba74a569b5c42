//! The CPU kernels behind [`super::MobileConvOps`] on flex, on channels-last (NHWC) f32 slices:
//! a depthwise conv is a multiply-add over a contiguous run of channels per pixel and tap (AVX2
//! when the CPU has it), a 1x1 conv is one `gemm` product over all the batch's pixels. No burn
//! types here.

use rayon::prelude::*;

/// Shape of a depthwise convolution: input [n, h, w, c], kernel k×k, stride, zero padding
/// `top`/`left` before the image (the rest after it follows from the output size).
#[derive(Clone, Copy, Debug)]
pub struct Depthwise {
    /// Batch.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (= groups).
    pub c: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero rows above the image.
    pub top: usize,
    /// Zero columns left of the image.
    pub left: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

impl Depthwise {
    /// The geometry for input [n, h, w, c] and padding (top, left, bottom, right).
    pub fn new(
        [n, h, w, c]: [usize; 4],
        k: usize,
        stride: usize,
        [top, left, bottom, right]: [usize; 4],
    ) -> Self {
        let out =
            |size: usize, before: usize, after: usize| (size + before + after - k) / stride + 1;
        Self {
            n,
            h,
            w,
            c,
            k,
            stride,
            top,
            left,
            out_h: out(h, top, bottom),
            out_w: out(w, left, right),
        }
    }

    /// Rows and columns of the padded window the outputs read.
    fn padded(&self) -> (usize, usize) {
        (
            (self.out_h - 1) * self.stride + self.k,
            (self.out_w - 1) * self.stride + self.k,
        )
    }

    /// Input row and the first padded column with its input column, with how many pixels of
    /// that row lie inside the window: padded row `pr` of the window.
    fn row_source(&self, pr: usize) -> Option<(usize, usize)> {
        let r = pr.checked_sub(self.top).filter(|&r| r < self.h)?;
        let wp = self.padded().1;
        Some((r, self.w.min(wp.saturating_sub(self.left))))
    }

    /// x [n, h, w, c] → zero-padded [n, hp, wp, c].
    fn pad(&self, x: &[f32]) -> Vec<f32> {
        let (hp, wp) = self.padded();
        let c = self.c;
        let mut xp = vec![0.0f32; self.n * hp * wp * c];
        xp.par_chunks_mut(wp * c)
            .enumerate()
            .for_each(|(row, out)| {
                let (s, pr) = (row / hp, row % hp);
                if let Some((r, cols)) = self.row_source(pr) {
                    let src = ((s * self.h + r) * self.w) * c;
                    out[self.left * c..(self.left + cols) * c]
                        .copy_from_slice(&x[src..src + cols * c]);
                }
            });
        xp
    }

    /// Padded-window pixel of tap `tap` for output (oh, ow).
    fn window(&self, oh: usize, ow: usize, tap: usize) -> usize {
        let wp = self.padded().1;
        (oh * self.stride + tap / self.k) * wp + ow * self.stride + tap % self.k
    }
}

/// [a, b] → [b, a].
fn transpose(values: &[f32], a: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for i in 0..a {
        for j in 0..b {
            out[j * a + i] = values[i * b + j];
        }
    }
    out
}

/// dst += a ⊙ b over equal-length channel runs.
#[inline(always)]
fn multiply_add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d += x * y;
    }
}

/// y = depthwise(x, weight) + bias: x [n, h, w, c], weight [c, k, k], bias [c] →
/// [n, out_h, out_w, c].
pub fn depthwise_forward(g: &Depthwise, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (c, taps) = (g.c, g.k * g.k);
    let (hp, wp) = g.padded();
    let xp = g.pad(x);
    let w_last = transpose(weight, c, taps);
    let mut y = vec![0.0f32; g.n * g.out_h * g.out_w * c];
    y.par_chunks_mut(g.out_w * c)
        .enumerate()
        .for_each(|(row, out)| {
            let (s, oh) = (row / g.out_h, row % g.out_h);
            let image = &xp[s * hp * wp * c..(s + 1) * hp * wp * c];
            simd_dispatch!(forward_row(g, oh, image, &w_last, bias, out))
        });
    y
}

/// One output row of the depthwise conv.
#[inline(always)]
fn forward_row(
    g: &Depthwise,
    oh: usize,
    image: &[f32],
    w_last: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let c = g.c;
    for (ow, acc) in out.chunks_mut(c).enumerate() {
        acc.copy_from_slice(bias);
        for tap in 0..g.k * g.k {
            let at = g.window(oh, ow, tap) * c;
            multiply_add(acc, &w_last[tap * c..(tap + 1) * c], &image[at..at + c]);
        }
    }
}

/// ∂L/∂x [n, h, w, c] of the depthwise conv, from ∂L/∂y [n, out_h, out_w, c].
pub fn depthwise_input_grad(g: &Depthwise, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, taps, plane_out) = (g.c, g.k * g.k, g.out_h * g.out_w);
    let (hp, wp) = g.padded();
    let w_last = transpose(weight, c, taps);
    let mut dx = vec![0.0f32; g.n * g.h * g.w * c];
    dx.par_chunks_mut(g.h * g.w * c)
        .enumerate()
        .for_each(|(s, dx_image)| {
            let mut dxp = vec![0.0f32; hp * wp * c];
            let dy_image = &dy[s * plane_out * c..(s + 1) * plane_out * c];
            simd_dispatch!(scatter_image(g, dy_image, &w_last, &mut dxp));
            // Drop the padding; pixels no output reads keep a zero gradient.
            for pr in 0..hp {
                if let Some((r, cols)) = g.row_source(pr) {
                    let src = (pr * wp + g.left) * c;
                    dx_image[r * g.w * c..(r * g.w + cols) * c]
                        .copy_from_slice(&dxp[src..src + cols * c]);
                }
            }
        });
    dx
}

/// One image's ∂L/∂y spread back over the padded window: dxp += w ⊙ dy at every tap.
#[inline(always)]
fn scatter_image(g: &Depthwise, dy_image: &[f32], w_last: &[f32], dxp: &mut [f32]) {
    let c = g.c;
    for oh in 0..g.out_h {
        for ow in 0..g.out_w {
            let d = &dy_image[(oh * g.out_w + ow) * c..][..c];
            for tap in 0..g.k * g.k {
                let at = g.window(oh, ow, tap) * c;
                multiply_add(&mut dxp[at..at + c], &w_last[tap * c..(tap + 1) * c], d);
            }
        }
    }
}

/// ∂L/∂weight [c, k, k] of the depthwise conv (summed over the batch).
pub fn depthwise_weight_grad(g: &Depthwise, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, taps, plane_out) = (g.c, g.k * g.k, g.out_h * g.out_w);
    let (hp, wp) = g.padded();
    let xp = g.pad(x);
    // Each task sums a slice of the batch into its own [k·k, c]; the partial sums add up after.
    let chunk = g.n.div_ceil(2 * rayon::current_num_threads()).max(1);
    let partials: Vec<Vec<f32>> = (0..g.n)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let mut dw_last = vec![0.0f32; taps * c];
            for s in first..(first + chunk).min(g.n) {
                let image = &xp[s * hp * wp * c..(s + 1) * hp * wp * c];
                let dy_image = &dy[s * plane_out * c..(s + 1) * plane_out * c];
                simd_dispatch!(accumulate_weight_grad(g, dy_image, image, &mut dw_last));
            }
            dw_last
        })
        .collect();
    let mut dw_last = vec![0.0f32; taps * c];
    for partial in &partials {
        dw_last.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
    }
    transpose(&dw_last, taps, c)
}

/// One image's contribution to ∂L/∂weight (as [k·k, c]): Σ dy ⊙ x per tap.
#[inline(always)]
fn accumulate_weight_grad(g: &Depthwise, dy_image: &[f32], image: &[f32], dw_last: &mut [f32]) {
    let c = g.c;
    for oh in 0..g.out_h {
        for ow in 0..g.out_w {
            let d = &dy_image[(oh * g.out_w + ow) * c..][..c];
            for tap in 0..g.k * g.k {
                let at = g.window(oh, ow, tap) * c;
                multiply_add(&mut dw_last[tap * c..(tap + 1) * c], d, &image[at..at + c]);
            }
        }
    }
}

/// lhs · rhs (m×n, row-major) for an m×k `lhs` and k×n `rhs`, each given as (pointer, column
/// stride, row stride); `gemm` splits the product over rayon's pool.
///
/// # Safety
/// The strides must keep every element the product reads inside the buffers behind the pointers.
unsafe fn matmul(
    dims: (usize, usize, usize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) -> Vec<f32> {
    matmul_with(dims, lhs, rhs, gemm::Parallelism::Rayon(0))
}

/// [`matmul`] with the given parallelism (`None` inside a task that already runs in parallel
/// with others, such as one image of a batch).
///
/// # Safety
/// As [`matmul`].
unsafe fn matmul_with(
    (m, n, k): (usize, usize, usize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) -> Vec<f32> {
    let mut dst = vec![0.0f32; m * n];
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        n as isize,
        false,
        lhs.0,
        lhs.1,
        lhs.2,
        rhs.0,
        rhs.1,
        rhs.2,
        0.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
    dst
}

/// y = x · weightᵀ + bias over all pixels: x [rows, ci], weight [co, ci], bias [co] → [rows, co].
pub fn pointwise_forward(
    (rows, ci, co): (usize, usize, usize),
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    assert!(x.len() == rows * ci && weight.len() == co * ci && bias.len() == co);
    // SAFETY: x is rows×ci (row stride ci); weightᵀ is ci×co (element (i, o) at o·ci + i).
    let mut y = unsafe {
        matmul(
            (rows, co, ci),
            (x.as_ptr(), 1, ci as isize),
            (weight.as_ptr(), ci as isize, 1),
        )
    };
    y.par_chunks_mut(co * 64).for_each(|block| {
        for pixel in block.chunks_mut(co) {
            pixel.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    });
    y
}

/// relu(x · weightᵀ + bias (+ residual)) over all pixels, on the calling thread: x [rows, ci],
/// weight [co, ci], bias [co], residual [rows, co] → [rows, co]. One pass after the product adds
/// the bias (and the residual) and clamps (ResNet's fast path, one image per task).
pub fn pointwise_forward_serial(
    (rows, ci, co): (usize, usize, usize),
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    relu: bool,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert!(x.len() == rows * ci && weight.len() == co * ci && bias.len() == co);
    assert!(residual.is_none_or(|r| r.len() == rows * co));
    // SAFETY: as in `pointwise_forward`.
    let mut y = unsafe {
        matmul_with(
            (rows, co, ci),
            (x.as_ptr(), 1, ci as isize),
            (weight.as_ptr(), ci as isize, 1),
            gemm::Parallelism::None,
        )
    };
    let floor = if relu { 0.0 } else { f32::NEG_INFINITY };
    match residual {
        Some(r) => {
            for (pixel, skip) in y.chunks_mut(co).zip(r.chunks(co)) {
                for ((v, b), s) in pixel.iter_mut().zip(bias).zip(skip) {
                    *v = (*v + b + s).max(floor);
                }
            }
        }
        None => {
            for pixel in y.chunks_mut(co) {
                pixel
                    .iter_mut()
                    .zip(bias)
                    .for_each(|(v, b)| *v = (*v + b).max(floor));
            }
        }
    }
    y
}

/// ∂L/∂x = ∂L/∂y · weight: → [rows, ci].
pub fn pointwise_input_grad(
    (rows, ci, co): (usize, usize, usize),
    weight: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    assert!(dy.len() == rows * co && weight.len() == co * ci);
    // SAFETY: dy is rows×co (row stride co); weight is co×ci (row stride ci).
    unsafe {
        matmul(
            (rows, ci, co),
            (dy.as_ptr(), 1, co as isize),
            (weight.as_ptr(), 1, ci as isize),
        )
    }
}

/// ∂L/∂weight = ∂L/∂yᵀ · x: → [co, ci].
pub fn pointwise_weight_grad(
    (rows, ci, co): (usize, usize, usize),
    x: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    assert!(x.len() == rows * ci && dy.len() == rows * co);
    // SAFETY: dyᵀ is co×rows (element (o, r) at r·co + o); x is rows×ci (row stride ci).
    unsafe {
        matmul(
            (co, ci, rows),
            (dy.as_ptr(), co as isize, 1),
            (x.as_ptr(), 1, ci as isize),
        )
    }
}

/// ReLU6 in place: clamp to [0, 6].
pub fn relu6(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        chunk.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
    });
}

/// Σ over all pixels per channel (the bias gradient of either conv), from ∂L/∂y [rows, c].
pub fn channel_sums(c: usize, dy: &[f32]) -> Vec<f32> {
    let mut sums = vec![0.0f32; c];
    for pixel in dy.chunks(c) {
        sums.iter_mut().zip(pixel).for_each(|(s, v)| *s += v);
    }
    sums
}
