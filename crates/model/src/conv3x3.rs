//! VGG's 3x3, stride-1, padding-1 convolutions on the CPU fast path, channels-last, with the
//! bias and ReLU fused: [`Conv3x3`] picks per layer between Winograd F(2x2, 3x3)
//! ([`crate::winograd`]) and a register-blocked direct convolution ([`DirectConv`]).
//!
//! Winograd does 2.25x fewer multiply-adds, but with few channels its transforms cost as much
//! as its products, and an RGB input must be padded to 8 channels. The direct kernel keeps a
//! block of output pixels × output channels in registers and adds one (tap, input channel) at a
//! time: one broadcast of the input value and one fused multiply-add per register. Measured per
//! layer on one image, both threads (VGG16 / 8 at 160 px, 2-core AMD EPYC family 25, AVX2,
//! 2026-11-30; `winograd_profile` with LAYERS=1): see [`DIRECT_MAX_C`].

use std::mem::MaybeUninit;
use std::ops::Range;

use rayon::prelude::*;

use crate::winograd::{pad_channels, WinogradConv};

/// Output channels per register (AVX2).
const LANES: usize = 8;

/// Layers with at most this many input channels and [`DIRECT_MAX_K`] output channels run the
/// direct kernel; so does any layer with fewer than 8 input channels (Winograd would pad them).
/// Measured per layer (see the module doc; both kernels in one run, glibc's heap kept from
/// returning pages), Winograd → direct, ms: VGG16 / 8 at 160 px: 3 → 8 at 160x160 1.44 → 0.23;
/// 8 → 8 at 160x160 1.51 → 0.49; 16 → 16 at 80x80 0.60 → 0.31; 32 → 32 at 40x40 0.48 → 0.25–0.34;
/// 32 → 64 at 20x20 0.18 → 0.19 (a tie: Winograd); 64 → 64 at 20x20 0.31 → 0.36. Full VGG16 at
/// 224: 3 → 64 7.6 → 2.8; 64 → 64 18.5 → 33.3.
const DIRECT_MAX_C: usize = 32;
const DIRECT_MAX_K: usize = 32;

/// One 3x3 convolution layer (bias and ReLU fused) on whichever kernel suits its shape.
pub enum Conv3x3 {
    /// Few channels: register-blocked direct convolution.
    Direct(DirectConv),
    /// Otherwise: Winograd F(2x2, 3x3).
    Winograd(WinogradConv),
}

impl Conv3x3 {
    /// From PyTorch-layout weights [K, C, 3, 3] and bias [K].
    pub fn new(weight: &[f32], bias: &[f32], k: usize, c: usize) -> Self {
        if c < LANES || (c <= DIRECT_MAX_C && k <= DIRECT_MAX_K) {
            Self::Direct(DirectConv::new(weight, bias, k, c))
        } else {
            Self::Winograd(WinogradConv::new(weight, bias, k, c))
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        match self {
            Self::Direct(conv) => conv.k,
            Self::Winograd(conv) => conv.out_channels(),
        }
    }

    /// relu(conv(x) + bias): x [N, H, W, C] with the layer's C real channels → [N, H, W, K].
    pub fn forward_relu(&self, x: Vec<f32>, n: usize, h: usize, w: usize) -> Vec<f32> {
        match self {
            Self::Direct(conv) => conv.forward_relu(&x, n, h, w),
            Self::Winograd(conv) => {
                let c = x.len() / (n * h * w).max(1);
                let x = pad_channels(x, c, conv.in_channels());
                conv.forward_relu(&x, n, h, w)
            }
        }
    }
}

/// A direct 3x3 convolution, channels-last, with weights stored [3][3][C][K'] (K' = K rounded up
/// to a whole register, zero-padded).
pub struct DirectConv {
    k: usize,
    c: usize,
    k_padded: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Output columns per strip (a multiple of both blocks' widths, 6 and 12).
const STRIP: usize = 48;

/// A row kernel: one output row's columns `cols` from the three padded input rows around it.
type RowKernel = fn(&DirectConv, &[f32], Range<usize>, &mut [MaybeUninit<f32>]);

/// Extra zero columns right of each padded input row, so a block of output pixels that runs
/// past the row's end reads zeros instead of the next row (its extra outputs are not stored).
const RIGHT_SLACK: usize = 12;

impl DirectConv {
    /// From PyTorch-layout weights [K, C, 3, 3] and bias [K].
    pub fn new(weight: &[f32], bias: &[f32], k: usize, c: usize) -> Self {
        assert_eq!(weight.len(), k * c * 9, "weights must be [K, C, 3, 3]");
        assert_eq!(bias.len(), k, "bias must be [K]");
        let k_padded = k.div_ceil(LANES) * LANES;
        let mut stored = vec![0.0; 9 * c * k_padded];
        for ki in 0..k {
            for ci in 0..c {
                for tap in 0..9 {
                    stored[(tap * c + ci) * k_padded + ki] = weight[(ki * c + ci) * 9 + tap];
                }
            }
        }
        let mut padded_bias = vec![0.0; k_padded];
        padded_bias[..k].copy_from_slice(bias);
        Self {
            k,
            c,
            k_padded,
            weight: stored,
            bias: padded_bias,
        }
    }

    /// relu(conv(x) + bias) for x [N, H, W, C] → [N, H, W, K]; rows in parallel.
    pub fn forward_relu(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        self.forward_relu_with(x, n, h, w, conv_row)
    }

    /// [`forward_relu`](Self::forward_relu) with the given row kernel.
    fn forward_relu_with(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        row_kernel: RowKernel,
    ) -> Vec<f32> {
        let (c, k) = (self.c, self.k);
        assert_eq!(x.len(), n * h * w * c, "input must be [N, H, W, C]");
        let len = n * h * w * k;
        // Not zero-filled: every output is written below (zeroing was 7 % of the quickstart).
        let mut y = Vec::with_capacity(len);
        if len == 0 {
            return y;
        }
        let row_len = (w + 2 + RIGHT_SLACK) * c;
        let rows_per_block = (16384 / (w * k).max(1)).clamp(1, h);
        let outputs = &mut y.spare_capacity_mut()[..len];
        // Tests see NaN wherever a kernel failed to write (set_len below relies on it).
        #[cfg(test)]
        for v in outputs.iter_mut() {
            v.write(f32::NAN);
        }
        for (image, out) in x.chunks(h * w * c).zip(outputs.chunks_mut(h * w * k)) {
            // A zero border of one pixel, plus the slack on the right.
            let mut padded = Vec::with_capacity((h + 2) * row_len);
            padded.resize(row_len, 0.0);
            for src in image.chunks(w * c) {
                padded.extend(std::iter::repeat_n(0.0, c));
                padded.extend_from_slice(src);
                padded.extend(std::iter::repeat_n(0.0, (1 + RIGHT_SLACK) * c));
            }
            padded.resize((h + 2) * row_len, 0.0);
            out.par_chunks_mut(rows_per_block * w * k)
                .enumerate()
                .for_each(|(block, rows)| {
                    // Strips of STRIP columns down the block's rows: the three input rows'
                    // pieces stay in L1 from one output row to the next (whole rows of a
                    // 160-pixel, 16-channel layer did not, and ran 3x slower).
                    for x0 in (0..w).step_by(STRIP) {
                        for (i, out_row) in rows.chunks_mut(w * k).enumerate() {
                            let y = block * rows_per_block + i;
                            let input = &padded[y * row_len..][..3 * row_len];
                            row_kernel(self, input, x0..(x0 + STRIP).min(w), out_row);
                        }
                    }
                });
        }
        // SAFETY: all `len` outputs were written: every row of every image got row kernel
        // calls whose column ranges cover 0..W, and a row kernel writes all K channels of
        // each of its columns.
        unsafe { y.set_len(len) };
        y
    }
}

/// One output row from the three padded input rows around it (`rows`: 3 rows of
/// W + 2 + [`RIGHT_SLACK`] pixels of C channels), on AVX2 + FMA when the CPU has them.
fn conv_row(conv: &DirectConv, rows: &[f32], cols: Range<usize>, out_row: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let (row_len, w) = (rows.len() / 3, out_row.len() / conv.k);
        assert!(rows.len() == 3 * row_len && row_len >= (w + 2 + RIGHT_SLACK) * conv.c);
        assert!(out_row.len() == w * conv.k && cols.end <= w);
        // SAFETY: the CPU has AVX2 and FMA (checked above); the kernel reads input pixels
        // x0..x0 + R + 2 ≤ W + 13 of each of the 3 rows (inside the row length asserted above),
        // weights inside [3][3][C][K'], and stores only the W × K outputs of `out_row`.
        return unsafe { avx2::conv_row(conv, rows, row_len, cols, out_row) };
    }
    conv_row_portable(conv, rows, cols, out_row)
}

/// Output channels go in groups of 2 registers with 6 pixels at a time, or of 1 with 12: 12
/// accumulators plus the weights and the broadcast input within AVX2's 16 registers (4 × 3
/// spilled). Calls `block(G, R, x0, g0)` for each block of
/// R pixels from x0 (in `cols`) × G registers of output channels from g0.
#[inline(always)]
fn for_each_block(
    k_padded: usize,
    cols: Range<usize>,
    mut block: impl FnMut(usize, usize, usize, usize),
) {
    let groups = k_padded / LANES;
    let mut g0 = 0;
    while g0 < groups {
        let (g, r) = match groups - g0 {
            2.. => (2, 6),
            _ => (1, 12),
        };
        for x0 in cols.clone().step_by(r) {
            block(g, r, x0, g0);
        }
        g0 += g;
    }
}

/// [`conv_row`] in plain Rust, for CPUs without AVX2 (and as the reference in tests).
fn conv_row_portable(
    conv: &DirectConv,
    rows: &[f32],
    cols: Range<usize>,
    out_row: &mut [MaybeUninit<f32>],
) {
    let (c, k, kp) = (conv.c, conv.k, conv.k_padded);
    let row_len = rows.len() / 3;
    let end = cols.end;
    for_each_block(kp, cols, |g, r_count, x0, g0| {
        for r in 0..r_count.min(end - x0) {
            for ki in g0 * LANES..((g0 + g) * LANES).min(k) {
                let mut sum = conv.bias[ki];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let src = &rows[ky * row_len + (x0 + r + kx) * c..][..c];
                        let taps = &conv.weight[(ky * 3 + kx) * c * kp..];
                        for (ci, xv) in src.iter().enumerate() {
                            sum = xv.mul_add(taps[ci * kp + ki], sum);
                        }
                    }
                }
                out_row[(x0 + r) * k + ki].write(sum.max(0.0));
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use std::mem::MaybeUninit;
    use std::ops::Range;

    use super::{for_each_block, DirectConv, LANES};

    /// See [`super::conv_row`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `rows` holds 3 rows of `row_len` ≥ (W + 14) · C floats;
    /// `out_row` holds W · K, and `cols` ends at or before W.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn conv_row(
        conv: &DirectConv,
        rows: &[f32],
        row_len: usize,
        cols: Range<usize>,
        out_row: &mut [MaybeUninit<f32>],
    ) {
        let end = cols.end;
        for_each_block(conv.k_padded, cols, |g, _, x0, g0| match g {
            // SAFETY: as this function's contract.
            2 => unsafe { block::<2, 6>(conv, rows, row_len, x0, g0, end, out_row) },
            _ => unsafe { block::<1, 12>(conv, rows, row_len, x0, g0, end, out_row) },
        });
    }

    /// Output pixels x0..x0+R (those before `end` stored) × output channel registers g0..g0+G.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const G: usize, const R: usize>(
        conv: &DirectConv,
        rows: &[f32],
        row_len: usize,
        x0: usize,
        g0: usize,
        end: usize,
        out_row: &mut [MaybeUninit<f32>],
    ) {
        let (c, k, kp) = (conv.c, conv.k, conv.k_padded);
        let (input, weight) = (rows.as_ptr(), conv.weight.as_ptr().add(g0 * LANES));
        let bias: [__m256; G] =
            std::array::from_fn(|g| _mm256_loadu_ps(conv.bias.as_ptr().add((g0 + g) * LANES)));
        let mut acc = [bias; R];
        for ky in 0..3 {
            let src = input.add(ky * row_len + x0 * c);
            for kx in 0..3 {
                let taps = weight.add((ky * 3 + kx) * c * kp);
                for ci in 0..c {
                    let wv: [__m256; G] =
                        std::array::from_fn(|g| _mm256_loadu_ps(taps.add(ci * kp + g * LANES)));
                    for (r, sums) in acc.iter_mut().enumerate() {
                        let xv = _mm256_broadcast_ss(&*src.add((r + kx) * c + ci));
                        for g in 0..G {
                            sums[g] = _mm256_fmadd_ps(xv, wv[g], sums[g]);
                        }
                    }
                }
            }
        }
        let zero = _mm256_setzero_ps();
        for (r, sums) in acc.iter().enumerate() {
            if x0 + r >= end {
                break;
            }
            for (g, sum) in sums.iter().enumerate() {
                let k0 = (g0 + g) * LANES;
                let y = _mm256_max_ps(*sum, zero);
                let dst = &mut out_row[(x0 + r) * k + k0..];
                if k - k0 >= LANES {
                    _mm256_storeu_ps(dst[..LANES].as_mut_ptr().cast::<f32>(), y);
                } else {
                    let mut lanes = [0.0f32; LANES];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), y);
                    for (d, v) in dst[..k - k0].iter_mut().zip(lanes) {
                        d.write(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::winograd::{to_channels_first, to_channels_last};

    /// Direct convolution, padding 1, summed in f64, channels first, for reference.
    pub(crate) fn reference(
        x: &[f32],
        wt: &[f32],
        b: &[f32],
        c: usize,
        k: usize,
        h: usize,
        w: usize,
    ) -> Vec<f32> {
        let mut y = vec![0.0; k * h * w];
        for ki in 0..k {
            for oy in 0..h {
                for ox in 0..w {
                    let mut s = b[ki] as f64;
                    for ci in 0..c {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = (oy as isize + dy - 1, ox as isize + dx - 1);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    s += (x[ci * h * w + iy as usize * w + ix as usize]
                                        * wt[((ki * c + ci) * 3 + dy as usize) * 3 + dx as usize])
                                        as f64;
                                }
                            }
                        }
                    }
                    y[(ki * h + oy) * w + ox] = (s as f32).max(0.0);
                }
            }
        }
        y
    }

    /// Max |a − b| over the largest |b| (at least 1).
    pub(crate) fn relative_error(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len());
        // NaN-aware: a NaN anywhere makes the error NaN (`f32::max` would skip it).
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |m, d| {
                if d.is_nan() || m.is_nan() {
                    f32::NAN
                } else {
                    m.max(d)
                }
            });
        err / want.iter().fold(1f32, |m, v| m.max(v.abs()))
    }

    pub(crate) fn random_values(seed: u64, len: usize) -> Vec<f32> {
        let mut seed = seed;
        (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn direct_kernel_matches_the_reference_on_odd_sizes() {
        // Every register grouping (K' / 8 = 1, 2, 3 = 2 + 1, 4 = 2 + 2, 5, 7), K not
        // a multiple of 8, C from 1 to 19, widths below, at and past each pixel block (6, 12),
        // past one strip of 48 columns, 40 rows in two parallel row blocks, 1x1 images, and
        // batches of 1–3.
        for (n, c, k, h, w) in [
            (1, 3, 8, 9, 11),
            (2, 1, 5, 1, 1),
            (3, 8, 16, 7, 6),
            (1, 7, 23, 5, 13),
            (2, 16, 32, 4, 3),
            (1, 19, 37, 6, 9),
            (2, 3, 56, 3, 17),
            (1, 12, 9, 2, 8),
            (1, 4, 8, 40, 53),
        ] {
            let x = random_values(n as u64 * 31 + c as u64, n * c * h * w);
            let wt = random_values(k as u64 * 7 + 1, k * c * 9);
            let b = random_values(k as u64, k);
            let conv = DirectConv::new(&wt, &b, k, c);
            let want: Vec<f32> = x
                .chunks(c * h * w)
                .flat_map(|image| reference(image, &wt, &b, c, k, h, w))
                .collect();
            // The dispatched kernel (AVX2 + FMA on x86-64 machines that have them) and the
            // portable one.
            let kernels: [(&str, RowKernel); 2] =
                [("dispatched", conv_row), ("portable", conv_row_portable)];
            for (name, kernel) in kernels {
                let got =
                    conv.forward_relu_with(&to_channels_last(&x, n, c, h, w), n, h, w, kernel);
                let got = to_channels_first(&got, n, h, w, k);
                let err = relative_error(&got, &want);
                assert!(
                    err < 1e-5,
                    "{name}: {n}x{c}x{k} at {h}x{w}: relative error {err}"
                );
            }
        }
    }

    #[test]
    fn the_layer_picks_its_kernel_by_shape() {
        let pick = |c: usize, k: usize| {
            let conv = Conv3x3::new(&vec![0.0; k * c * 9], &vec![0.0; k], k, c);
            matches!(conv, Conv3x3::Direct(_))
        };
        assert!(
            pick(3, 64),
            "an RGB input never goes through Winograd's padding"
        );
        assert!(pick(8, 8) && pick(16, 32) && pick(32, 32));
        assert!(!pick(32, 64) && !pick(64, 64) && !pick(64, 32) && !pick(16, 64));
    }

    #[test]
    fn both_kernels_give_the_same_layer() {
        let (n, h, w) = (2, 10, 7);
        for (c, k) in [(3, 8), (16, 16), (32, 32)] {
            let x = random_values(5, n * c * h * w);
            let wt = random_values(6, k * c * 9);
            let b = random_values(7, k);
            let conv = Conv3x3::new(&wt, &b, k, c);
            let got = conv.forward_relu(to_channels_last(&x, n, c, h, w), n, h, w);
            let got = to_channels_first(&got, n, h, w, conv.out_channels());
            let want: Vec<f32> = x
                .chunks(c * h * w)
                .flat_map(|image| reference(image, &wt, &b, c, k, h, w))
                .collect();
            assert!(relative_error(&got, &want) < 1e-5, "{c} → {k}");
        }
    }
}
