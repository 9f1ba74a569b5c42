//! A drawing's localization scores: the maps of the logger's localization set scored against
//! their boxes and outlines, with the set's baselines logged beside each score.

use model::Explainable;

use super::{to_vec, CamLogger};
use crate::logging::callback::{CallbackContext, CallbackError};
use crate::logging::image_sets::LocalizationSet;
use crate::logging::sink::each_sink;
use crate::logging::tags::method_tag;
use crate::scores::localization::Map;
use crate::scores::localization_report::{score_photos, LocalizationSummary};

impl CamLogger {
    /// The maps' localization scores on `set`, in [`LocalizationSummary::scores`]' order.
    fn localize(
        &self,
        model: &dyn Explainable,
        set: &LocalizationSet,
    ) -> Result<Vec<(&'static str, f64)>, CallbackError> {
        let n = set.annotations.len();
        let [h, w] = set.input_size;
        let mut report = set.report();
        let chunk = 64;
        for start in (0..n).step_by(chunk) {
            let len = chunk.min(n - start);
            let inputs = set.inputs.as_ref().map(|x| x.clone().narrow(0, start, len));
            let cached = set.activations.clone().narrow(0, start, len);
            let out = self.explain(model, cached, inputs, [h, w])?;
            let values = to_vec(out.maps, "maps")?;
            let truths = &set.annotations[start..start + len];
            let chunk_report = score_photos(&set.report(), truths, |i| {
                let (width, height) = set.sizes[start + i];
                Map {
                    width: w,
                    height: h,
                    values: values[i * h * w..(i + 1) * h * w].to_vec(),
                }
                .resize(width, height)
            });
            report.merge(&chunk_report);
        }
        Ok(report.summary().scores())
    }

    /// The maps' localization scores on `set` (see [`localize`](Self::localize)), after
    /// logging the set's baselines beside each score at `step`.
    pub(super) fn localization_scalars(
        &self,
        ctx: &mut CallbackContext,
        set: &LocalizationSet,
        step: i64,
    ) -> Result<Vec<(&'static str, f32)>, CallbackError> {
        let mut scalars = Vec::new();
        for (name, value) in self.localize(ctx.model, set)? {
            scalars.push((name, value as f32));
        }
        // Each baseline beside each score: the scalar `baseline_<kind>/<score>` (metrics.csv
        // `baseline_<kind>_<score>`), drawn in the score's chart by the run's custom scalars
        // layout.
        for (baseline, summary) in &set.baselines {
            for (name, value) in baseline_scores(summary) {
                let tag = method_tag(baseline.name(), name);
                each_sink(ctx.sinks, |s| s.scalar(&tag, value as f32, step))?;
            }
        }
        Ok(scalars)
    }
}

/// The scores a baseline is logged with: all but `box_iou`, whose region threshold is each
/// method's own (so a baseline's value would depend on which callback logged it).
pub(super) fn baseline_scores(summary: &LocalizationSummary) -> Vec<(&'static str, f64)> {
    let mut scores = summary.scores();
    scores.retain(|(name, _)| *name != "box_iou");
    scores
}
