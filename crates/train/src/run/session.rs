//! A training session: everything the loop needs, opened once — the data and their pooled
//! features, the model, the head being trained (fresh or from the checkpoint), the callbacks and
//! the sinks — and the per-epoch chores around the loop (callbacks, scalars, checkpoints).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use callbacks::{Agreement, Callback, CallbackContext, PngSink, Sink, SinkError, TensorBoardSink};
use model::{Backbone, Classifier, WeightFile};
use tensorboard::SessionStatus;

use crate::config::Config;
use crate::data;
use crate::features::{file_hash, Extractor};
use crate::run::files::{self, DirIdentity};
use crate::learn::head::HeadTraining;
use crate::run::metrics::MetricsCsv;
use crate::features::sets::{FeatureSets, Start};
use crate::tensors::NamedTensor;
use crate::learn::top::TopTraining;
use crate::learn::checkpoint::{callback_blob, Checkpoint};
use crate::learn::export::{backbone_tensors, export_backbone, export_head};
use crate::learn::Training;

/// The checkpoint's file name in the run directory.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The fine-tuned backbone's file name in the run directory (fine-tuning runs only).
pub const BACKBONE: &str = "backbone.safetensors";
/// Written once the run's end (the callbacks' last word, the HParams session end) is on disk:
/// a run killed after its last checkpoint but before this file does its end on `--resume`.
pub const FINISHED: &str = "finished";
/// Written as the run's end starts: each event file's length then ("<length> <file name>" per
/// line). A run killed during its end is cut back to these lengths before the end is redone,
/// so no end record is written twice.
pub const FINISHING: &str = "finishing";

/// When callbacks are called.
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    /// Before the first epoch of a new run.
    TrainStart,
    /// After each epoch.
    EpochEnd,
    /// After the last epoch.
    TrainEnd,
}

/// What setting the session up cost (for the summary).
pub struct SetupFigures {
    /// When the session was opened.
    pub started: Instant,
    /// Seconds hashing the weight file (the cache key).
    pub hash_seconds: f64,
    /// Backbone seconds for the callbacks' activation maps.
    pub map_seconds: f64,
    /// Bytes of features and maps held in memory.
    pub memory_bytes: usize,
}

/// An open training session.
pub struct Session {
    /// The run's config.
    pub config: Config,
    /// The run directory.
    pub run_dir: PathBuf,
    identity: DirIdentity,
    /// The classifier the callbacks explain: updated with the trained weights after every
    /// epoch.
    pub model: Classifier,
    /// Every labelled set's rows (pooled features, or activations at the cut).
    pub sets: FeatureSets,
    /// What trains, with its optimizer.
    pub training: Training,
    /// The original weight file's backbone tensors (fine-tuning runs; empty otherwise).
    original_backbone: Vec<NamedTensor>,
    /// The callbacks, in call order (the CAM loggers, then agreement).
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Where scalars, images and text go (metrics.csv, TensorBoard, PNG files).
    pub sinks: Vec<Box<dyn Sink>>,
    /// The last epoch already done (0 for a new run).
    pub start_epoch: usize,
    /// Setup costs.
    pub setup: SetupFigures,
}

impl Session {
    /// Open a new run, or resume the one in `resume_dir` after its last checkpoint. `None`
    /// when that run is already complete.
    pub fn open(config: Config, resume_dir: Option<&Path>) -> Result<Option<Self>> {
        let started = Instant::now();
        let device = model::device_from_name(&config.run.device).map_err(anyhow::Error::msg)?;
        if config.callbacks.is_empty() {
            eprintln!(
                "warning: the config has no [[callbacks]]: this run trains the head and logs no \
                 maps (add a [[callbacks]] block, as in configs/cam.toml)"
            );
        }
        let data_config = crate::run::setup::with_synthetic_data(&config)?;
        let (train, val) = crate::run::setup::load_data(&data_config)?;
        let boxes = data_config
            .data
            .boxes
            .as_deref()
            .map(read_annotations_saying_what_scores)
            .transpose()?;

        let weights = WeightFile::open(&config.model.weights).context("[model] weights")?;
        let kind = config.model.head;
        let classes = if train.classes.len() == 2 {
            1
        } else {
            train.classes.len()
        };
        let cut = config
            .train_from()
            .map(|name| config.model.backbone.layer(name))
            .transpose()
            .context("[model] train_from")?;
        let backbone = Backbone::load_trainable(config.model.backbone, &weights, cut, &device)
            .context("[model] weights")?;
        // A fine-tuning run exports its backbone every epoch from the original tensors.
        let original_backbone = match cut {
            Some(_) => backbone_tensors(&weights).context("[model] weights")?,
            None => Vec::new(),
        };
        drop(weights);
        let mut training = match cut {
            None => {
                let channels = backbone.channels(backbone.head_input(kind));
                Training::Head(HeadTraining::new(
                    kind,
                    channels,
                    classes,
                    config.train.learning_rate,
                    config.run.seed,
                    &device,
                ))
            }
            Some(cut) => Training::Top(TopTraining::new(
                backbone.clone(),
                kind,
                classes,
                cut,
                (config.train.learning_rate, config.backbone_learning_rate()),
                config.run.seed,
                &device,
            )),
        };
        let mut model = Classifier {
            head: match &training {
                Training::Head(t) => t.head(),
                Training::Top(t) => t.model().head,
            },
            backbone: backbone.valid(),
        };
        for (i, c) in config.callbacks.iter().enumerate() {
            callbacks::check_method(&model, &c.layer, c.kind).with_context(|| {
                format!("[[callbacks]] #{} ({} at `{}`)", i + 1, c.kind, c.layer)
            })?;
        }

        let run_dir = match resume_dir {
            Some(dir) => dir.to_path_buf(),
            None => {
                let dir = files::create_run_dir(&config.run.runs_dir, &config.run.name)?;
                let text =
                    toml::to_string_pretty(&config).context("cannot serialise the config")?;
                files::write_atomic(&dir.join("config.toml"), text.as_bytes())?;
                dir
            }
        };
        println!("run dir: {}", run_dir.display());

        // The frozen backbone, once per image (or from the cache).
        let hash_start = Instant::now();
        let weights_hash = file_hash(&config.model.weights)?;
        let hash_seconds = hash_start.elapsed().as_secs_f64();
        let extractor = Extractor {
            backbone: &model.backbone,
            device: device.clone(),
            size: config.data.image_size.hw(),
            batch_size: config.data.backbone_batch_size,
            weights_hash,
            cache_dir: config
                .data
                .cache
                .then(|| config.run.runs_dir.join(".cache")),
        };
        let start = match cut {
            Some(cut) => Start::Cut(cut),
            None => Start::Pooled(model.layer_name(model.head_input())),
        };
        let sets = FeatureSets::extract(&extractor, &config, &train, &val, start)?;
        let built = crate::run::setup::cam_loggers(
            &config,
            &extractor,
            &sets,
            &val.classes,
            boxes.as_ref(),
            cut,
        )?;
        let memory_bytes = memory_bytes(&sets, &built.loggers);

        let checkpoint = run_dir.join(CHECKPOINT);
        let saved = match resume_dir.is_some() && checkpoint.exists() {
            true => Some(Checkpoint::read(&checkpoint)?),
            false => None,
        };
        let start_epoch = saved.as_ref().map_or(0, |s| s.epoch);
        if start_epoch >= config.train.epochs {
            if run_dir.join(FINISHED).exists() {
                println!("run already complete ({start_epoch} epochs)");
                return Ok(None);
            }
            undo_partial_end(&run_dir)?;
        }

        let agreement = Agreement::new(&built.loggers, &model);
        let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
        for logger in built.loggers {
            callbacks.push(Box::new(logger));
        }
        callbacks.push(Box::new(agreement));
        if let Some(saved) = saved {
            let context = || format!("checkpoint {}", checkpoint.display());
            training
                .restore(saved.model, saved.optimizer)
                .with_context(context)?;
            for callback in &mut callbacks {
                let name = callback.name();
                let prefix = callback_blob(&name, "");
                let blobs = saved
                    .extra
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
                    .collect();
                callback
                    .load_state(&blobs)
                    .with_context(|| format!("{}: {name}", context()))?;
            }
            println!("resuming after epoch {start_epoch}");
        }
        training.update(&mut model);
        let sinks = open_sinks(
            &config,
            &run_dir,
            &sets,
            &callbacks,
            resume_dir,
            start_epoch,
        )?;
        let mut session = Self {
            identity: files::dir_identity(&run_dir)?,
            run_dir,
            model,
            original_backbone,
            sets,
            training,
            callbacks,
            sinks,
            start_epoch,
            setup: SetupFigures {
                started,
                hash_seconds,
                map_seconds: built.map_seconds,
                memory_bytes,
            },
            config,
        };
        if start_epoch == 0 {
            session.log_run_start(&built.originals)?;
        }
        Ok(Some(session))
    }

    /// Step-0 records of a new run: the config, the callbacks' photos, the HParams.
    fn log_run_start(&mut self, originals: &[(String, image::RgbImage)]) -> Result<()> {
        let config_text = format!(
            "```toml\n{}\n```",
            toml::to_string_pretty(&self.config).unwrap_or_default()
        );
        let experiment = crate::run::hparams::experiment(&self.config);
        let hparams = crate::run::hparams::hparams(&self.config);
        self.each_sink(|s| {
            s.text("config", &config_text, 0)?;
            for (name, photo) in originals {
                s.images(&format!("originals/{name}"), std::slice::from_ref(photo), 0)?;
            }
            s.hparams(&experiment, &hparams)?;
            s.flush()
        })
    }

    /// Send to every sink.
    pub fn each_sink(
        &mut self,
        f: impl FnMut(&mut dyn Sink) -> Result<(), SinkError>,
    ) -> Result<()> {
        callbacks::each_sink(&mut self.sinks, f).context("writing logs")
    }

    /// A scalar of `epoch` to every sink.
    pub fn scalar(&mut self, tag: &str, value: f64, epoch: usize) -> Result<()> {
        self.each_sink(|s| s.scalar(tag, value as f32, epoch as i64))
    }

    /// Call every callback at `hook`; returns the warnings they raised.
    pub fn run_callbacks(&mut self, hook: Hook, epoch: usize) -> Result<Vec<String>> {
        let (mut rendered, mut warnings) = (Vec::new(), Vec::new());
        let mut curves = callbacks::scores::faithfulness::CurveCache::default();
        for callback in &mut self.callbacks {
            let mut ctx = CallbackContext {
                model: &self.model,
                epoch,
                sinks: &mut self.sinks,
                rendered: &mut rendered,
                warnings: &mut warnings,
                curves: &mut curves,
            };
            match hook {
                Hook::TrainStart => callback.on_train_start(&mut ctx),
                Hook::EpochEnd => callback.on_epoch_end(&mut ctx),
                Hook::TrainEnd => callback.on_train_end(&mut ctx),
            }
            .with_context(|| format!("callback {}", callback.name()))?;
        }
        Ok(warnings)
    }

    /// Make `epoch` durable: logs, the exported head, then the checkpoint (a run killed before
    /// the checkpoint redoes the epoch).
    pub fn end_epoch(&mut self, epoch: usize) -> Result<()> {
        // Writers recreate missing directories; a run dir deleted or replaced under the run
        // must stop it instead of silently starting a new, partial one.
        files::check_same_dir(&self.run_dir, &self.identity)?;
        self.each_sink(|s| s.flush())?;
        export_head(&self.run_dir.join("head.safetensors"), &self.model.head)?;
        if let Training::Top(t) = &self.training {
            export_backbone(
                &self.run_dir.join(BACKBONE),
                &self.original_backbone,
                &self.model,
                t.cut(),
            )?;
        }
        let (model, optimizer) = self.training.state()?;
        let mut extra = std::collections::HashMap::new();
        for callback in &self.callbacks {
            for (key, blob) in callback.save_state() {
                extra.insert(callback_blob(&callback.name(), &key), blob);
            }
        }
        Checkpoint {
            epoch,
            model,
            optimizer,
            extra,
        }
        .write(&self.run_dir.join(CHECKPOINT))?;
        crate::run::hooks::after_checkpoint(epoch);
        Ok(())
    }

    /// The end of the run: the callbacks' last word, the HParams session end, a final flush.
    pub fn finish(&mut self) -> Result<()> {
        let files = tensorboard::read::event_files(&self.run_dir)
            .with_context(|| format!("cannot list {}", self.run_dir.display()))?;
        let mut lengths = String::new();
        for path in files {
            let length = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            lengths.push_str(&format!("{length} {name}\n"));
        }
        files::write_atomic(&self.run_dir.join(FINISHING), lengths.as_bytes())?;
        for warning in self.run_callbacks(Hook::TrainEnd, self.config.train.epochs)? {
            eprintln!("warning: {warning}");
        }
        crate::run::hooks::during_end(|| self.each_sink(|s| s.flush()))?;
        self.each_sink(|s| {
            s.session_end(SessionStatus::Success)?;
            s.flush()
        })?;
        files::write_atomic(&self.run_dir.join(FINISHED), b"")
    }
}

/// A run killed during its end: cut its event files back to their lengths when the end started
/// (the [`FINISHING`] file), so redoing the end writes each record once.
fn undo_partial_end(run_dir: &Path) -> Result<()> {
    let path = run_dir.join(FINISHING);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for line in text.lines() {
        let (length, name) = line
            .split_once(' ')
            .with_context(|| format!("{}: bad line `{line}`", path.display()))?;
        let length: u64 = length
            .parse()
            .with_context(|| format!("{}: bad length in `{line}`", path.display()))?;
        let file = run_dir.join(name);
        let handle = match std::fs::OpenOptions::new().write(true).open(&file) {
            Ok(handle) => handle,
            // Gone since: nothing of it to write twice.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
        };
        if handle.metadata().map(|m| m.len() > length).unwrap_or(false) {
            handle
                .set_len(length)
                .and_then(|_| handle.sync_all())
                .with_context(|| format!("cannot cut {} back", file.display()))?;
        }
    }
    Ok(())
}

/// metrics.csv (always), TensorBoard and PNG files (as configured). The CSV's columns: loss and
/// accuracy per set, the callbacks' scalars, the timings.
fn open_sinks(
    config: &Config,
    run_dir: &Path,
    sets: &FeatureSets,
    callbacks: &[Box<dyn Callback>],
    resume_dir: Option<&Path>,
    start_epoch: usize,
) -> Result<Vec<Box<dyn Sink>>> {
    let mut tags: Vec<String> = Vec::new();
    for (name, _) in sets.named() {
        tags.extend([format!("loss/{name}"), format!("accuracy/{name}")]);
    }
    // Loggers scoring the same set log the same baseline tags: one column each.
    for tag in callbacks.iter().flat_map(|c| c.scalar_tags()) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags.extend(SECONDS_TAGS.map(String::from));
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(MetricsCsv::open(
        run_dir.join("metrics.csv"),
        &tags,
        start_epoch,
    )?)];
    if config.logging.tensorboard {
        let resume_through = match resume_dir {
            // Before the first checkpoint nothing is kept: the step-0 records are written again.
            Some(_) if start_epoch == 0 => Some(-1),
            Some(_) => Some(start_epoch as i64),
            None => None,
        };
        let series = callbacks::scores::localization_report::Baseline::ALL.map(|b| b.name());
        sinks.push(Box::new(TensorBoardSink::open(
            run_dir,
            resume_through,
            &series,
        )?));
    }
    if config.logging.png {
        sinks.push(Box::new(PngSink::new(run_dir.join("images"))));
    }
    Ok(sinks)
}

/// `[data] boxes`, saying once which localization scores it allows: without outlines only the
/// head-box ones.
fn read_annotations_saying_what_scores(path: &Path) -> Result<crate::commands::explain_boxes::Annotations> {
    let annotations = data::read_annotations(path)?;
    let outlined = annotations.values().filter(|a| a.body.is_some()).count();
    if outlined == 0 {
        println!(
            "[data] boxes: {} has no body_polygon_xy outlines: only the head-box scores are \
             computed (pointing game, energy in box, box IoU), not MaxBoxAcc or PxAP",
            path.display()
        );
    } else if outlined < annotations.len() {
        println!(
            "[data] boxes: {outlined} of {} entries in {} have an outline: MaxBoxAcc and PxAP \
             are scored on those",
            annotations.len(),
            path.display()
        );
    }
    Ok(annotations)
}

/// The timing scalars of every epoch: the training pass alone, training and evaluation (`head`),
/// the callbacks, the whole epoch.
pub const SECONDS_TAGS: [&str; 4] = [
    "seconds/train",
    "seconds/head",
    "seconds/callback",
    "seconds/epoch",
];

/// Bytes of everything the run keeps from the backbone: pooled features of every set and the
/// loggers' activation maps.
fn memory_bytes(sets: &FeatureSets, loggers: &[callbacks::CamLogger]) -> usize {
    let elements = |dims: &[usize]| dims.iter().product::<usize>() * 4;
    let features: usize = sets
        .named()
        .iter()
        .flat_map(|(_, f)| f.extracted.by_layer.values())
        .map(|t| elements(&t.dims()))
        .sum();
    let maps: usize = loggers
        .iter()
        .map(|l| {
            elements(&l.images.activations.dims())
                + l.localization
                    .as_ref()
                    .map_or(0, |s| elements(&s.activations.dims()))
        })
        .sum();
    features + maps
}
