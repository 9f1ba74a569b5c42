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
    /// `<a>_vs_<b>` (with `@layer` when both use the same method).
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
            let name = |l: &CamLogger| {
                if la.method == lb.method {
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
        if pair.must_agree && !(rho >= INVARIANT_MIN_SPEARMAN) {
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
