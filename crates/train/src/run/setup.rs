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
use model::Backbone;

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
        // Written aside and renamed into place whole: processes that start together (the
        // shards of `train features`) each write one, the first rename wins, the others use it.
        crate::features::chunks::check_writable(&cache)?;
        let tmp = tempfile::Builder::new()
            .prefix(".synthetic-")
            .tempdir_in(&cache)
            .with_context(|| format!("cannot create a directory in {}", cache.display()))?;
        let start = Instant::now();
        synth::write_dataset(tmp.path(), s)?;
        match std::fs::rename(tmp.path(), &dir) {
            Ok(()) => println!(
                "generated {} synthetic images in {:.1} s: {}",
                s.train + s.val,
                start.elapsed().as_secs_f64(),
                dir.display()
            ),
            Err(_) if dir.join("boxes.json").is_file() => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot move a set to {}", dir.display()))
            }
        }
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

/// The localization set of the images `with_box` (validation images with boxes, up to
/// `localization_images`; see [`logger_images`]), with the input of layer `input_of` (the
/// logger's layer + 1, or the cut when the logger's layer trains).
/// `boxes` holds the photos' annotations in their upright pixels, with the upright sizes
/// ([`upright_annotations`](crate::data::annotations::upright_annotations)), as the maps are
/// made from the upright photo (an EXIF-rotated photo's annotation is turned with it).
/// `baselines` are scored on the set once.
pub fn localization_set(
    extractor: &Extractor,
    with_box: &[&Sample],
    boxes: &UprightAnnotations,
    spec: &CallbackConfig,
    input_of: usize,
    baselines: &[Baseline],
) -> Result<(Option<LocalizationSet>, f64)> {
    if with_box.is_empty() {
        println!(
            "{}: no validation image has a box: no localization metrics",
            spec.kind
        );
        return Ok((None, 0.0));
    }
    let (activations, seconds) = extractor.inputs(with_box, input_of)?;
    let inputs = match spec.needs_images() {
        true => Some(extractor.inputs(with_box, 0)?.0),
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

/// The images one `[[callbacks]]` entry explains and scores, chosen before any backbone work
/// (so `train features` computes the very activations a run reads).
pub struct LoggerImages {
    /// The images it explains.
    pub explained: Vec<Sample>,
    /// The images it scores localization on (evaluated images with a box).
    pub localized: Vec<Sample>,
    /// The layer whose input it keeps: its layer + 1, or the cut when its layer trains.
    pub input_of: usize,
    /// The cut, when its layer trains (recomputed from the cut every drawing).
    pub recompute_from: Option<usize>,
}

/// The images of every logger: each explains the first `num_images` of one fixed,
/// class-balanced choice of the readable validation images `val`, and scores localization on
/// the first `localization_images` of the readable evaluated images `candidates` (validation
/// first, then the eval sets) that have a box. With `cut` (the first trained backbone layer), a
/// logger at or above it keeps the input of the cut.
pub fn logger_images(
    config: &Config,
    backbone: &Backbone,
    val: &Dataset,
    candidates: &[&Sample],
    boxes: Option<&UprightAnnotations>,
    cut: Option<usize>,
) -> Result<Vec<LoggerImages>> {
    let most = config
        .callbacks
        .iter()
        .map(|c| c.num_images)
        .max()
        .unwrap_or(0);
    let chosen = data::balanced_subset(val, most);
    let mut out = Vec::new();
    for spec in &config.callbacks {
        let layer = backbone.kind().layer(&spec.layer)?;
        let (input_of, recompute_from) = match cut {
            Some(cut) if layer >= cut => (cut, Some(cut)),
            _ => (layer + 1, None),
        };
        let localized = match boxes {
            Some(boxes) => candidates
                .iter()
                .filter(|s| boxes.contains_key(&s.path))
                .take(spec.localization_images)
                .map(|&s| s.clone())
                .collect(),
            None => Vec::new(),
        };
        out.push(LoggerImages {
            explained: chosen
                .iter()
                .take(spec.num_images)
                .map(|&i| val.samples[i].clone())
                .collect(),
            localized,
            input_of,
            recompute_from,
        });
    }
    Ok(out)
}

/// Build the loggers of `config`'s `[[callbacks]]` on the images [`logger_images`] chooses
/// from the readable images of `sets`.
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
    let candidates: Vec<&Sample> = readable
        .samples
        .iter()
        .chain(sets.evals.iter().flat_map(|e| &e.features.samples))
        .collect();
    let chosen = logger_images(
        config,
        extractor.backbone,
        &readable,
        &candidates,
        boxes,
        cut,
    )?;
    let mut out = Loggers {
        loggers: Vec::new(),
        originals: Vec::new(),
        map_seconds: 0.0,
    };
    for (spec, images) in config.callbacks.iter().zip(chosen) {
        let samples: Vec<&Sample> = images.explained.iter().collect();
        let photos = extractor.photos(&samples)?;
        let (activations, seconds) = extractor.inputs(&samples, images.input_of)?;
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
                let with_box: Vec<&Sample> = images.localized.iter().collect();
                let (set, seconds) = localization_set(
                    extractor,
                    &with_box,
                    boxes,
                    spec,
                    images.input_of,
                    &baselines,
                )?;
                out.map_seconds += seconds;
                set
            }
            None => None,
        };
        let images_explained = ExplainedImages {
            names: samples.iter().map(|s| s.name.clone()).collect(),
            photos,
            labels: samples.iter().map(|s| s.label).collect(),
            class_names: class_names.to_vec(),
            activations,
            inputs,
        };
        let options = spec.options(config.run.seed);
        let logger = CamLogger::new(spec.kind, options, &spec.layer, images_explained)
            .with_every(spec.every())
            .with_style(spec.style())
            .with_localization(localization)
            .with_faithfulness(spec.faithfulness())
            .with_road_images(spec.road_images)
            .with_recompute_from(images.recompute_from);
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
