//! The images a logger explains every epoch, and the images with boxes it scores.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use model::Explainable;

use crate::logging::callback::CallbackError;
use crate::scores::faithfulness::planes;

use crate::scores::faithfulness::Baseline;
use crate::scores::localization_report::{
    score_photos, Annotation, Baseline as LocalizationBaseline, LocalizationReport,
    LocalizationSummary,
};

/// The fixed validation images a logger explains every epoch.
#[derive(Clone)]
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

impl ExplainedImages {
    /// Images of a model that trains end to end (your own model): photos at the network's input
    /// size, normalised by `model` ([`Explainable::normalize`]) and kept, so that every drawing
    /// runs the current model on them (nothing is cached). The photos must all have one size.
    pub fn from_photos(
        model: &dyn Explainable,
        photos: Vec<RgbImage>,
        names: Vec<String>,
        labels: Vec<usize>,
        class_names: Vec<String>,
        device: &Device,
    ) -> Result<Self, CallbackError> {
        let (w, h) = photos.first().map_or((0, 0), |p| p.dimensions());
        if let Some((i, p)) = photos
            .iter()
            .enumerate()
            .find(|(_, p)| p.dimensions() != (w, h))
        {
            let (pw, ph) = p.dimensions();
            return Err(CallbackError::Images(format!(
                "photo {i} is {pw}x{ph}, the first is {w}x{h}: resize them to the network's \
                 input size"
            )));
        }
        if names.len() != photos.len() || labels.len() != photos.len() {
            return Err(CallbackError::Images(format!(
                "{} photos, {} names, {} labels: one of each per image",
                photos.len(),
                names.len(),
                labels.len()
            )));
        }
        let (w, h) = (w as usize, h as usize);
        let mut values: Vec<f32> = photos.iter().flat_map(planes).collect();
        model.normalize(&mut values, w * h);
        let n = photos.len();
        let inputs = Tensor::<4>::from_data(TensorData::new(values, [n, 3, h, w]), device);
        Ok(Self {
            names,
            photos,
            labels,
            class_names,
            activations: Tensor::zeros([n, 0, 0, 0], device),
            inputs: Some(inputs),
        })
    }
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
        if self.annotations.iter().any(|a| a.cue.is_some()) {
            names.push("energy_in_cue_box");
        }
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
