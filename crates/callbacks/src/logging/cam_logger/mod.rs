//! Per-epoch callbacks: [`Callback`] and the [`CamLogger`] that renders heatmaps of a fixed set
//! of validation images after every `every` epochs (the seed blog's `CamLogger` /
//! `GRADCamLogger`, batched, for each image's predicted class).

use burn::tensor::Tensor;
use image::RgbImage;
use model::Explainable;

use std::collections::HashMap;

use crate::engine::pipeline::{
    check_method, explain_activations_with, explain_with, Explanation, Method, Options,
};
use crate::logging::callback::{Callback, CallbackContext, CallbackError, RenderedMaps};
use crate::logging::evolution::MapHistory;
use crate::logging::grid::{evolution_strip, grid};

mod localization;
use crate::logging::image_sets::{ExplainedImages, FaithfulnessSettings, LocalizationSet};
use crate::logging::sink::{each_sink, Sink};
use crate::logging::tags::{class_name, evolution_tag, method_tag};
use crate::render::{caption_text, draw_caption, overlay, OverlayStyle};
use crate::scores::faithfulness::{self, FaithfulnessScores};
use crate::scores::probabilities::prediction;
use crate::scores::road::RoadSummary;
use localization::baseline_scores;

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
    /// three levels and PxAP; energy in the cue's box where images have one), logged as
    /// `<method>/<score>`, with the set's baselines beside them as `baseline_<kind>/<score>`
    /// (drawn in one chart by [`scalar_layout`](crate::logging::tags::scalar_layout)).
    pub localization: Option<LocalizationSet>,
    /// Score Average Drop, Increase in Confidence and deletion/insertion AUC each epoch,
    /// logged as `<method>/<score>`.
    pub faithfulness: Option<FaithfulnessSettings>,
    /// Score ROAD ([`crate::scores::road`]) on this many of the images each drawing (0: off), logged
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
    /// A logger of `method` at `layer` on `images`, drawing every epoch with the default
    /// overlay style, scoring nothing; the `with_*` methods below add the rest.
    pub fn new(method: Method, options: Options, layer: &str, images: ExplainedImages) -> Self {
        Self {
            method,
            options,
            layer: layer.into(),
            every: 1,
            style: OverlayStyle::default(),
            images,
            localization: None,
            faithfulness: None,
            road_images: 0,
            recompute_from: None,
            history: MapHistory::default(),
        }
    }

    /// Draw at step 0 and after every epoch that is a multiple of `every`.
    pub fn with_every(mut self, every: usize) -> Self {
        self.every = every;
        self
    }

    /// Overlay colours.
    pub fn with_style(mut self, style: OverlayStyle) -> Self {
        self.style = style;
        self
    }

    /// Score localization on `set` at every drawing.
    pub fn with_localization(mut self, set: Option<LocalizationSet>) -> Self {
        self.localization = set;
        self
    }

    /// Score faithfulness at every drawing.
    pub fn with_faithfulness(mut self, settings: Option<FaithfulnessSettings>) -> Self {
        self.faithfulness = settings;
        self
    }

    /// Score ROAD on the first `images` images at every drawing (0: off).
    pub fn with_road_images(mut self, images: usize) -> Self {
        self.road_images = images;
        self
    }

    /// The cached activations are the input of layer `cut` (a fine-tuning run training the
    /// logger's layer): each drawing runs them through the current weights.
    pub fn with_recompute_from(mut self, cut: Option<usize>) -> Self {
        self.recompute_from = cut;
        self
    }
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
}

impl CamLogger {
    /// The maps of a batch: from the images when the logger has them (Score-CAM, aug_smooth),
    /// else from the cached activations; `size` is the images' [H, W].
    fn explain(
        &self,
        model: &dyn Explainable,
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
    fn current(
        &self,
        model: &dyn Explainable,
        cached: Tensor<4>,
    ) -> Result<Tensor<4>, CallbackError> {
        match self.recompute_from {
            None => Ok(cached),
            Some(cut) => {
                let layer = check_method(model, &self.layer, self.method)?;
                let classifier = model
                    .as_classifier()
                    .ok_or(CallbackError::NeedsClassifier("recompute_from"))?;
                Ok(classifier.backbone.run(cached, cut, layer))
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
        self.log_overlays(ctx.sinks, &maps, &logits, num_logits, plane, step)?;
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
            scalars.extend(self.localization_scalars(ctx, set, step)?);
        }
        if let Some(settings) = self.faithfulness {
            let n = settings.images.min(self.images.photos.len());
            let classes = predicted_classes(&logits, num_logits, n);
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
            let classes = predicted_classes(&logits, num_logits, n);
            let scores = crate::scores::road::evaluate(
                ctx.model,
                &self.images.photos[..n],
                &maps[..n * plane],
                &classes,
                &self.images.activations.device(),
            )?;
            scalars.extend(RoadSummary::NAMES.into_iter().zip(scores.values()));
        }
        for (name, value) in scalars {
            let tag = method_tag(method, name);
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

    /// Log each image's overlay of its map (`<method>/<name>`), their grid (`<method>/grid`)
    /// and the caption table (`<method>/captions`) at `step`; `maps` are [N·plane], `logits`
    /// [N·num_logits].
    fn log_overlays(
        &self,
        sinks: &mut [Box<dyn Sink>],
        maps: &[f32],
        logits: &[f32],
        num_logits: usize,
        plane: usize,
        step: i64,
    ) -> Result<(), CallbackError> {
        let method = self.method.name();
        let mut overlays = Vec::with_capacity(self.images.names.len());
        let mut captions = format!(
            "epoch {step}, {method} at `{}`\n\n| image | true | predicted | p |\n|---|---|---|---|\n",
            self.layer
        );
        let class_name = |c: usize| class_name(&self.images.class_names, c);
        for (i, name) in self.images.names.iter().enumerate() {
            let mut picture = overlay(
                &maps[i * plane..(i + 1) * plane],
                &self.images.photos[i],
                &self.style,
            );
            let (predicted, p) = prediction(&logits[i * num_logits..(i + 1) * num_logits]);
            let label = self.images.labels[i];
            // The picture says which class it is and which one the model sees.
            let text = caption_text(
                &class_name(label),
                &class_name(predicted),
                p,
                picture.width(),
            );
            draw_caption(&mut picture, &text, predicted == label);
            captions.push_str(&format!(
                "| {name} | {} | {}{} | {p:.3} |\n",
                class_name(label),
                class_name(predicted),
                if predicted == label { "" } else { " ✗" }
            ));
            each_sink(sinks, |s| {
                s.images(
                    &method_tag(method, name),
                    std::slice::from_ref(&picture),
                    step,
                )
            })?;
            overlays.push(picture);
        }
        let tiled = grid(&overlays);
        each_sink(sinks, |s| {
            s.images(
                &method_tag(method, "grid"),
                std::slice::from_ref(&tiled),
                step,
            )
        })?;
        each_sink(sinks, |s| {
            s.text(&method_tag(method, "captions"), &captions, step)
        })?;
        Ok(())
    }
}

/// The predicted class of each of the first `n` images, from logits [N·num_logits].
fn predicted_classes(logits: &[f32], num_logits: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| prediction(&logits[i * num_logits..(i + 1) * num_logits]).0)
        .collect()
}

pub(crate) fn to_vec<const D: usize>(
    t: Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>, CallbackError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| CallbackError::Data {
            what,
            cause: format!("{e:?}"),
        })
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
            .map(|name| method_tag(method, name))
            .collect();
        if let Some(set) = &self.localization {
            for (baseline, summary) in &set.baselines {
                for (name, _) in baseline_scores(summary) {
                    tags.push(method_tag(baseline.name(), name));
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
            let overlays: Vec<(usize, RgbImage)> = frames
                .iter()
                .filter_map(|(step, maps)| Some((*step, maps.get(i * plane..(i + 1) * plane)?)))
                .map(|(step, m)| {
                    let map: Vec<f32> = m.iter().map(|&v| f32::from(v) / 255.0).collect();
                    (step, overlay(&map, &self.images.photos[i], &self.style))
                })
                .collect();
            let strip = evolution_strip(&overlays);
            each_sink(ctx.sinks, |s| {
                s.images(
                    &evolution_tag(method, name),
                    std::slice::from_ref(&strip),
                    last as i64,
                )
            })?;
        }
        let steps: Vec<String> = frames.iter().map(|(s, _)| s.to_string()).collect();
        let text = format!(
            "{method} evolution strips (`{method}/evolution/<image>`): steps {} left to right \
             and row by row, each frame labelled (0 = before training)",
            steps.join(", ")
        );
        each_sink(ctx.sinks, |s| {
            s.text(&method_tag(method, "evolution"), &text, last as i64)
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
