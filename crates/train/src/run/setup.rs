//! Getting a run's inputs ready: the data sets (generating a synthetic one when asked) and the
//! validation images with boxes that the localization metrics score.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use callbacks::scores::localization_report::Baseline;
use callbacks::{CamLogger, ExplainedImages, LocalizationSet};

use crate::data::annotations::UprightAnnotations;
use image::RgbImage;

use crate::config::{CallbackConfig, Config, EvalConfig};
use crate::data::synth;
use crate::data::{self, Dataset, Sample};
use crate::features::sets::FeatureSets;
use crate::features::Extractor;

/// Where a synthetic data set lives, generating it on first use.
pub fn synthetic_dir(config: &Config) -> Result<Option<PathBuf>> {
    let Some(s) = &config.data.synthetic else {
        return Ok(None);
    };
    let cache = config.run.runs_dir.join(".cache");
    let cue = match &s.cue {
        Some(c) => format!(
            // `badge1`: the badge's drawing; a change to it needs a new name, or cached sets
            // drawn the old way would be read.
            "-cue{}-mark{}-animal{}-badge1",
            c.side(s.size),
            c.mark_agrees,
            c.animal_agrees
        ),
        None => String::new(),
    };
    let dir = cache.join(format!(
        "synthetic-seed{}-train{}-val{}-{}px{cue}",
        s.seed, s.train, s.val, s.size
    ));
    if !dir.join("boxes.json").is_file() {
        let tmp = cache.join(format!("synthetic-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let start = Instant::now();
        synth::write_dataset(&tmp, s)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move {} into place", dir.display()))?;
        println!(
            "generated {} synthetic images in {:.1} s: {}",
            s.train + s.val,
            start.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    Ok(Some(dir))
}

/// `config` with a synthetic data set (generated on first use) in place of `synthetic`.
pub fn with_synthetic_data(config: &Config) -> Result<Config> {
    let mut data_config = config.clone();
    if let Some(dir) = synthetic_dir(config)? {
        data_config.data.synthetic = None;
        data_config.data.train_dir = Some(dir.join("train"));
        data_config.data.val_dir = Some(dir.join("val"));
        data_config.data.boxes = Some(dir.join("boxes.json"));
        if config
            .data
            .synthetic
            .as_ref()
            .is_some_and(|s| s.cue.is_some())
        {
            for name in synth::cue::EVAL_SETS {
                data_config.data.eval.push(EvalConfig {
                    name: name.into(),
                    dir: dir.join(name),
                });
            }
        }
    }
    Ok(data_config)
}

/// The training and validation sets of `config` (a seeded split when there is no `val_dir`).
pub fn load_data(config: &Config) -> Result<(Dataset, Dataset)> {
    let train_dir = config
        .data
        .train_dir
        .clone()
        .context("[data] train_dir is missing")?;
    let train = data::scan(&train_dir, "[data] train_dir")?;
    let (train, val) = match &config.data.val_dir {
        Some(dir) => (train, data::scan(dir, "[data] val_dir")?),
        None => data::split(
            train,
            config.data.val_fraction.unwrap_or(0.2),
            config.run.seed,
        ),
    };
    if train.classes != val.classes {
        bail!(
            "[data] train classes {:?} differ from validation classes {:?}",
            train.classes,
            val.classes
        );
    }
    Ok((train, val))
}

/// The validation images that have boxes (up to `localization_images`), with the input of layer
/// `input_of` (the logger's layer + 1, or the cut when the logger's layer trains).
/// `boxes` holds the photos' annotations in their upright pixels, with the upright sizes
/// ([`upright_annotations`](crate::data::annotations::upright_annotations)), as the maps are
/// made from the upright photo (an EXIF-rotated photo's annotation is turned with it).
/// `baselines` are scored on the set once.
pub fn localization_set(
    extractor: &Extractor,
    val: &Dataset,
    boxes: &UprightAnnotations,
    spec: &CallbackConfig,
    input_of: usize,
    baselines: &[Baseline],
) -> Result<(Option<LocalizationSet>, f64)> {
    let with_box: Vec<&crate::data::Sample> = val
        .samples
        .iter()
        .filter(|s| boxes.contains_key(&s.path))
        .take(spec.localization_images)
        .collect();
    if with_box.is_empty() {
        println!(
            "{}: no validation image has a box: no localization metrics",
            spec.kind
        );
        return Ok((None, 0.0));
    }
    let (activations, seconds) = extractor.inputs(&with_box, input_of)?;
    let inputs = match spec.needs_images() {
        true => Some(extractor.inputs(&with_box, 0)?.0),
        false => None,
    };
    if spec.kind == callbacks::Method::ScoreCam {
        let channels = extractor
            .backbone
            .channels(extractor.backbone.kind().layer(&spec.layer)?);
        println!(
            "{}: localization on {} images costs {} whole-network passes per drawing (one per \
             channel per image); lower localization_images or raise every if that is too slow",
            spec.kind,
            with_box.len(),
            with_box.len() * channels
        );
    }
    let mut set = LocalizationSet {
        activations,
        inputs,
        input_size: extractor.size,
        annotations: Vec::new(),
        sizes: Vec::new(),
        threshold: spec.localization_threshold(),
        baselines: Vec::new(),
    };
    for s in with_box {
        let (truth, size) = &boxes[&s.path];
        set.annotations.push(truth.clone());
        set.sizes.push(*size);
    }
    set.score_baselines(baselines);
    Ok((Some(set), seconds))
}

/// The CAM loggers of `config`'s `[[callbacks]]`, with the photos they log as originals
/// (name, photo) and the seconds spent in the backbone for their activations.
pub struct Loggers {
    /// One logger per `[[callbacks]]` entry, in order.
    pub loggers: Vec<CamLogger>,
    /// The most images any logger explains, as (name, photo at the input size).
    pub originals: Vec<(String, RgbImage)>,
    /// Backbone seconds for the loggers' activations.
    pub map_seconds: f64,
}

/// Build the loggers: each explains the first `num_images` of one fixed, class-balanced choice
/// of readable validation images, and scores localization on every evaluated image with a box
/// (validation first, then the eval sets). With `cut` (the first trained backbone layer), a
/// logger at or above it keeps the input of the cut and recomputes its layer every drawing.
pub fn cam_loggers(
    config: &Config,
    extractor: &Extractor,
    sets: &FeatureSets,
    class_names: &[String],
    boxes: Option<&UprightAnnotations>,
    cut: Option<usize>,
) -> Result<Loggers> {
    let baselines = Baseline::scored(config.data.uniform_baseline);
    let readable = Dataset {
        classes: class_names.to_vec(),
        samples: sets.val.samples.clone(),
    };
    let most = config
        .callbacks
        .iter()
        .map(|c| c.num_images)
        .max()
        .unwrap_or(0);
    let chosen = data::balanced_subset(&readable, most);
    let mut out = Loggers {
        loggers: Vec::new(),
        originals: Vec::new(),
        map_seconds: 0.0,
    };
    for spec in &config.callbacks {
        let samples: Vec<&Sample> = chosen
            .iter()
            .take(spec.num_images)
            .map(|&i| &readable.samples[i])
            .collect();
        let photos = extractor.photos(&samples)?;
        let layer = extractor.backbone.kind().layer(&spec.layer)?;
        let (input_of, recompute_from) = match cut {
            Some(cut) if layer >= cut => (cut, Some(cut)),
            _ => (layer + 1, None),
        };
        let (activations, seconds) = extractor.inputs(&samples, input_of)?;
        out.map_seconds += seconds;
        let inputs = match spec.needs_images() {
            true => Some(extractor.inputs(&samples, 0)?.0),
            false => None,
        };
        if out.originals.len() < photos.len() {
            out.originals = samples
                .iter()
                .map(|s| s.name.clone())
                .zip(photos.iter().cloned())
                .collect();
        }
        let localization = match boxes {
            Some(boxes) => {
                let mut candidates = readable.clone();
                for e in &sets.evals {
                    candidates
                        .samples
                        .extend(e.features.samples.iter().cloned());
                }
                let (set, seconds) =
                    localization_set(extractor, &candidates, boxes, spec, input_of, &baselines)?;
                out.map_seconds += seconds;
                set
            }
            None => None,
        };
        let images = ExplainedImages {
            names: samples.iter().map(|s| s.name.clone()).collect(),
            photos,
            labels: samples.iter().map(|s| s.label).collect(),
            class_names: class_names.to_vec(),
            activations,
            inputs,
        };
        let options = spec.options(config.run.seed);
        let logger = CamLogger::new(spec.kind, options, &spec.layer, images)
            .with_every(spec.every())
            .with_style(spec.style())
            .with_localization(localization)
            .with_faithfulness(spec.faithfulness())
            .with_road_images(spec.road_images)
            .with_recompute_from(recompute_from);
        out.loggers.push(logger);
    }
    note_different_localization_sets(&out.loggers);
    Ok(out)
}

/// The baselines' scalars (`baseline_*/<score>`, metrics.csv `baseline_*_<score>`) are shared
/// by the callbacks: say so when their sets differ (both keep the first callback's).
fn note_different_localization_sets(loggers: &[CamLogger]) {
    let sets: Vec<(&CamLogger, &LocalizationSet)> = loggers
        .iter()
        .filter_map(|l| Some((l, l.localization.as_ref()?)))
        .collect();
    if let Some((first, set)) = sets.first() {
        for (logger, other) in &sets[1..] {
            // The same photos give the same baselines (comparing the baselines' values would
            // call equal sets different: a score without outlines is NaN, never equal to itself).
            if other.annotations != set.annotations || other.sizes != set.sizes {
                println!(
                    "note: {} and {} score different localization sets (localization_images): \
                     the baseline_* scalars (metrics.csv and TensorBoard) are the first \
                     callback's",
                    first.method, logger.method
                );
            }
        }
    }
}
