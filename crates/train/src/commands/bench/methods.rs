//! What each explanation method (and guided backpropagation) costs per image, from the images (the backbone pass
//! included), on the quickstart's network (VGG16 / 8 at 160 px, `block5_conv3`, 64 channels)
//! and on EfficientNet-Lite0 (224 px, `head`, 1280 channels), both with a one-logit
//! gap-linear head on random weights. Score-CAM runs the whole network once per channel per
//! image: on EfficientNet-Lite0 it is timed on one image, once, and skipped in `--quick`.

use anyhow::Result;
use burn::tensor::{Device, Distribution, Tensor};
use callbacks::{explain_with, guided_backprop, guided_gradcam, Method, Options, Target};
use model::{Backbone, Classifier, EfficientNetLite0, Head, HeadKind, Vgg16};

use super::{best_seconds, Figures};
use crate::tensors::to_vec;

/// Adds `method_<name>_<model>_ms_per_img` for every method and both models.
pub(super) fn method_costs(figures: &mut Figures, quick: bool, device: &Device) -> Result<()> {
    let quickstart = Classifier {
        backbone: Backbone::Vgg16(Vgg16::random(8, device)),
        head: Head::new(HeadKind::GapLinear, 64, 1, device),
    };
    let effnet = Classifier {
        backbone: Backbone::EfficientNetLite0(EfficientNetLite0::random(device)),
        head: Head::new(HeadKind::GapLinear, 1280, 1, device),
    };
    for (label, model, layer, size, n) in [
        ("vgg16w8_160", quickstart, "block5_conv3", 160, 4),
        ("effnet_224", effnet, "head", 224, 2),
    ] {
        let images =
            Tensor::<4>::random([n, 3, size, size], Distribution::Normal(0.0, 1.0), device);
        for method in Method::ALL {
            let expensive = method == Method::ScoreCam && label.starts_with("effnet");
            if expensive && quick {
                continue;
            }
            let batch = if expensive {
                images.clone().narrow(0, 0, 1)
            } else {
                images.clone()
            };
            let count = batch.dims()[0];
            let run = || {
                let e = explain_with(&model, batch.clone(), layer, method, Options::default())?;
                to_vec(e.maps).map(drop)
            };
            let seconds = if expensive {
                let start = std::time::Instant::now();
                run()?;
                start.elapsed().as_secs_f64()
            } else {
                best_seconds(if quick { 1 } else { 3 }, run)?
            };
            let name = method.name().replace("++", "pp").replace('-', "_");
            let key = format!("method_{name}_{label}_ms_per_img");
            figures.add(&key, seconds / count as f64 * 1e3, "ms/img");
        }
        for name in ["guided_backprop", "guided_gradcam"] {
            let seconds = best_seconds(if quick { 1 } else { 3 }, || {
                let out = match name {
                    "guided_backprop" => {
                        guided_backprop(&model, images.clone(), Target::Predicted)?
                    }
                    _ => guided_gradcam(&model, images.clone(), layer, Target::Predicted)?,
                };
                to_vec(out.values).map(drop)
            })?;
            let key = format!("method_{name}_{label}_ms_per_img");
            figures.add(&key, seconds / n as f64 * 1e3, "ms/img");
        }
    }
    Ok(())
}
