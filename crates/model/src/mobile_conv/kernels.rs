//! The CPU kernels behind [`super::MobileConvOps`] on flex: plain loops over NCHW f32 slices
//! (depthwise, parallel over channel planes) and `gemm` calls (pointwise). No burn types here.

use rayon::prelude::*;

/// Shape of a depthwise convolution: input [n, c, h, w], kernel k×k, stride, zero padding
/// `top`/`left` before the image (the rest after it follows from the output size).
///
/// The kernels work channels-last: the padded input as [n, hp, wp, c] and the weights as
/// [k·k, c], so every inner loop is a multiply-add over a contiguous run of channels (AVX2 when
/// the CPU has it). A 7×7 plane gives row loops too short to vectorise; 1,152 channels do not.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise {
    /// Batch.
    pub n: usize,
    /// Channels (= groups).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
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
    /// The geometry for padding (top, left, bottom, right).
    pub fn new(
        [n, c, h, w]: [usize; 4],
        k: usize,
        stride: usize,
        [top, left, bottom, right]: [usize; 4],
    ) -> Self {
        let out =
            |size: usize, before: usize, after: usize| (size + before + after - k) / stride + 1;
        Self {
            n,
            c,
            h,
            w,
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

    /// Input pixel (r, q) of the image at padded position (pr, pq), if inside the image.
    fn source(&self, pr: usize, pq: usize) -> Option<(usize, usize)> {
        let r = pr.checked_sub(self.top).filter(|&r| r < self.h)?;
        let q = pq.checked_sub(self.left).filter(|&q| q < self.w)?;
        Some((r, q))
    }

    /// x [n, c, h, w] → zero-padded channels-last [n, hp, wp, c].
    fn padded_channels_last(&self, x: &[f32]) -> Vec<f32> {
        let (hp, wp) = self.padded();
        let (c, plane) = (self.c, self.h * self.w);
        let mut xp = vec![0.0f32; self.n * hp * wp * c];
        xp.par_chunks_mut(wp * c)
            .enumerate()
            .for_each(|(row, out)| {
                let (s, pr) = (row / hp, row % hp);
                for pq in 0..wp {
                    if let Some((r, q)) = self.source(pr, pq) {
                        let at = s * c * plane + r * self.w + q;
                        for (ch, v) in out[pq * c..(pq + 1) * c].iter_mut().enumerate() {
                            *v = x[at + ch * plane];
                        }
                    }
                }
            });
        xp
    }

    /// Padded-window offset (in pixels) of tap `tap` for output (oh, ow).
    fn window(&self, oh: usize, ow: usize, tap: usize) -> usize {
        let wp = self.padded().1;
        (oh * self.stride + tap / self.k) * wp + ow * self.stride + tap % self.k
    }
}

/// [rows, c, p] → [rows, p, c] (`to_last`) or back.
fn transpose_planes(
    values: &[f32],
    (rows, c, p): (usize, usize, usize),
    to_last: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(c * p).enumerate().for_each(|(s, dst)| {
        let src = &values[s * c * p..(s + 1) * c * p];
        for ch in 0..c {
            for i in 0..p {
                if to_last {
                    dst[i * c + ch] = src[ch * p + i];
                } else {
                    dst[ch * p + i] = src[i * c + ch];
                }
            }
        }
    });
    debug_assert_eq!(out.len(), rows * c * p);
    out
}

/// dst += a ⊙ b over equal-length channel runs.
#[inline(always)]
fn multiply_add(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d += x * y;
    }
}

/// Runs `body` compiled for AVX2 when the CPU has it (the loops above vectorise 8 wide), else
/// for the baseline.
macro_rules! simd_dispatch {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

/// y = depthwise(x, weight) + bias: x [n, c, h, w], weight [c, k, k], bias [c].
pub fn depthwise_forward(g: &Depthwise, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let (c, taps) = (g.c, g.k * g.k);
    let xp = g.padded_channels_last(x);
    let w_last = transpose_planes(weight, (1, c, taps), true);
    let (hp, wp) = g.padded();
    let mut y_last = vec![0.0f32; g.n * g.out_h * g.out_w * c];
    y_last
        .par_chunks_mut(g.out_w * c)
        .enumerate()
        .for_each(|(row, out)| {
            let (s, oh) = (row / g.out_h, row % g.out_h);
            let image = &xp[s * hp * wp * c..(s + 1) * hp * wp * c];
            simd_dispatch!(forward_row(g, oh, image, &w_last, bias, out))
        });
    transpose_planes(&y_last, (g.n, c, g.out_h * g.out_w), false)
}

/// One output row (channels-last) of the depthwise conv.
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

/// ∂L/∂x of the depthwise conv, from ∂L/∂y [n, c, out_h, out_w].
pub fn depthwise_input_grad(g: &Depthwise, weight: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, taps, plane_out) = (g.c, g.k * g.k, g.out_h * g.out_w);
    let (hp, wp) = g.padded();
    let dy_last = transpose_planes(dy, (g.n, c, plane_out), true);
    let w_last = transpose_planes(weight, (1, c, taps), true);
    let mut dx = vec![0.0f32; g.n * c * g.h * g.w];
    dx.par_chunks_mut(c * g.h * g.w)
        .enumerate()
        .for_each(|(s, dx_image)| {
            let mut dxp = vec![0.0f32; hp * wp * c];
            let dy_image = &dy_last[s * plane_out * c..(s + 1) * plane_out * c];
            simd_dispatch!(scatter_image(g, dy_image, &w_last, &mut dxp));
            // Back to [c, h, w], dropping the padding; pixels no output reads keep 0.
            for pr in 0..hp {
                for pq in 0..wp {
                    if let Some((r, q)) = g.source(pr, pq) {
                        for (ch, &v) in dxp[(pr * wp + pq) * c..][..c].iter().enumerate() {
                            dx_image[(ch * g.h + r) * g.w + q] = v;
                        }
                    }
                }
            }
        });
    dx
}

/// One image's ∂L/∂y (channels-last) spread back over the padded window: dxp += w ⊙ dy at every
/// tap.
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

/// One image's contribution to ∂L/∂weight (channels-last [k·k, c]): Σ dy ⊙ x per tap.
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

/// ∂L/∂weight [c, k, k] of the depthwise conv (summed over the batch).
pub fn depthwise_weight_grad(g: &Depthwise, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, taps, plane_out) = (g.c, g.k * g.k, g.out_h * g.out_w);
    let (hp, wp) = g.padded();
    let xp = g.padded_channels_last(x);
    let dy_last = transpose_planes(dy, (g.n, c, plane_out), true);
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
                let dy_image = &dy_last[s * plane_out * c..(s + 1) * plane_out * c];
                simd_dispatch!(accumulate_weight_grad(g, dy_image, image, &mut dw_last));
            }
            dw_last
        })
        .collect();
    let mut dw_last = vec![0.0f32; taps * c];
    for partial in &partials {
        dw_last.iter_mut().zip(partial).for_each(|(a, b)| *a += b);
    }
    transpose_planes(&dw_last, (1, taps, c), true)
}

/// Row-major `m×k` times `k×n` into `dst` (`m×n`, row stride `n`), single-threaded; `lhs` and
/// `rhs` are given as (pointer, column stride, row stride).
///
/// # Safety
/// The strides must keep every element the product reads inside the slices behind the pointers.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) {
    debug_assert!(dst.len() >= m * n);
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
}

/// Per-sample GEMMs run one per thread when the batch fills the pool; a small batch lets `gemm`
/// split each product instead.
fn per_sample_parallelism(batch: usize) -> gemm::Parallelism {
    if batch >= rayon::current_num_threads() {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(0)
    }
}

/// [n, rows, p] → [rows, n·p] (the batch side by side), so that a sum over the batch becomes one
/// long inner dimension of a single GEMM.
fn batch_side_by_side(values: &[f32], (n, rows, p): (usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(n * p).enumerate().for_each(|(r, row)| {
        for s in 0..n {
            row[s * p..(s + 1) * p].copy_from_slice(&values[(s * rows + r) * p..][..p]);
        }
    });
    out
}

/// Small planes (EfficientNet's last blocks are 7×7) make per-sample products too thin for
/// `gemm`'s tiles; below this many pixels the batch is laid side by side into one product.
const SIDE_BY_SIDE_BELOW: usize = 256;

/// [rows, n·p] → [n, rows, p]: the inverse of [`batch_side_by_side`].
fn batch_apart(values: &[f32], (n, rows, p): (usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(rows * p)
        .enumerate()
        .for_each(|(s, image)| {
            for (r, dst) in image.chunks_mut(p).enumerate() {
                dst.copy_from_slice(&values[r * n * p + s * p..][..p]);
            }
        });
    out
}

/// out[n] = a · b[n] for every sample: `a` is m×k as (pointer, column stride, row stride), `b`
/// is [n, k, p], the result [n, m, p].
fn times_each_sample(
    (n, m, k, p): (usize, usize, usize, usize),
    a: (*const f32, isize, isize),
    b: &[f32],
) -> Vec<f32> {
    assert!(b.len() == n * k * p);
    // Raw pointers are not Send; the address is (the matrix is only read).
    let a = (a.0 as usize, a.1, a.2);
    let lhs = move || (a.0 as *const f32, a.1, a.2);
    if p < SIDE_BY_SIDE_BELOW {
        let b_rows = batch_side_by_side(b, (n, k, p));
        let mut out_rows = vec![0.0f32; n * m * p];
        // SAFETY: `a` is m×k by the caller's strides; b_rows is k×np; out_rows is m×np.
        unsafe {
            matmul(
                (m, n * p, k),
                &mut out_rows,
                lhs(),
                (b_rows.as_ptr(), 1, (n * p) as isize),
                gemm::Parallelism::Rayon(0),
            )
        };
        return batch_apart(&out_rows, (n, m, p));
    }
    let parallelism = per_sample_parallelism(n);
    let mut out = vec![0.0f32; n * m * p];
    out.par_chunks_mut(m * p)
        .enumerate()
        .for_each(|(s, out_s)| {
            let b_s = &b[s * k * p..(s + 1) * k * p];
            // SAFETY: `a` is m×k by the caller's strides; b_s is k×p; out_s is m×p.
            unsafe {
                matmul(
                    (m, p, k),
                    out_s,
                    lhs(),
                    (b_s.as_ptr(), 1, p as isize),
                    parallelism,
                )
            };
        });
    out
}

/// y[n] = weight · x[n] + bias: x [n, ci, p], weight [co, ci], bias [co] → [n, co, p].
pub fn pointwise_forward(
    (n, ci, co, p): (usize, usize, usize, usize),
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    assert!(x.len() == n * ci * p && weight.len() == co * ci && bias.len() == co);
    let mut y = times_each_sample((n, co, ci, p), (weight.as_ptr(), 1, ci as isize), x);
    y.par_chunks_mut(co * p).for_each(|y_s| {
        for (row, &b) in y_s.chunks_mut(p).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    });
    y
}

/// ∂L/∂x[n] = weightᵀ · ∂L/∂y[n]: → [n, ci, p].
pub fn pointwise_input_grad(
    (n, ci, co, p): (usize, usize, usize, usize),
    weight: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    assert!(dy.len() == n * co * p && weight.len() == co * ci);
    // weightᵀ is ci×co: element (i, j) at j·ci + i.
    times_each_sample((n, ci, co, p), (weight.as_ptr(), ci as isize, 1), dy)
}

/// ∂L/∂weight = Σ_n ∂L/∂y[n] · x[n]ᵀ: → [co, ci].
pub fn pointwise_weight_grad(
    (n, ci, co, p): (usize, usize, usize, usize),
    x: &[f32],
    dy: &[f32],
) -> Vec<f32> {
    assert!(x.len() == n * ci * p && dy.len() == n * co * p);
    let dy_rows = batch_side_by_side(dy, (n, co, p));
    let x_rows = batch_side_by_side(x, (n, ci, p));
    let np = n * p;
    let mut dw = vec![0.0f32; co * ci];
    // SAFETY: dy_rows is co×np (row stride np); x_rowsᵀ is np×ci (element (j, i) at i·np + j).
    unsafe {
        matmul(
            (co, ci, np),
            &mut dw,
            (dy_rows.as_ptr(), 1, np as isize),
            (x_rows.as_ptr(), np as isize, 1),
            gemm::Parallelism::Rayon(0),
        )
    };
    dw
}

/// ReLU6 in place: clamp to [0, 6].
pub fn relu6(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        chunk.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
    });
}

/// Σ over batch and pixels per channel: the bias gradient of either conv, from ∂L/∂y [n, c, p].
pub fn channel_sums((n, c, p): (usize, usize, usize), dy: &[f32]) -> Vec<f32> {
    (0..c)
        .map(|ch| {
            (0..n)
                .map(|s| dy[(s * c + ch) * p..][..p].iter().sum::<f32>())
                .sum()
        })
        .collect()
}
