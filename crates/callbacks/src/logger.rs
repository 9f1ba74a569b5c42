//! Per-epoch callbacks: [`Callback`] and the [`CamLogger`] that renders heatmaps of a fixed set
//! of validation images after every `every` epochs (the seed blog's `CamLogger` /
//! `GRADCamLogger`, batched, for each image's predicted class).

use burn::tensor::Tensor;
use image::{Rgb, RgbImage};
use model::Classifier;

use std::collections::HashMap;

use crate::cam::{
    check_method, explain_activations_with, explain_with, ExplainError, Explanation, Method,
    Options,
};
use crate::evolution::MapHistory;
use crate::faithfulness::{self, Baseline, CurveCache, FaithfulnessScores};
use crate::localization::Map;
use crate::localization_report::{
    score_photos, Annotation, Baseline as LocalizationBaseline, LocalizationReport,
    LocalizationSummary,
};
use crate::render::{overlay, OverlayStyle};
use crate::road::RoadSummary;
use crate::sink::{each_sink, Sink, SinkError};

/// An error from a callback.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Computing the maps failed.
    #[error(transparent)]
    Explain(#[from] ExplainError),
    /// Writing the results failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Scoring faithfulness failed.
    #[error("faithfulness: {0}")]
    Faithfulness(String),
    /// Scoring ROAD failed.
    #[error(transparent)]
    Road(#[from] crate::road::RoadError),
    /// A saved state could not be restored.
    #[error("cannot restore the saved state: {0}")]
    State(String),
    /// Reading a tensor back failed.
    #[error("cannot read {what} back from the device: {cause}")]
    Data {
        /// Which tensor.
        what: &'static str,
        /// The cause.
        cause: String,
    },
}

/// What a callback sees: the model after the epoch, the epoch (1-based), the sinks, the maps
/// the callbacks before it rendered this epoch, and a place for warnings.
pub struct CallbackContext<'a> {
    /// The model as trained so far.
    pub model: &'a Classifier,
    /// The epoch that just ended (1-based); 0 at train start.
    pub epoch: usize,
    /// Where results go.
    pub sinks: &'a mut [Box<dyn Sink>],
    /// Maps rendered this epoch by the callbacks that ran before (empty at each epoch's start).
    pub rendered: &'a mut Vec<RenderedMaps>,
    /// Warnings for the user (the training loop prints them).
    pub warnings: &'a mut Vec<String>,
    /// Faithfulness curves computed this drawing, shared by the callbacks (one per drawing).
    pub curves: &'a mut CurveCache,
}

/// The normalised maps one callback rendered in one epoch, for callbacks that compare methods.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedMaps {
    /// The callback's [`name`](Callback::name).
    pub callback: String,
    /// The images' names.
    pub names: Vec<String>,
    /// The maps' size [H, W].
    pub size: [usize; 2],
    /// The maps [N·H·W], each in [0, 1].
    pub maps: Vec<f32>,
}

/// A training callback.
pub trait Callback {
    /// Name, for timings and logs.
    fn name(&self) -> String;
    /// The scalar tags this callback logs on the epochs it runs (metrics.csv's columns).
    fn scalar_tags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Before the first epoch (step 0: the model before any update).
    fn on_train_start(&mut self, _ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        Ok(())
    }
    /// After each epoch.
    fn on_epoch_end(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError>;
    /// After the last epoch.
    fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        Ok(())
    }
    /// What the callback must carry across a resume, as named byte blobs (saved with every
    /// checkpoint).
    fn save_state(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
    /// Restore a [`save_state`](Self::save_state) (the blobs it saved, by name).
    fn load_state(&mut self, _blobs: &HashMap<String, Vec<u8>>) -> Result<(), CallbackError> {
        Ok(())
    }
}

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
    fn report(&self) -> LocalizationReport {
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
    fn score_names(&self) -> Vec<&'static str> {
        let mut names = LocalizationSummary::HEAD_SCORES.to_vec();
        names.push("box_iou");
        if self.has_outlines() {
            names.extend(LocalizationSummary::OUTLINE_SCORES);
        }
        names
    }
}

/// Faithfulness scoring of a logger's first `images` images each epoch (see
/// [`faithfulness`](crate::faithfulness)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaithfulnessSettings {
    /// How many of the logger's images are scored (each costs `2·steps + 1` forward passes).
    pub images: usize,
    /// What removed pixels become.
    pub baseline: Baseline,
    /// Deletion/insertion steps (20 in RISE).
    pub steps: usize,
}

/// Renders `method` heatmaps of fixed validation images before training (step 0) and every
/// `every` epochs: one TensorBoard image tag per image (`<method>/<name>`, step = epoch), a grid
/// (`<method>/grid`), a caption table (`<method>/captions`: true class, predicted class,
/// probability), the drifts (`<method>/drift`, `<method>/drift_from_start`) and, at the end,
/// each image's evolution strip (`<method>/evolution/<name>`).
pub struct CamLogger {
    /// The method.
    pub method: Method,
    /// The engine's options (eigen_smooth, aug_smooth, the random baseline's seed); the target
    /// is always each image's predicted class.
    pub options: Options,
    /// The explained layer.
    pub layer: String,
    /// Run every this many epochs.
    pub every: usize,
    /// Overlay colours.
    pub style: OverlayStyle,
    /// The images.
    pub images: ExplainedImages,
    /// Images with boxes: each epoch the scores of [`LocalizationSummary::scores`] (pointing
    /// game strict and within 15 px, energy in box, box IoU; with outlines MaxBoxAccV2, its
    /// three levels and PxAP), logged as `<method>/<score>`, with the set's baselines beside
    /// them (see [`Sink::series_scalar`]).
    pub localization: Option<LocalizationSet>,
    /// Score Average Drop, Increase in Confidence and deletion/insertion AUC each epoch,
    /// logged as `<method>/<score>`.
    pub faithfulness: Option<FaithfulnessSettings>,
    /// Score ROAD ([`crate::road`]) on this many of the images each drawing (0: off), logged
    /// as `<method>/road_morf`, `road_lerf`, `road_combined`.
    pub road_images: usize,
    /// `Some(cut)` when the backbone trains from layer `cut` up to (at least) the logger's
    /// layer: the cached activations are the input of layer `cut`, and each drawing runs them
    /// through the current weights to the logger's layer.
    pub recompute_from: Option<usize>,
    /// The maps drawn so far (drifts, evolution strip).
    pub history: MapHistory,
}

impl CamLogger {
    /// Names of the scalars this logger writes each epoch (tags `<method>/<name>`).
    fn scalar_names(&self) -> Vec<&'static str> {
        let mut names = vec!["drift", "drift_from_start"];
        if let Some(set) = &self.localization {
            names.extend(set.score_names());
        }
        if self.faithfulness.is_some() {
            names.extend(FaithfulnessScores::NAMES);
        }
        if self.road_images > 0 {
            names.extend(RoadSummary::NAMES);
        }
        names
    }

    /// The maps' localization scores on `set`, in [`LocalizationSummary::scores`]' order.
    fn localize(
        &self,
        model: &Classifier,
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
}

impl CamLogger {
    /// The maps of a batch: from the images when the logger has them (Score-CAM, aug_smooth),
    /// else from the cached activations; `size` is the images' [H, W].
    fn explain(
        &self,
        model: &Classifier,
        cached: Tensor<4>,
        inputs: Option<Tensor<4>>,
        size: [usize; 2],
    ) -> Result<Explanation, CallbackError> {
        let options = self.options;
        Ok(match inputs {
            Some(inputs) => explain_with(model, inputs, &self.layer, self.method, options)?,
            None => {
                let acts = self.current(model, cached)?;
                explain_activations_with(model, &self.layer, acts, size, self.method, options)?
            }
        })
    }

    /// The activations at the logger's layer from the cached ones (see `recompute_from`).
    fn current(&self, model: &Classifier, cached: Tensor<4>) -> Result<Tensor<4>, CallbackError> {
        match self.recompute_from {
            None => Ok(cached),
            Some(cut) => {
                let layer = check_method(model, &self.layer, self.method)?;
                Ok(model.backbone.run(cached, cut, layer))
            }
        }
    }

    /// Draw the maps of `ctx.epoch` (0: before training) and log them with their scores.
    fn draw(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        if self.images.names.is_empty() {
            return Ok(());
        }
        let (width, height) = self.images.photos[0].dimensions();
        let size = [height as usize, width as usize];
        let out = self.explain(
            ctx.model,
            self.images.activations.clone(),
            self.images.inputs.clone(),
            size,
        )?;
        let num_logits = out.logits.dims()[1];
        let maps = to_vec(out.maps, "maps")?;
        let logits = to_vec(out.logits, "logits")?;
        let plane = size[0] * size[1];
        let step = ctx.epoch as i64;
        let method = self.method.name();
        let mut overlays = Vec::with_capacity(self.images.names.len());
        let mut captions = format!(
            "epoch {step}, {method} at `{}`\n\n| image | true | predicted | p |\n|---|---|---|---|\n",
            self.layer
        );
        let class_name = |c: usize| {
            self.images
                .class_names
                .get(c)
                .cloned()
                .unwrap_or(c.to_string())
        };
        for (i, name) in self.images.names.iter().enumerate() {
            let picture = overlay(
                &maps[i * plane..(i + 1) * plane],
                &self.images.photos[i],
                &self.style,
            );
            let (predicted, p) = prediction(&logits[i * num_logits..(i + 1) * num_logits]);
            let label = self.images.labels[i];
            captions.push_str(&format!(
                "| {name} | {} | {}{} | {p:.3} |\n",
                class_name(label),
                class_name(predicted),
                if predicted == label { "" } else { " ✗" }
            ));
            each_sink(ctx.sinks, |s| {
                s.images(
                    &format!("{method}/{name}"),
                    std::slice::from_ref(&picture),
                    step,
                )
            })?;
            overlays.push(picture);
        }
        let tiled = grid(&overlays);
        each_sink(ctx.sinks, |s| {
            s.images(
                &format!("{method}/grid"),
                std::slice::from_ref(&tiled),
                step,
            )
        })?;
        each_sink(ctx.sinks, |s| {
            s.text(&format!("{method}/captions"), &captions, step)
        })?;
        // (name, value): a drift is absent at the first drawing (nothing to compare with).
        let mut scalars: Vec<(&str, f32)> = Vec::new();
        let drift = self.history.record(ctx.epoch, &maps, plane);
        if let Some(d) = drift.drift {
            scalars.push(("drift", d));
        }
        if let Some(d) = drift.from_start {
            scalars.push(("drift_from_start", d));
        }
        if let Some(set) = &self.localization {
            for (name, value) in self.localize(ctx.model, set)? {
                scalars.push((name, value as f32));
            }
            // Each baseline beside each score: in TensorBoard a second run-like series in the
            // score's chart; in metrics.csv `baseline_<kind>_<score>`.
            for (baseline, summary) in &set.baselines {
                for (name, value) in baseline_scores(summary) {
                    let tag = format!("{method}/{name}");
                    each_sink(ctx.sinks, |s| {
                        s.series_scalar(baseline.name(), &tag, value as f32, step)
                    })?;
                }
            }
        }
        if let Some(settings) = self.faithfulness {
            let n = settings.images.min(self.images.photos.len());
            let classes: Vec<usize> = (0..n)
                .map(|i| prediction(&logits[i * num_logits..(i + 1) * num_logits]).0)
                .collect();
            let scores = faithfulness::evaluate(
                ctx.model,
                &self.images.photos[..n],
                &maps[..n * plane],
                &classes,
                settings.baseline,
                settings.steps,
                &self.images.activations.device(),
                ctx.curves,
            )
            .map_err(CallbackError::Faithfulness)?;
            scalars.extend(FaithfulnessScores::NAMES.into_iter().zip(scores.values()));
        }
        if self.road_images > 0 {
            let n = self.road_images.min(self.images.photos.len());
            let classes: Vec<usize> = (0..n)
                .map(|i| prediction(&logits[i * num_logits..(i + 1) * num_logits]).0)
                .collect();
            let scores = crate::road::evaluate(
                ctx.model,
                &self.images.photos[..n],
                &maps[..n * plane],
                &classes,
                &self.images.activations.device(),
            )?;
            scalars.extend(RoadSummary::NAMES.into_iter().zip(scores.values()));
        }
        for (name, value) in scalars {
            let tag = format!("{method}/{name}");
            each_sink(ctx.sinks, |s| s.scalar(&tag, value, step))?;
        }
        ctx.rendered.push(RenderedMaps {
            callback: self.name(),
            names: self.images.names.clone(),
            size,
            maps,
        });
        Ok(())
    }
}

/// The scores a baseline is logged with: all but `box_iou`, whose region threshold is each
/// method's own (so a baseline's value would depend on which callback logged it).
fn baseline_scores(summary: &LocalizationSummary) -> Vec<(&'static str, f64)> {
    let mut scores = summary.scores();
    scores.retain(|(name, _)| *name != "box_iou");
    scores
}

fn to_vec<const D: usize>(t: Tensor<D>, what: &'static str) -> Result<Vec<f32>, CallbackError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| CallbackError::Data {
            what,
            cause: format!("{e:?}"),
        })
}

/// Predicted class and its probability from one row of logits: a single sigmoid logit
/// predicts class 1 when it is ≥ 0, several logits the arg-max (probabilities as
/// [`class_probability`](crate::faithfulness::class_probability)).
pub fn prediction(logits: &[f32]) -> (usize, f32) {
    let class = match logits {
        [z] => usize::from(*z >= 0.0),
        _ => {
            logits
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        }
    };
    (class, crate::faithfulness::class_probability(logits, class))
}

/// Tile equal-size images in a near-square grid with 2-pixel white gaps.
pub fn grid(images: &[RgbImage]) -> RgbImage {
    grid_with_columns(images, (images.len() as f64).sqrt().ceil() as usize)
}

/// Tile equal-size images row by row, `columns` per row, with 2-pixel white gaps.
pub fn grid_with_columns(images: &[RgbImage], columns: usize) -> RgbImage {
    grid_with_gap(images, columns, 2)
}

/// Tile equal-size images row by row, `columns` per row, with `gap`-pixel white gaps.
pub fn grid_with_gap(images: &[RgbImage], columns: usize, gap: u32) -> RgbImage {
    let Some(first) = images.first() else {
        return RgbImage::new(1, 1);
    };
    let (w, h) = first.dimensions();
    let columns = columns.max(1) as u32;
    let rows = (images.len() as u32).div_ceil(columns);
    let mut out = RgbImage::from_pixel(
        columns * (w + gap) - gap,
        rows * (h + gap) - gap,
        Rgb([255, 255, 255]),
    );
    for (i, image) in images.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        image::imageops::replace(
            &mut out,
            image,
            (col * (w + gap)) as i64,
            (row * (h + gap)) as i64,
        );
    }
    out
}

impl Callback for CamLogger {
    fn name(&self) -> String {
        format!("{}@{}", self.method, self.layer)
    }

    fn scalar_tags(&self) -> Vec<String> {
        let method = self.method.name();
        let mut tags: Vec<String> = self
            .scalar_names()
            .into_iter()
            .map(|name| format!("{method}/{name}"))
            .collect();
        if let Some(set) = &self.localization {
            for (baseline, summary) in &set.baselines {
                for (name, _) in baseline_scores(summary) {
                    tags.push(format!("{}/{name}", baseline.name()));
                }
            }
        }
        tags
    }

    fn on_train_start(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        self.draw(ctx)
    }

    fn on_epoch_end(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        if self.every == 0 || !ctx.epoch.is_multiple_of(self.every) {
            return Ok(());
        }
        self.draw(ctx)
    }

    /// Each image's evolution strip: its overlays at the kept steps, left to right.
    fn on_train_end(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        let frames = self.history.frames();
        let Some(&(last, _)) = frames.last() else {
            return Ok(());
        };
        let plane = self.images.photos.first().map_or(0, |p| p.len() / 3);
        let method = self.method.name();
        for (i, name) in self.images.names.iter().enumerate() {
            let overlays: Vec<RgbImage> = frames
                .iter()
                .filter_map(|(_, maps)| maps.get(i * plane..(i + 1) * plane))
                .map(|m| {
                    let map: Vec<f32> = m.iter().map(|&v| f32::from(v) / 255.0).collect();
                    overlay(&map, &self.images.photos[i], &self.style)
                })
                .collect();
            let strip = grid_with_columns(&overlays, overlays.len());
            each_sink(ctx.sinks, |s| {
                s.images(
                    &format!("{method}/evolution/{name}"),
                    std::slice::from_ref(&strip),
                    last as i64,
                )
            })?;
        }
        let steps: Vec<String> = frames.iter().map(|(s, _)| s.to_string()).collect();
        let text = format!(
            "{method} evolution strips (`{method}/evolution/<image>`): steps {} left to right \
             (0 = before training)",
            steps.join(", ")
        );
        each_sink(ctx.sinks, |s| {
            s.text(&format!("{method}/evolution"), &text, last as i64)
        })?;
        Ok(())
    }

    fn save_state(&self) -> Vec<(String, Vec<u8>)> {
        self.history.save()
    }

    fn load_state(&mut self, blobs: &HashMap<String, Vec<u8>>) -> Result<(), CallbackError> {
        self.history = MapHistory::load(blobs).map_err(CallbackError::State)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_of_sigmoid_and_softmax_heads() {
        assert_eq!(prediction(&[0.0]), (1, 0.5));
        let (class, p) = prediction(&[-2.0]);
        assert_eq!(class, 0);
        assert!((p - 0.880_797).abs() < 1e-5);
        let (class, p) = prediction(&[1.0, 3.0, 0.0]);
        assert_eq!(class, 1);
        assert!((p - 0.843_794_3).abs() < 1e-5);
    }

    #[test]
    fn grid_layout() {
        let images = vec![RgbImage::from_pixel(4, 3, Rgb([1, 2, 3])); 5];
        let g = grid(&images);
        // 5 images → 3 columns, 2 rows, 2-px gaps.
        assert_eq!(g.dimensions(), (3 * 4 + 2 * 2, 2 * 3 + 2));
        assert_eq!(g.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(g.get_pixel(4, 0).0, [255, 255, 255]);
        assert_eq!(
            g.get_pixel(g.width() - 1, g.height() - 1).0,
            [255, 255, 255]
        );
    }
}
