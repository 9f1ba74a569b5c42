//! ResNet-50: the forward pass from the image to `layer4` at 224, batch 16, and the fine-tuning
//! step of `train_from = "layer4"` on cached `layer3` outputs, each beside PyTorch when asked.

use anyhow::Result;
use burn::tensor::{Distribution, Tensor};
use model::resnet::Depth;
use model::{Backbone, ResNet};

use super::{best_seconds, compared, Bench};
use crate::tensors::to_vec;

/// The side of the images.
const SIZE: usize = 224;

/// ResNet-50 from the image to `layer4` (BN folded), 224, batch 16 (4 in quick mode): the fast
/// path, burn's ops, PyTorch. Returns the fast path's deviation from burn's ops.
pub(super) fn resnet50(bench: &mut Bench) -> Result<f32> {
    let depth = Depth::of(50).expect("ResNet-50 is in the table");
    bench.device.seed(0);
    let net = ResNet::random(depth, None, &bench.device);
    let b = if bench.quick { 4 } else { 16 };
    let x = Tensor::<4>::random(
        [b, 3, SIZE, SIZE],
        Distribution::Normal(0.0, 1.0),
        &bench.device,
    );
    let last = depth.layer_names().len() - 1;
    let deviation = super::deviation(
        &to_vec(net.run(x.clone(), 0, last))?,
        &to_vec(net.run_burn(x.clone(), 0, last))?,
    );
    let repeats = bench.repeats;
    let (s, torch_s) = bench.against_pytorch("resnet50_layer4", b, || {
        best_seconds(repeats, || to_vec(net.run(x.clone(), 0, last)).map(drop))
    })?;
    let s_burn = best_seconds(if bench.quick { 1 } else { 2 }, || {
        to_vec(net.run_burn(x.clone(), 0, last)).map(drop)
    })?;
    let key = format!("resnet50_layer4_{SIZE}_b{b}");
    let figures = &mut bench.figures;
    compared(figures, &key, b, s, torch_s);
    figures.add(&format!("{key}_burn_img_per_s"), b as f64 / s_burn, "img/s");
    figures.add(&format!("{key}_vs_burn"), s_burn / s, "x");
    figures.add(
        "resnet_fast_vs_burn_max_error_rel_to_max",
        deviation as f64,
        "",
    );
    Ok(deviation)
}

/// The fine-tuning step of `train_from = "layer4"`: layer4 + GAP + Linear(2048, 1) on cached
/// 1024x14x14 inputs, forward, loss, backward, Adam with two rates (BN frozen beside the convs).
pub(super) fn resnet50_top_step(bench: &mut Bench) -> Result<()> {
    let depth = Depth::of(50).expect("ResNet-50 is in the table");
    let b = if bench.quick { 4 } else { 16 };
    let (cut, _) = depth.stage_blocks("layer4").expect("layer4");
    let backbone = Backbone::ResNet(ResNet::random(depth, Some(cut), &bench.device));
    let key = format!("resnet50_top_step_b{b}");
    super::top_step_figure(
        bench,
        backbone,
        cut,
        [b, 1024, 14, 14],
        "resnet50_top_step",
        &key,
    )
}
