//! A CPU fast path for VGG's 3x3, stride-1, padding-1 convolutions: Winograd F(2x2, 3x3)
//! (Lavin & Gray 2016) with the bias and ReLU fused into the output transform, on a whole
//! batch stored channels-last ([N, H, W, C]).
//!
//! Per layer: the filters g [K, C, 3, 3] become U = G g Gᵀ (16 matrices C×K), every 4x4 input
//! tile d (stride 2, zero padding) of every image becomes V = Bᵀ d B (16 matrices P×C, P =
//! tiles), 16 independent GEMMs give M = V U (P×K), and each output tile is Aᵀ M A (2x2). The
//! GEMMs do 16·K·C·P = 4·K·C·H·W multiply-adds instead of the direct 9·K·C·H·W: 2.25x fewer.
//! They run on the `gemm` crate (the one burn's `flex` backend uses).
//!
//! Channels-last makes both transforms elementwise along contiguous channel runs, so they run
//! 8 channels at a time (AVX2 + FMA, picked at run time) with contiguous loads and stores.
//! Tiles are processed in cache-sized blocks on rayon's pool. [`WinogradConv::forward_relu`]
//! takes a batch; VGG16's fast path gives it one image at a time, with the images in parallel,
//! so one image's activations stay in cache from layer to layer.
//! Accuracy: the transforms only add and halve, so results match the direct convolution to
//! float rounding (tested against a direct convolution, relative error < 1e-5).

use std::cell::RefCell;

use rayon::prelude::*;

/// Channels handled together by the transforms (one AVX2 register).
const LANES: usize = 8;

/// One layer's transformed filters U [16][C][K] and bias [K].
pub struct WinogradConv {
    k: usize,
    c: usize,
    u: Vec<f32>,
    bias: Vec<f32>,
}

impl WinogradConv {
    /// From PyTorch-layout weights [K, C, 3, 3] and bias [K].
    ///
    /// Fewer than 8 input channels (an RGB image) are padded to 8 with zero filters, so the
    /// input transform always moves whole registers: the input must then have
    /// [`in_channels`](Self::in_channels) channels (see [`pad_channels`]).
    pub fn new(weight: &[f32], bias: &[f32], k: usize, c_real: usize) -> Self {
        assert_eq!(weight.len(), k * c_real * 9, "weights must be [K, C, 3, 3]");
        assert_eq!(bias.len(), k, "bias must be [K]");
        let c = c_real.max(LANES);
        let mut u = vec![0.0; 16 * c * k];
        for ki in 0..k {
            for ci in 0..c_real {
                let g = &weight[(ki * c_real + ci) * 9..][..9];
                // t = G g (4x3), then G tᵀ → U (4x4).
                let mut t = [[0.0f32; 3]; 4];
                for j in 0..3 {
                    let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                    t[0][j] = g0;
                    t[1][j] = 0.5 * (g0 + g1 + g2);
                    t[2][j] = 0.5 * (g0 - g1 + g2);
                    t[3][j] = g2;
                }
                for (i, row) in t.iter().enumerate() {
                    let out = [
                        row[0],
                        0.5 * (row[0] + row[1] + row[2]),
                        0.5 * (row[0] - row[1] + row[2]),
                        row[2],
                    ];
                    for (j, v) in out.into_iter().enumerate() {
                        u[((i * 4 + j) * c + ci) * k + ki] = v;
                    }
                }
            }
        }
        Self {
            k,
            c,
            u,
            bias: bias.to_vec(),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.k
    }

    /// Input channels, after padding (at least 8).
    pub fn in_channels(&self) -> usize {
        self.c
    }

    /// relu(conv(x) + bias) for a batch stored channels-last: x [N, H, W, C] → [N, H, W, K].
    ///
    /// Tiles are processed in blocks small enough that a block's transformed input and GEMM
    /// output stay near the cache (V and M for a whole 224x224 layer would be 51 MB each: the
    /// early layers were memory-bound without blocking); blocks run in parallel.
    pub fn forward_relu(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        let (k, c) = (self.k, self.c);
        assert_eq!(x.len(), n * h * w * c, "input must be [N, H, W, C]");
        let grid = Grid {
            h,
            w,
            tiles_w: w.div_ceil(2),
            per_image: h.div_ceil(2) * w.div_ceil(2),
        };
        let tiles = n * grid.per_image;
        let block = (32768 / (c + k)).max(128).min(tiles.max(1));
        let mut y = vec![0.0f32; n * h * w * k];
        let out = SharedOut(y.as_mut_ptr());
        (0..tiles.div_ceil(block)).into_par_iter().for_each(|b| {
            let (t0, t1) = (b * block, ((b + 1) * block).min(tiles));
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let p = t1 - t0;
                if scratch.len() < 16 * p * (c + k) {
                    scratch.resize(16 * p * (c + k), 0.0);
                }
                let (v, m) = scratch.split_at_mut(16 * p * c);
                let m = &mut m[..16 * p * k];
                input_transform(self, x, &grid, t0, p, v);
                self.multiply(v, m, p);
                output_transform(self, m, &grid, t0, p, &out);
            });
        });
        y
    }

    /// M[ξ] = V[ξ] U[ξ] for the 16 tile positions ξ: p×C times C×K. V and M are stored tile
    /// by tile ([p][16][C] and [p][16][K]), so V[ξ] and M[ξ] are matrices with a row stride of
    /// 16 rows: the transforms then read and write one contiguous run per tile.
    fn multiply(&self, v: &[f32], m: &mut [f32], p: usize) {
        let (k, c) = (self.k, self.c);
        assert!(v.len() >= 16 * p * c && m.len() >= 16 * p * k);
        for xi in 0..16 {
            let ux = &self.u[xi * c * k..(xi + 1) * c * k];
            // SAFETY: V[ξ] is p rows of C at v[ξ·C + row·16·C] and M[ξ] p rows of K at
            // m[ξ·K + row·16·K], all inside the slices (checked above); U[ξ] is C×K row-major;
            // the 16 M[ξ] are disjoint.
            unsafe {
                gemm::gemm(
                    p,
                    k,
                    c,
                    m.as_mut_ptr().add(xi * k),
                    1,
                    (16 * k) as isize,
                    false,
                    v.as_ptr().add(xi * c),
                    1,
                    (16 * c) as isize,
                    ux.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
}

simd_fn!(
    /// V [p][16][C]: Bᵀ d B of the tiles t0..t0+p, 8 channels at a time.
    fn input_transform(conv: &WinogradConv, x: &[f32], grid: &Grid, t0: usize, p: usize, v: &mut [f32])
        => input_transform_kernel
);

simd_fn!(
    /// relu(Aᵀ M A + bias) of the tiles t0..t0+p into the output, 8 channels at a time.
    fn output_transform(conv: &WinogradConv, m: &[f32], grid: &Grid, t0: usize, p: usize, out: &SharedOut)
        => output_transform_kernel
);

/// V [p][16][C]: Bᵀ d B of the tiles t0..t0+p, 8 channels at a time.
#[inline(always)]
fn input_transform_kernel(
    conv: &WinogradConv,
    x: &[f32],
    grid: &Grid,
    t0: usize,
    p: usize,
    v: &mut [f32],
) {
    let c = conv.c;
    for (j, vt) in v.chunks_mut(16 * c).take(p).enumerate() {
        input_tile(c, x, grid, t0 + j, vt);
    }
}

/// Bᵀ d B of tile `t` into `vt` [16][C], 8 channels at a time.
#[inline(always)]
fn input_tile(c: usize, x: &[f32], grid: &Grid, t: usize, vt: &mut [f32]) {
    let (image, ty, tx) = grid.tile(t);
    // The tile's 4 input rows and columns (padding 1), and which lie inside the image.
    let (y0, x0) = ((2 * ty) as isize - 1, (2 * tx) as isize - 1);
    let inside = |v: isize, size: usize| v >= 0 && (v as usize) < size;
    let rows: [Option<usize>; 4] = [0, 1, 2, 3]
        .map(|i| inside(y0 + i, grid.h).then(|| (image * grid.h + (y0 + i) as usize) * grid.w));
    let cols: [Option<usize>; 4] =
        [0, 1, 2, 3].map(|j| inside(x0 + j, grid.w).then(|| (x0 + j) as usize));
    let (mut d, mut out) = ([[0.0f32; LANES]; 16], [[0.0f32; LANES]; 16]);
    for c0 in (0..c).step_by(LANES) {
        let len = LANES.min(c - c0);
        for (q, lane) in d.iter_mut().enumerate() {
            match (rows[q / 4], cols[q % 4]) {
                (Some(row), Some(col)) => load(lane, &x[(row + col) * c + c0..], len),
                _ => *lane = [0.0; LANES],
            }
        }
        transform_input_tile(&d, &mut out);
        for (xi, lane) in out.iter().enumerate() {
            store(&mut vt[xi * c + c0..], lane, len);
        }
    }
}

/// relu(Aᵀ M A + bias) of the tiles t0..t0+p into the output, 8 channels at a time.
#[inline(always)]
fn output_transform_kernel(
    conv: &WinogradConv,
    m: &[f32],
    grid: &Grid,
    t0: usize,
    p: usize,
    out: &SharedOut,
) {
    for (j, mt) in m.chunks(16 * conv.k).take(p).enumerate() {
        output_tile(conv, mt, grid, t0 + j, out);
    }
}

/// relu(Aᵀ M A + bias) of tile `t` (M [16][K]) into the output, 8 channels at a time.
#[inline(always)]
fn output_tile(conv: &WinogradConv, mt: &[f32], grid: &Grid, t: usize, out: &SharedOut) {
    let k = conv.k;
    let (image, ty, tx) = grid.tile(t);
    let (mut tile, mut bias, mut y) =
        ([[0.0f32; LANES]; 16], [0.0f32; LANES], [[0.0f32; LANES]; 4]);
    for k0 in (0..k).step_by(LANES) {
        let len = LANES.min(k - k0);
        for (xi, lane) in tile.iter_mut().enumerate() {
            load(lane, &mt[xi * k + k0..], len);
        }
        load(&mut bias, &conv.bias[k0..], len);
        transform_output_tile(&tile, &bias, &mut y);
        for (q, lane) in y.iter().enumerate() {
            let (oy, ox) = (2 * ty + q / 2, 2 * tx + q % 2);
            if oy < grid.h && ox < grid.w {
                let at = ((image * grid.h + oy) * grid.w + ox) * k + k0;
                // SAFETY: every output pixel belongs to exactly one tile, and each tile to
                // exactly one block, so blocks write disjoint elements of the output, which
                // outlives the parallel loop; `at + len` ≤ N·H·W·K.
                unsafe {
                    let dst = out.ptr().add(at);
                    match len {
                        LANES => std::ptr::copy_nonoverlapping(lane.as_ptr(), dst, LANES),
                        _ => std::ptr::copy_nonoverlapping(lane.as_ptr(), dst, len),
                    }
                };
            }
        }
    }
}

thread_local! {
    /// Each worker's V and M blocks, kept between calls (no allocation or zeroing per block).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Where the 2x2 output tiles lie in a batch.
struct Grid {
    h: usize,
    w: usize,
    tiles_w: usize,
    per_image: usize,
}

impl Grid {
    /// (image, tile row, tile column) of tile `t`, counted over the whole batch.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let (image, r) = (t / self.per_image, t % self.per_image);
        (image, r / self.tiles_w, r % self.tiles_w)
    }
}

/// dst[..len] = src[..len]: a fixed-size copy when the run is a whole register, else a
/// fixed-count loop (a variable-length copy would be a `memcpy` call per pixel).
#[inline(always)]
fn load(dst: &mut [f32; LANES], src: &[f32], len: usize) {
    match len {
        LANES => dst.copy_from_slice(&src[..LANES]),
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = if i < len { src[i] } else { 0.0 };
            }
        }
    }
}

/// dst[..len] = src[..len], as [`load`].
#[inline(always)]
fn store(dst: &mut [f32], src: &[f32; LANES], len: usize) {
    match len {
        LANES => dst[..LANES].copy_from_slice(src),
        _ => {
            for (i, &v) in src.iter().enumerate() {
                if i < len {
                    dst[i] = v;
                }
            }
        }
    }
}

/// Bᵀ d B of one 4x4 tile (row-major), lane by lane.
#[inline(always)]
fn transform_input_tile(d: &[[f32; LANES]; 16], out: &mut [[f32; LANES]; 16]) {
    for l in 0..LANES {
        let mut t = [0.0f32; 16];
        for col in 0..4 {
            let (d0, d1, d2, d3) = (d[col][l], d[4 + col][l], d[8 + col][l], d[12 + col][l]);
            t[col] = d0 - d2;
            t[4 + col] = d1 + d2;
            t[8 + col] = d2 - d1;
            t[12 + col] = d1 - d3;
        }
        for row in 0..4 {
            let (t0, t1, t2, t3) = (t[row * 4], t[row * 4 + 1], t[row * 4 + 2], t[row * 4 + 3]);
            out[row * 4][l] = t0 - t2;
            out[row * 4 + 1][l] = t1 + t2;
            out[row * 4 + 2][l] = t2 - t1;
            out[row * 4 + 3][l] = t1 - t3;
        }
    }
}

/// relu(Aᵀ m A + bias) of one tile: the 2x2 outputs (row-major), lane by lane.
#[inline(always)]
fn transform_output_tile(m: &[[f32; LANES]; 16], bias: &[f32; LANES], y: &mut [[f32; LANES]; 4]) {
    for l in 0..LANES {
        // s = Aᵀ m (2x4), then s A (2x2).
        let mut s = [0.0f32; 8];
        for col in 0..4 {
            s[col] = m[col][l] + m[4 + col][l] + m[8 + col][l];
            s[4 + col] = m[4 + col][l] - m[8 + col][l] - m[12 + col][l];
        }
        for row in 0..2 {
            let r = &s[row * 4..row * 4 + 4];
            y[row * 2][l] = (r[0] + r[1] + r[2] + bias[l]).max(0.0);
            y[row * 2 + 1][l] = (r[1] - r[2] - r[3] + bias[l]).max(0.0);
        }
    }
}

/// The output buffer, written by several blocks at disjoint positions.
struct SharedOut(*mut f32);
// SAFETY: see the write in `output_transform`: disjoint elements only.
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// 2x2 max pooling, stride 2, of a batch stored channels-last [N, H, W, C] (an odd last row or
/// column is dropped, as burn and PyTorch do) →
/// [N, H/2, W/2, C].
pub fn max_pool_2x2(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![0.0f32; n * oh * ow * c];
    y.par_chunks_mut(ow * c).enumerate().for_each(|(row, out)| {
        let (image, oy) = (row / oh, row % oh);
        let line = |dy: usize| &x[((image * h + 2 * oy + dy) * w) * c..][..w * c];
        let (top, bottom) = (line(0), line(1));
        for (ox, px) in out.chunks_mut(c).enumerate() {
            let at = 2 * ox * c;
            for (ci, v) in px.iter_mut().enumerate() {
                let (a, b) = (top[at + ci], top[at + c + ci]);
                let (cc, d) = (bottom[at + ci], bottom[at + c + ci]);
                *v = a.max(b).max(cc.max(d));
            }
        }
    });
    y
}

/// [P, C] → [P, padded] (zeros in the new channels); `x` itself when nothing is added.
pub fn pad_channels(x: Vec<f32>, c: usize, padded: usize) -> Vec<f32> {
    if padded <= c {
        return x;
    }
    let mut y = vec![0.0f32; x.len() / c.max(1) * padded];
    for (src, dst) in x.chunks(c).zip(y.chunks_mut(padded)) {
        dst[..c].copy_from_slice(src);
    }
    y
}

/// [N, C, H, W] → [N, H, W, C].
pub fn to_channels_last(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    transpose_images(x, n, c, h * w)
}

/// [N, H, W, C] → [N, C, H, W].
pub fn to_channels_first(x: &[f32], n: usize, h: usize, w: usize, c: usize) -> Vec<f32> {
    transpose_images(x, n, h * w, c)
}

/// Each of the `n` images, a [rows, cols] matrix, transposed to [cols, rows].
fn transpose_images(x: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    debug_assert_eq!(x.len(), n * rows * cols);
    y.par_chunks_mut((rows * cols).max(1))
        .zip(x.par_chunks((rows * cols).max(1)))
        .for_each(|(out, src)| {
            for (col, line) in out.chunks_mut(rows.max(1)).enumerate() {
                for (row, v) in line.iter_mut().enumerate() {
                    *v = src[row * cols + col];
                }
            }
        });
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv3x3::tests::{random_values, reference, relative_error};

    #[test]
    fn matches_direct_convolution_even_and_odd_sizes() {
        // Channel counts below, at and above the 8 lanes, odd sizes, batches of 1–3 (the small
        // shapes run the direct kernel in VGG16, but the Winograd one must still be right on
        // them); the last case has 2x17x18 = 612 tiles in blocks of 128: five blocks, the last
        // partial and spanning the two images.
        for (n, c, k, h, w) in [
            (1, 3, 5, 8, 8),
            (2, 7, 4, 5, 7),
            (3, 8, 8, 1, 1),
            (2, 16, 9, 14, 13),
            (1, 17, 23, 6, 9),
            (2, 16, 37, 9, 11),
            (2, 128, 128, 33, 35),
        ] {
            let x = random_values(n as u64 * 31 + c as u64, n * c * h * w);
            let wt = random_values(k as u64 * 7 + 1, k * c * 9);
            let b = random_values(k as u64, k);
            let conv = WinogradConv::new(&wt, &b, k, c);
            let input = pad_channels(to_channels_last(&x, n, c, h, w), c, conv.in_channels());
            let got = conv.forward_relu(&input, n, h, w);
            let got = to_channels_first(&got, n, h, w, k);
            let want: Vec<f32> = x
                .chunks(c * h * w)
                .flat_map(|image| reference(image, &wt, &b, c, k, h, w))
                .collect();
            let err = relative_error(&got, &want);
            assert!(err < 1e-5, "{n}x{c}x{k} at {h}x{w}: relative error {err}");
        }
    }

    #[test]
    fn pooling() {
        // Two images of 2 channels, 4x4, channels first; pooled and compared channels first.
        let x: Vec<f32> = (0..2 * 2 * 4 * 4).map(|i| i as f32).collect();
        let pooled = max_pool_2x2(&to_channels_last(&x, 2, 2, 4, 4), 2, 4, 4, 2);
        assert_eq!(
            to_channels_first(&pooled, 2, 2, 2, 2),
            vec![
                5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0, 37.0, 39.0, 45.0, 47.0, 53.0, 55.0,
                61.0, 63.0
            ]
        );
    }
}
