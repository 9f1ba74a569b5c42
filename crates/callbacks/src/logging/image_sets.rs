//! The images a logger explains every epoch, and the images with boxes it scores.

use burn::tensor::Tensor;
use image::RgbImage;

use crate::scores::faithfulness::Baseline;
use crate::scores::localization_report::{
    score_photos, Annotation, Baseline as LocalizationBaseline, LocalizationReport,
    LocalizationSummary,
};

/// The fixed validation images a logger explains every epoch.
pub struct ExplainedImages {
    /// Names (file stems), used in tags.
    pub names: Vec<String>,
    /// The photos at the network's input size.
    pub photos: Vec<RgbImage>,
    /// True class of each image.
    pub labels: Vec<usize>,
    /// Class names, by class id.
    pub class_names: Vec<String>,
    /// The images' activations at the logger's layer [N, C, h, w] — or, when the logger's
    /// `recompute_from` is set, at the input of that layer (cached: the frozen part of the
    /// backbone is not rerun every epoch).
    pub activations: Tensor<4>,
    /// The normalised images [N, 3, H, W], kept only for methods that run the whole network
    /// on changed copies of them (Score-CAM, `aug_smooth`); `None` otherwise.
    pub inputs: Option<Tensor<4>>,
}

/// Validation images with ground-truth boxes, to score the maps' localization every epoch.
pub struct LocalizationSet {
    /// Activations at the logger's layer [N, C, h, w] (or at the input of `recompute_from`,
    /// as [`ExplainedImages::activations`]).
    pub activations: Tensor<4>,
    /// The network's input size [H, W] (the maps' size before resizing to the photos).
    pub input_size: [usize; 2],
    /// Each image's head box and (when the boxes file has it) outline, in its upright pixels.
    pub annotations: Vec<Annotation>,
    /// Each image's upright (width, height).
    pub sizes: Vec<(usize, usize)>,
    /// The normalised images, as [`ExplainedImages::inputs`].
    pub inputs: Option<Tensor<4>>,
    /// Threshold of the box-IoU region (CAM paper 0.2, Grad-CAM paper 0.15).
    pub threshold: f32,
    /// The baselines' scores on this set (see [`LocalizationSet::score_baselines`]), logged
    /// beside the method's at every drawing.
    pub baselines: Vec<(LocalizationBaseline, LocalizationSummary)>,
}

impl LocalizationSet {
    /// Whether some image has an outline (then the whole-animal scores are computed).
    pub fn has_outlines(&self) -> bool {
        self.annotations.iter().any(|a| a.body.is_some())
    }

    /// An empty report with this set's settings.
    pub(crate) fn report(&self) -> LocalizationReport {
        LocalizationReport::with_box_iou(self.threshold)
    }

    /// Score `baselines` on the set once (they do not depend on the model), into
    /// [`baselines`](Self::baselines).
    pub fn score_baselines(&mut self, baselines: &[LocalizationBaseline]) {
        self.baselines = baselines
            .iter()
            .map(|&b| {
                let report = score_photos(&self.report(), &self.annotations, |i| {
                    b.map(self.sizes[i].0, self.sizes[i].1)
                });
                (b, report.summary())
            })
            .collect();
    }

    /// The names of the scores a drawing logs (see [`LocalizationSummary::scores`]).
    pub(crate) fn score_names(&self) -> Vec<&'static str> {
        let mut names = LocalizationSummary::HEAD_SCORES.to_vec();
        names.push("box_iou");
        if self.has_outlines() {
            names.extend(LocalizationSummary::OUTLINE_SCORES);
        }
        names
    }
}

/// Faithfulness scoring of a logger's first `images` images each epoch (see
/// [`faithfulness`](crate::scores::faithfulness)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaithfulnessSettings {
    /// How many of the logger's images are scored (each costs `2·steps + 1` forward passes).
    pub images: usize,
    /// What removed pixels become.
    pub baseline: Baseline,
    /// Deletion/insertion steps (20 in RISE).
    pub steps: usize,
}
