//! The backbones' forward passes: VGG16 to `block5_conv3` (with its FLOP rate) and
//! EfficientNet-Lite0 to its head, our kernels against burn's ops and, when asked, PyTorch.

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor};
use model::vgg16::Op;
use model::{EfficientNetLite0, Vgg16, VGG16_LAYERS};

use super::{best_seconds, compared, deviation, Bench};
use crate::tensors::to_vec;

/// The side of the images the backbones are timed on.
const SIZE: usize = 224;

/// VGG16's kernel side: every convolution is 3×3.
const KERNEL: usize = 3;

/// GFLOP of one image through VGG16's layers `0..=end` at `[height, width]`, counted as a
/// direct convolution does them: each convolution costs 2·k·k·C_in·C_out·H·W (a multiply and an
/// add per weight per output pixel; k = 3) at its own resolution H×W, which every 2×2 pool
/// halves (rounding down); ReLUs, pools and biases are not counted. To `block5_conv3` at
/// 224×224: 15.35 GMAC, 30.7 GFLOP.
pub(super) fn vgg16_gflop(end: usize, [height, width]: [usize; 2]) -> f64 {
    let (mut h, mut w) = (height, width);
    let mut flop = 0.0;
    for (_, op) in &VGG16_LAYERS[..=end] {
        match *op {
            Op::Conv { c_in, c_out, .. } => {
                flop += (2 * KERNEL * KERNEL * c_in * c_out * h * w) as f64;
            }
            Op::Pool => (h, w) = (h / 2, w / 2),
        }
    }
    flop / 1e9
}

/// VGG16 to `block5_conv3` at 224×224, batch 8: the fast path, burn's ops, PyTorch. Returns the
/// network (the CAM figures reuse it) and the fast path's deviation from burn's ops.
pub(super) fn vgg16(bench: &mut Bench) -> Result<(Vgg16, f32)> {
    let n = 8;
    bench.device.seed(0);
    let vgg = Vgg16::random(1, &bench.device);
    let conv5_3 = model::vgg16::layer_index("block5_conv3").context("layer table")?;
    let batch = Tensor::<4>::random(
        [n, 3, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        &bench.device,
    );
    let fast = to_vec(vgg.run(batch.clone(), 0, conv5_3))?;
    let reference = to_vec(vgg.run_burn(batch.clone(), 0, conv5_3))?;
    let vgg_deviation = deviation(&fast, &reference);
    let repeats = bench.repeats;
    let (fast_s, torch_s) = bench.against_pytorch("vgg16_block5_conv3", n, || {
        best_seconds(repeats, || {
            to_vec(vgg.run(batch.clone(), 0, conv5_3)).map(drop)
        })
    })?;
    let burn_s = best_seconds(if bench.quick { 1 } else { 2 }, || {
        to_vec(vgg.run_burn(batch.clone(), 0, conv5_3)).map(drop)
    })?;
    let key = format!("vgg16_block5_conv3_{SIZE}_b{n}");
    let figures = &mut bench.figures;
    compared(figures, &key, n, fast_s, torch_s);
    figures.add(&format!("{key}_burn_img_per_s"), n as f64 / burn_s, "img/s");
    figures.add(&format!("{key}_vs_burn"), burn_s / fast_s, "x");
    figures.add(
        &format!("{key}_gflop_per_s"),
        n as f64 / fast_s * vgg16_gflop(conv5_3, [SIZE, SIZE]),
        "GFLOP/s (direct-conv count)",
    );
    figures.add(
        "vgg16_fast_vs_burn_max_error_rel_to_max",
        vgg_deviation as f64,
        "",
    );
    Ok((vgg, vgg_deviation))
}

/// EfficientNet-Lite0, 224, batch 32 (8 in quick mode): our depthwise/1x1 kernels, burn's
/// conv2d for every conv, PyTorch. Returns our kernels' deviation from burn's ops.
pub(super) fn effnet(bench: &mut Bench) -> Result<f32> {
    let effnet = EfficientNetLite0::random(&bench.device);
    let b = bench.effnet_batch();
    let x = Tensor::<4>::random(
        [b, 3, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        &bench.device,
    );
    // At a middle block and at the head (random weights saturate many ReLU6s late in the net).
    let mut effnet_deviation = 0f32;
    for end in [9, 17] {
        effnet_deviation = effnet_deviation.max(deviation(
            &to_vec(effnet.run(x.clone(), 0, end))?,
            &to_vec(effnet.run_with_burn_ops(x.clone(), 0, end))?,
        ));
    }
    let repeats = bench.repeats;
    let (s, torch_s) = bench.against_pytorch("effnet_lite0", b, || {
        best_seconds(repeats, || to_vec(effnet.run(x.clone(), 0, 17)).map(drop))
    })?;
    let s_burn = best_seconds(repeats, || {
        to_vec(effnet.run_with_burn_ops(x.clone(), 0, 17)).map(drop)
    })?;
    let key = format!("effnet_lite0_{SIZE}_b{b}");
    let figures = &mut bench.figures;
    compared(figures, &key, b, s, torch_s);
    figures.add(&format!("{key}_burn_img_per_s"), b as f64 / s_burn, "img/s");
    figures.add(&format!("{key}_vs_burn"), s_burn / s, "x");
    figures.add(
        "effnet_kernels_vs_burn_max_error_rel_to_max",
        effnet_deviation as f64,
        "",
    );
    Ok(effnet_deviation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgg16_flops_are_30_7_gflop_at_224_and_scale_with_the_pixels() {
        let end = model::vgg16::layer_index("block5_conv3").unwrap();
        let at_224 = vgg16_gflop(end, [224, 224]);
        assert!((at_224 - 30.7).abs() < 0.1, "{at_224}");
        assert_eq!(vgg16_gflop(end, [448, 448]), 4.0 * at_224);
        let half = vgg16_gflop(end, [224, 112]);
        assert!((half / at_224 - 0.5).abs() < 1e-12, "{half}");
        // The quickstart's 160 px: the pixel ratio.
        let ratio = vgg16_gflop(end, [160, 160]) / at_224;
        assert!(
            (ratio - (160.0f64 / 224.0).powi(2)).abs() < 1e-12,
            "{ratio}"
        );
    }
}
