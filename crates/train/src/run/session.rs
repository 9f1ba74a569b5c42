//! A training session: everything the loop needs, opened once — the data and their pooled
//! features, the model, the head being trained (fresh or from the checkpoint), the callbacks and
//! the sinks — and the per-epoch chores around the loop (callbacks, scalars, checkpoints).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use callbacks::logging::tags::original_tag;
use callbacks::{Callback, Sink, SinkError};
use model::Classifier;
use tensorboard::SessionStatus;

use crate::config::Config;
use crate::features::sets::FeatureSets;
use crate::learn::checkpoint::{callback_blob, Checkpoint};
use crate::learn::export::{export_backbone, export_head};
use crate::learn::Training;
use crate::run::files::{self, DirIdentity, BACKBONE, CHECKPOINT, FINISHED, FINISHING};
use crate::run::open;
use crate::tensors::NamedTensor;

pub use callbacks::Hook;

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
    /// The classes, in label order (the training set's folder names).
    pub class_names: Vec<String>,
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
        open::warn_without_callbacks(&config);
        let inputs = open::load_inputs(&config)?;
        let open::Trainee {
            mut model,
            mut training,
            original_backbone,
            cut,
        } = open::trainee(&config, inputs.train.classes.len(), &device)?;
        // An unwritable cache or an unreachable tracker stops the run before its run directory
        // exists.
        if let Some(dir) = config.cache_dir() {
            crate::features::chunks::check_writable(&dir)?;
        }
        let tracker = crate::tracking::connect(&config)?;
        let run_dir = open::run_dir(&config, resume_dir)?;
        println!("run dir: {}", run_dir.display());
        let open::Features {
            sets,
            loggers,
            hash_seconds,
        } = open::features(&config, &model, &inputs, cut, &device)?;
        let memory_bytes = open::memory_bytes(&sets, &loggers.loggers);
        let saved = match open::saved_checkpoint(&run_dir, resume_dir, config.train.epochs)? {
            open::Saved::Complete => return Ok(None),
            open::Saved::Fresh => None,
            open::Saved::From(saved) => Some(saved),
        };
        let start_epoch = saved.as_ref().map_or(0, |s| s.epoch);
        let mut callbacks = open::callbacks(loggers.loggers, &model);
        if let Some(saved) = saved {
            open::restore(
                &mut training,
                &mut callbacks,
                saved,
                &run_dir.join(CHECKPOINT),
            )?;
            println!("resuming after epoch {start_epoch}");
        }
        training.update(&mut model);
        let class_names = inputs.train.classes.clone();
        let mut sinks = open::sinks(
            &config,
            &run_dir,
            &sets,
            &class_names,
            &callbacks,
            resume_dir,
            start_epoch,
        )?;
        if let Some(sink) =
            tracker.and_then(|t| crate::tracking::MlflowSink::open(t, &run_dir, &config))
        {
            sinks.push(Box::new(sink));
        }
        let mut session = Self {
            identity: files::dir_identity(&run_dir)?,
            run_dir,
            model,
            original_backbone,
            sets,
            class_names,
            training,
            callbacks,
            sinks,
            start_epoch,
            setup: SetupFigures {
                started,
                hash_seconds,
                map_seconds: loggers.map_seconds,
                memory_bytes,
            },
            config,
        };
        if start_epoch == 0 {
            session.log_run_start(&loggers.originals)?;
        }
        Ok(Some(session))
    }

    /// Step-0 records of a new run: the config, the callbacks' photos, the HParams.
    fn log_run_start(&mut self, originals: &[(String, image::RgbImage)]) -> Result<()> {
        let config_text = format!(
            "```toml\n{}\n```",
            toml::to_string_pretty(&self.config).context("cannot serialise the config")?
        );
        let experiment = crate::run::hparams::experiment(&self.config);
        let hparams = crate::run::hparams::hparams(&self.config);
        let session = crate::run::hparams::session_name(&self.run_dir);
        self.each_sink(|s| {
            s.text("config", &config_text, 0)?;
            for (name, photo) in originals {
                s.images(&original_tag(name), std::slice::from_ref(photo), 0)?;
            }
            s.hparams(&experiment, &hparams, &session)?;
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
        callbacks::run_callbacks(
            &mut self.callbacks,
            hook,
            &self.model,
            epoch,
            &mut self.sinks,
        )
        .map_err(|(name, e)| anyhow::Error::new(e).context(format!("callback {name}")))
    }

    /// Make `epoch` durable: logs, the exported head, then the checkpoint (a run killed before
    /// the checkpoint redoes the epoch).
    pub fn end_epoch(&mut self, epoch: usize) -> Result<()> {
        // Writers recreate missing directories; a run dir deleted or replaced under the run
        // must stop it instead of silently starting a new, partial one.
        files::check_same_dir(&self.run_dir, &self.identity)?;
        self.each_sink(|s| s.flush())?;
        export_head(
            &self.run_dir.join("head.safetensors"),
            &self.model.head,
            &self.class_names,
        )?;
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
