//! Agreement between the methods of one run, per epoch: the mean over the shared images of the
//! Spearman rank correlation and the IoU of the top-20 % pixels of each pair of loggers' maps,
//! logged as `agreement/<a>_vs_<b>/spearman` and `agreement/<a>_vs_<b>/top20_iou`.
//!
//! The invariant: on a gap-linear head at the pooled layer, Grad-CAM's channel weights are the
//! head's weights (up to a positive factor), so CAM and Grad-CAM maps are the same (ρ ≈ 1).
//! A pair that should agree and does not is reported as a warning.

use model::Explainable;
use rayon::prelude::*;

use crate::engine::pipeline::Method;
use crate::logging::callback::{Callback, CallbackContext, CallbackError, RenderedMaps};
use crate::logging::cam_logger::CamLogger;
use crate::logging::sink::each_sink;
use crate::logging::tags::{agreement_pair, Metric, AGREEMENT_MEASURES};
use crate::scores::ranks::{spearman, top_fraction_iou};

/// The fraction of pixels compared by the top-region IoU.
pub const TOP_FRACTION: f32 = 0.2;

/// Below this Spearman ρ a pair that must agree is reported.
pub const INVARIANT_MIN_SPEARMAN: f32 = 0.99;

/// Two loggers whose maps are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The first logger's [`Callback::name`].
    pub a: String,
    /// The second logger's [`Callback::name`].
    pub b: String,
    /// `<a>_vs_<b>` (a method that several loggers use is written `<method>@<layer>`).
    pub label: String,
    /// CAM and Grad-CAM at the pooled layer of a gap-linear head: must agree.
    pub must_agree: bool,
}

/// The agreement callback: runs after the loggers and compares the maps they rendered.
pub struct Agreement {
    /// Every pair of loggers.
    pub pairs: Vec<Pair>,
}

impl Agreement {
    /// Compare every pair of `loggers` (which must run before this callback).
    pub fn new(loggers: &[CamLogger], model: &dyn Explainable) -> Self {
        let mut pairs = Vec::new();
        // A method used by several loggers is named with its layer, so labels never collide.
        let name = |l: &CamLogger| {
            if loggers.iter().filter(|o| o.method == l.method).count() > 1 {
                format!("{}@{}", l.method, l.layer)
            } else {
                l.method.to_string()
            }
        };
        for (i, la) in loggers.iter().enumerate() {
            for lb in &loggers[i + 1..] {
                let cam_and_gradcam = matches!(
                    (la.method, lb.method),
                    (Method::Cam, Method::GradCam) | (Method::GradCam, Method::Cam)
                );
                // By index: two names can be one layer (a ResNet's `layer4` and its last block).
                let (a, b) = (model.layer(&la.layer).ok(), model.layer(&lb.layer).ok());
                let cam_layer = a.is_some_and(|index| model.cam_weights(index).is_some());
                pairs.push(Pair {
                    a: la.name(),
                    b: lb.name(),
                    label: agreement_pair(&name(la), &name(lb)),
                    must_agree: cam_and_gradcam && a == b && cam_layer,
                });
            }
        }
        Self { pairs }
    }
}

/// Mean Spearman ρ and top-20 % IoU of two sets of maps over their shared images (`None` when
/// they have different sizes or images).
pub fn scores(a: &RenderedMaps, b: &RenderedMaps) -> Option<(f32, f32)> {
    let plane = a.size[0] * a.size[1];
    let n = a.names.len().min(b.names.len());
    if a.size != b.size || n == 0 || a.names[..n] != b.names[..n] {
        return None;
    }
    // Images in parallel, summed in order (the same figures on any thread count).
    let per_image: Vec<(f32, f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (x, y) = (
                &a.maps[i * plane..(i + 1) * plane],
                &b.maps[i * plane..(i + 1) * plane],
            );
            (spearman(x, y), top_fraction_iou(x, y, TOP_FRACTION))
        })
        .collect();
    let (rho, iou) = per_image
        .iter()
        .fold((0.0, 0.0), |(r, u), (x, y)| (r + x, u + y));
    Some((rho / n as f32, iou / n as f32))
}

impl Callback for Agreement {
    fn name(&self) -> String {
        "agreement".into()
    }

    fn scalar_tags(&self) -> Vec<String> {
        self.pairs
            .iter()
            .flat_map(|p| AGREEMENT_MEASURES.map(|measure| agreement_tag(&p.label, measure)))
            .collect()
    }

    /// Step 0: the maps before training agree (or not) like every epoch's.
    fn on_train_start(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        self.on_epoch_end(ctx)
    }

    /// Log each pair's agreement when both rendered this epoch; warn per broken invariant.
    fn on_epoch_end(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        let step = ctx.epoch as i64;
        for pair in &self.pairs {
            let find = |name: &str| ctx.rendered.iter().find(|r| r.callback == name);
            let Some((rho, iou)) = find(&pair.a)
                .zip(find(&pair.b))
                .and_then(|(a, b)| scores(a, b))
            else {
                continue;
            };
            for (measure, value) in AGREEMENT_MEASURES.into_iter().zip([rho, iou]) {
                let tag = agreement_tag(&pair.label, measure);
                each_sink(ctx.sinks, |s| s.scalar(&tag, value, step))?;
            }
            // NaN (e.g. constant maps) counts as a disagreement.
            if pair.must_agree && (rho.is_nan() || rho < INVARIANT_MIN_SPEARMAN) {
                let warning = format!(
                    "epoch {step}: {} Spearman ρ = {rho:.4} < {INVARIANT_MIN_SPEARMAN}: CAM and \
                     Grad-CAM at the pooled layer of a gap-linear head must give the same maps; \
                     something is wrong",
                    pair.label
                );
                each_sink(ctx.sinks, |s| s.text("agreement/warning", &warning, step))?;
                ctx.warnings.push(warning);
            }
        }
        Ok(())
    }
}

/// The tag of a pair's agreement `measure`.
fn agreement_tag(pair: &str, measure: &str) -> String {
    Metric::Agreement {
        pair: pair.into(),
        measure: measure.into(),
    }
    .tag()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::image_sets::ExplainedImages;
    use crate::logging::sink::Sink;
    use burn::tensor::{Device, Tensor};
    use image::RgbImage;
    use model::{Backbone, Classifier, Head, HeadKind, Vgg16};

    fn logger(method: Method, layer: &str) -> CamLogger {
        let images = ExplainedImages {
            names: vec!["a".into(), "b".into()],
            photos: vec![RgbImage::new(4, 4); 2],
            labels: vec![0, 1],
            class_names: vec!["cat".into(), "dog".into()],
            activations: Tensor::zeros([2, 1, 1, 1], &Device::default()),
            inputs: None,
        };
        CamLogger::new(method, Default::default(), layer, images)
    }

    /// Records scalars by tag into a shared list.
    #[derive(Default, Clone)]
    struct Scalars(std::sync::Arc<std::sync::Mutex<Vec<(String, f32)>>>);
    impl Sink for Scalars {
        fn scalar(&mut self, tag: &str, value: f32, _: i64) -> Result<(), crate::SinkError> {
            self.0.lock().unwrap().push((tag.into(), value));
            Ok(())
        }
        fn images(&mut self, _: &str, _: &[RgbImage], _: i64) -> Result<(), crate::SinkError> {
            Ok(())
        }
        fn text(&mut self, _: &str, _: &str, _: i64) -> Result<(), crate::SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), crate::SinkError> {
            Ok(())
        }
    }

    #[test]
    fn pairs_scores_and_the_invariant_warning() {
        let device = Device::default();
        let model = Classifier {
            backbone: Backbone::Vgg16(Vgg16::random(8, &device)),
            head: Head::new(HeadKind::GapLinear, 64, 1, &device),
        };
        let loggers = vec![
            logger(Method::Cam, "block5_conv3"),
            logger(Method::GradCam, "block5_conv3"),
            logger(Method::GradCam, "block4_conv3"),
        ];
        let mut agreement = Agreement::new(&loggers, &model);
        let labels: Vec<(&str, bool)> = agreement
            .pairs
            .iter()
            .map(|p| (p.label.as_str(), p.must_agree))
            .collect();
        assert_eq!(
            labels,
            [
                ("cam_vs_gradcam@block5_conv3", true),
                ("cam_vs_gradcam@block4_conv3", false),
                ("gradcam@block5_conv3_vs_gradcam@block4_conv3", false)
            ]
        );
        // Only the first two rendered this epoch; the third logger did not (`every` > 1).
        let map: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let rendered = |l: &CamLogger, maps: Vec<f32>| RenderedMaps {
            callback: l.name(),
            names: vec!["a".into(), "b".into()],
            size: [4, 4],
            maps,
        };
        let mut rendered = vec![
            rendered(&loggers[0], map.clone()),
            rendered(&loggers[1], map.iter().rev().copied().collect()),
        ];
        let scalars = Scalars::default();
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(scalars.clone())];
        let mut warnings = Vec::new();
        let mut ctx = CallbackContext {
            model: &model,
            epoch: 2,
            sinks: &mut sinks,
            rendered: &mut rendered,
            warnings: &mut warnings,
            curves: &mut Default::default(),
        };
        agreement.on_epoch_end(&mut ctx).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("must give the same maps"));
        // Reversed maps: ρ = −1, disjoint top-20 %; pairs with the silent logger log nothing.
        let logged = scalars.0.lock().unwrap();
        let tags: Vec<&str> = logged.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, agreement.scalar_tags()[..2]);
        assert_eq!(
            tags,
            [
                "agreement/cam_vs_gradcam@block5_conv3/spearman",
                "agreement/cam_vs_gradcam@block5_conv3/top20_iou"
            ]
        );
        assert!((logged[0].1 + 1.0).abs() < 1e-6 && logged[1].1 == 0.0);
    }
}
