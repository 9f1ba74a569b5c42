//! Agreement between the methods of one run, per epoch: the mean over the shared images of the
//! Spearman rank correlation and the IoU of the top-20 % pixels of each pair of loggers' maps,
//! logged as `agreement/<a>_vs_<b>/spearman` and `agreement/<a>_vs_<b>/top20_iou`.
//!
//! The invariant: on a gap-linear head at the pooled layer, Grad-CAM's channel weights are the
//! head's weights (up to a positive factor), so CAM and Grad-CAM maps are the same (ρ ≈ 1).
//! A pair that should agree and does not is reported as a warning.

use model::{Classifier, HeadKind};

use crate::cam::Method;
use crate::faithfulness::{spearman, top_fraction_iou};
use crate::logger::{CallbackError, CamLogger};
use crate::sink::{each_sink, Sink};

/// The fraction of pixels compared by the top-region IoU.
pub const TOP_FRACTION: f32 = 0.2;

/// Below this Spearman ρ a pair that must agree is reported.
pub const INVARIANT_MIN_SPEARMAN: f32 = 0.99;

/// Two loggers whose maps are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Index of the first logger.
    pub a: usize,
    /// Index of the second logger.
    pub b: usize,
    /// `<a>_vs_<b>` (a method that several loggers use is written `<method>@<layer>`).
    pub label: String,
    /// CAM and Grad-CAM at the pooled layer of a gap-linear head: must agree.
    pub must_agree: bool,
}

/// Every pair of loggers.
pub fn pairs(loggers: &[CamLogger], model: &Classifier) -> Vec<Pair> {
    let mut out = Vec::new();
    for a in 0..loggers.len() {
        for b in a + 1..loggers.len() {
            let (la, lb) = (&loggers[a], &loggers[b]);
            // A method used by several loggers is named with its layer, so labels never collide.
            let name = |l: &CamLogger| {
                if loggers.iter().filter(|o| o.method == l.method).count() > 1 {
                    format!("{}@{}", l.method, l.layer)
                } else {
                    l.method.to_string()
                }
            };
            let cam_and_gradcam = matches!(
                (la.method, lb.method),
                (Method::Cam, Method::GradCam) | (Method::GradCam, Method::Cam)
            );
            let pooled = model.layer(&la.layer).ok() == Some(model.head_input());
            out.push(Pair {
                a,
                b,
                label: format!("{}_vs_{}", name(la), name(lb)),
                must_agree: cam_and_gradcam
                    && la.layer == lb.layer
                    && pooled
                    && model.head.kind() == HeadKind::GapLinear,
            });
        }
    }
    out
}

/// Column names of the pairs' scores, in the order of [`log_epoch`]'s values.
pub fn column_names(pairs: &[Pair]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| {
            [
                format!("{}_spearman", p.label),
                format!("{}_top20_iou", p.label),
            ]
        })
        .collect()
}

/// Mean Spearman ρ and top-20 % IoU of two loggers' maps of `epoch` over their shared images
/// (`None` when either did not render that epoch).
pub fn scores(a: &CamLogger, b: &CamLogger, epoch: usize) -> Option<(f32, f32)> {
    let (ea, ma) = a.last_maps.as_ref()?;
    let (eb, mb) = b.last_maps.as_ref()?;
    let photo = a.images.photos.first()?;
    if *ea != epoch || *eb != epoch || b.images.photos.first()?.dimensions() != photo.dimensions() {
        return None;
    }
    let plane = (photo.width() * photo.height()) as usize;
    let n = a.images.names.len().min(b.images.names.len());
    if n == 0 || a.images.names[..n] != b.images.names[..n] {
        return None;
    }
    let (mut rho, mut iou) = (0.0, 0.0);
    for i in 0..n {
        let (x, y) = (
            &ma[i * plane..(i + 1) * plane],
            &mb[i * plane..(i + 1) * plane],
        );
        rho += spearman(x, y);
        iou += top_fraction_iou(x, y, TOP_FRACTION);
    }
    Some((rho / n as f32, iou / n as f32))
}

/// Log the pairs' agreement after `epoch`; returns the values in [`column_names`] order (NaN
/// where not computed) and a warning per broken invariant.
pub fn log_epoch(
    loggers: &[CamLogger],
    pairs: &[Pair],
    epoch: usize,
    sinks: &mut [Box<dyn Sink>],
) -> Result<(Vec<f32>, Vec<String>), CallbackError> {
    let (mut values, mut warnings) = (Vec::new(), Vec::new());
    for pair in pairs {
        let Some((rho, iou)) = scores(&loggers[pair.a], &loggers[pair.b], epoch) else {
            values.extend([f32::NAN, f32::NAN]);
            continue;
        };
        for (name, value) in [("spearman", rho), ("top20_iou", iou)] {
            each_sink(sinks, |s| {
                s.scalar(
                    &format!("agreement/{}/{name}", pair.label),
                    value,
                    epoch as i64,
                )
            })?;
        }
        // NaN (e.g. constant maps) counts as a disagreement.
        if pair.must_agree && (rho.is_nan() || rho < INVARIANT_MIN_SPEARMAN) {
            let warning = format!(
                "epoch {epoch}: {} Spearman ρ = {rho:.4} < {INVARIANT_MIN_SPEARMAN}: CAM and \
                 Grad-CAM at the pooled layer of a gap-linear head must give the same maps; \
                 something is wrong",
                pair.label
            );
            each_sink(sinks, |s| {
                s.text("agreement/warning", &warning, epoch as i64)
            })?;
            warnings.push(warning);
        }
        values.extend([rho, iou]);
    }
    Ok((values, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::ExplainedImages;
    use burn::tensor::{Device, Tensor};
    use image::RgbImage;
    use model::{Backbone, Head, Vgg16};

    fn logger(method: Method, layer: &str, maps: Option<(usize, Vec<f32>)>) -> CamLogger {
        CamLogger {
            method,
            layer: layer.into(),
            every: 1,
            style: Default::default(),
            images: ExplainedImages {
                names: vec!["a".into(), "b".into()],
                photos: vec![RgbImage::new(4, 4); 2],
                labels: vec![0, 1],
                class_names: vec!["cat".into(), "dog".into()],
                activations: Tensor::zeros([2, 1, 1, 1], &Device::default()),
            },
            localization: None,
            faithfulness: None,
            last_scalars: Vec::new(),
            last_maps: maps,
        }
    }

    #[test]
    fn pairs_scores_and_the_invariant_warning() {
        let device = Device::default();
        let model = Classifier {
            backbone: Backbone::Vgg16(Vgg16::random(8, &device)),
            head: Head::new(HeadKind::GapLinear, 64, 1, &device),
        };
        let map: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let reversed: Vec<f32> = map.iter().rev().copied().collect();
        let loggers = vec![
            logger(Method::Cam, "block5_conv3", Some((2, map.clone()))),
            logger(Method::GradCam, "block5_conv3", Some((2, reversed))),
            logger(Method::GradCam, "block4_conv3", Some((1, map))),
        ];
        let pairs = pairs(&loggers, &model);
        let labels: Vec<(&str, bool)> = pairs
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
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let (values, warnings) = log_epoch(&loggers, &pairs, 2, &mut sinks).unwrap();
        // Reversed maps: ρ = −1, disjoint top-20 %; the epoch-1 logger is not compared.
        assert!(
            (values[0] + 1.0).abs() < 1e-6 && values[1] == 0.0,
            "{values:?}"
        );
        assert!(values[2..].iter().all(|v| v.is_nan()));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("must give the same maps"));
        assert_eq!(
            column_names(&pairs[..1]),
            [
                "cam_vs_gradcam@block5_conv3_spearman",
                "cam_vs_gradcam@block5_conv3_top20_iou"
            ]
        );
    }
}
