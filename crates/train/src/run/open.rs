//! The steps of opening a training session ([`Session::open`](crate::run::session::Session::open)),
//! in order: the inputs, what trains, the run directory, the backbone pass (features and the
//! loggers' activations), the checkpoint to resume from, the callbacks, the sinks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use callbacks::logging::tags::scalar_layout;
use callbacks::{Agreement, Callback, CamLogger, PngSink, Sink, TensorBoardSink};
use model::{Backbone, Classifier, WeightFile};

use crate::config::Config;
use crate::data::annotations::{upright_annotations, UprightAnnotations};
use crate::data::{self, Annotations, Dataset};
use crate::features::sets::{scan_eval_sets, FeatureSets, Start};
use crate::features::{file_hash, Extractor};
use crate::learn::checkpoint::{callback_blob, Checkpoint};
use crate::learn::export::backbone_tensors;
use crate::learn::head::HeadTraining;
use crate::learn::top::TopTraining;
use crate::learn::Training;
use crate::run::files::{self, CHECKPOINT, FINISHED, FINISHING};
use crate::run::metrics::{Metric, MetricsCsv, SECONDS_TAGS};
use crate::run::setup::{self, Loggers};
use crate::tensors::NamedTensor;

/// Say so when the config explains nothing.
pub fn warn_without_callbacks(config: &Config) {
    if config.callbacks.is_empty() {
        eprintln!(
            "warning: the config has no [[callbacks]]: this run trains the head and logs no \
             maps (add a [[callbacks]] block, as in configs/cam.toml)"
        );
    }
}

/// The labelled sets and the boxes a run reads.
pub struct Inputs {
    /// The training set.
    pub train: Dataset,
    /// The validation set.
    pub val: Dataset,
    /// The `[[data.eval]]` sets, by name.
    pub evals: Vec<(String, Dataset)>,
    /// `[data] boxes`, when given: the annotated validation and eval photos' annotations,
    /// upright, by path.
    pub boxes: Option<UprightAnnotations>,
}

/// Scan the data (generating the synthetic set when asked) and read the boxes, checking each
/// box against its photo's size (headers only): everything a run reads is checked before its
/// run directory exists.
pub fn load_inputs(config: &Config) -> Result<Inputs> {
    let data_config = setup::with_synthetic_data(config)?;
    let (train, val) = setup::load_data(&data_config)?;
    let evals = scan_eval_sets(&data_config, &train)?;
    // The synthetic set's boxes have no outlines by design: nothing to say about them.
    let say_what_scores = config.data.synthetic.is_none();
    let boxes = data_config
        .data
        .boxes
        .as_deref()
        .map(|path| read_annotations_saying_what_scores(path, say_what_scores))
        .transpose()?;
    let scored = val
        .samples
        .iter()
        .chain(evals.iter().flat_map(|(_, e)| &e.samples));
    let boxes = boxes
        .map(|b| upright_annotations(&b, scored.map(|s| s.path.as_path())))
        .transpose()?;
    Ok(Inputs {
        train,
        val,
        evals,
        boxes,
    })
}

/// What a run trains, and the model its callbacks explain.
pub struct Trainee {
    /// The classifier the callbacks explain (without autodiff).
    pub model: Classifier,
    /// The head, or the top of the backbone with the head, with its optimizer.
    pub training: Training,
    /// The weight file's backbone tensors (fine-tuning runs; empty otherwise).
    pub original_backbone: Vec<NamedTensor>,
    /// The first trained backbone layer (`[model] train_from`).
    pub cut: Option<usize>,
}

/// Load the backbone (trainable from the cut, if any), make a fresh head for `num_classes`
/// classes, and check every callback's method and layer against the model.
pub fn trainee(config: &Config, num_classes: usize, device: &Device) -> Result<Trainee> {
    let weights = WeightFile::open(&config.model.weights).context("[model] weights")?;
    let kind = config.model.head;
    let classes = if num_classes == 2 { 1 } else { num_classes };
    let (backbone, cut) = backbone(config, &weights, device)?;
    // A fine-tuning run exports its backbone every epoch from the original tensors.
    let original_backbone = match cut {
        Some(_) => backbone_tensors(&weights).context("[model] weights")?,
        None => Vec::new(),
    };
    drop(weights);
    let (rate, seed) = (config.train.learning_rate, config.run.seed);
    let training = match cut {
        None => {
            let channels = backbone.channels(backbone.head_input(kind));
            Training::Head(HeadTraining::new(
                kind, channels, classes, rate, seed, device,
            ))
        }
        Some(cut) => Training::Top(TopTraining::new(
            backbone.clone(),
            kind,
            classes,
            cut,
            (rate, config.backbone_learning_rate()),
            seed,
            device,
        )),
    };
    let model = Classifier {
        head: match &training {
            Training::Head(t) => t.head(),
            Training::Top(t) => t.model().head,
        },
        backbone: backbone.valid(),
    };
    for (i, c) in config.callbacks.iter().enumerate() {
        callbacks::check_method(&model, &c.layer, c.kind)
            .with_context(|| format!("[[callbacks]] #{} ({} at `{}`)", i + 1, c.kind, c.layer))?;
    }
    Ok(Trainee {
        model,
        training,
        original_backbone,
        cut,
    })
}

/// The backbone of `config` from `weights` (trainable from the cut `[model] train_from`, if
/// any), and the cut: what the backbone pass runs (`train features` needs no more).
pub fn backbone(
    config: &Config,
    weights: &WeightFile,
    device: &Device,
) -> Result<(Backbone, Option<usize>)> {
    let cut = config
        .train_from()
        .map(|name| config.model.backbone.train_start(name))
        .transpose()
        .context("[model] train_from")?;
    let backbone = Backbone::load_trainable(config.model.backbone, weights, cut, device)
        .context("[model] weights")?;
    Ok((backbone, cut))
}

/// The run directory: `resume_dir`, or a new one with the config written into it.
pub fn run_dir(config: &Config, resume_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = resume_dir {
        return Ok(dir.to_path_buf());
    }
    let text = toml::to_string_pretty(config).context("cannot serialise the config")?;
    let dir = files::create_run_dir(&config.run.runs_dir, &config.run.name)?;
    files::write_atomic(&dir.join("config.toml"), text.as_bytes())?;
    Ok(dir)
}

/// The backbone's work, done once per image (or read from the cache).
pub struct Features {
    /// Every labelled set's rows (pooled features, or activations at the cut).
    pub sets: FeatureSets,
    /// The CAM loggers with their images' activations.
    pub loggers: Loggers,
    /// Seconds hashing the weight file (the cache key).
    pub hash_seconds: f64,
}

/// Run the frozen backbone over every set and the loggers' images.
pub fn features(
    config: &Config,
    model: &Classifier,
    inputs: &Inputs,
    cut: Option<usize>,
    device: &Device,
) -> Result<Features> {
    let hash_start = Instant::now();
    let weights_hash = file_hash(&config.model.weights)?;
    let hash_seconds = hash_start.elapsed().as_secs_f64();
    let extractor = Extractor::new(
        &model.backbone,
        device.clone(),
        config.data.image_size.hw(),
        config.data.backbone_batch_size,
        weights_hash,
        config.cache_dir(),
    )?;
    let start = match cut {
        Some(cut) => Start::Cut(cut),
        None => Start::Pooled(model.layer_name(model.head_input())),
    };
    let sets = FeatureSets::extract(&extractor, &inputs.train, &inputs.val, &inputs.evals, start)?;
    let loggers = setup::cam_loggers(
        config,
        &extractor,
        &sets,
        &inputs.val.classes,
        inputs.boxes.as_ref(),
        cut,
    )?;
    println!("{}", extractor.tally.line());
    Ok(Features {
        sets,
        loggers,
        hash_seconds,
    })
}

/// Where a run starts.
pub enum Saved {
    /// A new run, or one killed before its first checkpoint.
    Fresh,
    /// After the checkpoint's epoch.
    From(Checkpoint),
    /// The run is complete: nothing to do.
    Complete,
}

/// The checkpoint a resumed run continues from. A run whose epochs are all done but whose end
/// was cut short gets its event files cut back, so the end is redone once.
pub fn saved_checkpoint(run_dir: &Path, resume_dir: Option<&Path>, epochs: usize) -> Result<Saved> {
    let path = run_dir.join(CHECKPOINT);
    if resume_dir.is_none() || !path.exists() {
        return Ok(Saved::Fresh);
    }
    let saved = Checkpoint::read(&path)?;
    if saved.epoch >= epochs {
        if run_dir.join(FINISHED).exists() {
            println!("run already complete ({} epochs)", saved.epoch);
            return Ok(Saved::Complete);
        }
        undo_partial_end(run_dir)?;
    }
    Ok(Saved::From(saved))
}

/// The callbacks in call order: the CAM loggers, then the agreement between them.
pub fn callbacks(loggers: Vec<CamLogger>, model: &Classifier) -> Vec<Box<dyn Callback>> {
    let agreement = Agreement::new(&loggers, model);
    let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
    for logger in loggers {
        callbacks.push(Box::new(logger));
    }
    callbacks.push(Box::new(agreement));
    callbacks
}

/// Restore what trains and every callback's state from `saved` (read from `path`).
pub fn restore(
    training: &mut Training,
    callbacks: &mut [Box<dyn Callback>],
    saved: Checkpoint,
    path: &Path,
) -> Result<()> {
    let context = || format!("checkpoint {}", path.display());
    training
        .restore(saved.model, saved.optimizer)
        .with_context(context)?;
    for callback in callbacks {
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
    Ok(())
}

/// A run killed during its end: cut its event files back to their lengths when the end started
/// (the [`FINISHING`] file), so redoing the end writes each record once.
pub fn undo_partial_end(run_dir: &Path) -> Result<()> {
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
pub fn sinks(
    config: &Config,
    run_dir: &Path,
    sets: &FeatureSets,
    class_names: &[String],
    callbacks: &[Box<dyn Callback>],
    resume_dir: Option<&Path>,
    start_epoch: usize,
) -> Result<Vec<Box<dyn Sink>>> {
    let mut tags: Vec<String> = Vec::new();
    for (name, _) in sets.named() {
        tags.extend([
            Metric::Loss(name.to_string()).tag(),
            Metric::Accuracy(name.to_string()).tag(),
        ]);
        for class in class_names {
            let metric = Metric::ClassAccuracy {
                set: name.to_string(),
                class: class.clone(),
            };
            // A class whose column would read back as another metric (e.g. `x_vs_y_spearman`).
            if Metric::from_column(&metric.column()).as_ref() != Some(&metric)
                || Metric::from_tag(&metric.tag()).as_ref() != Some(&metric)
            {
                bail!(
                    "class `{class}`: its metrics.csv column `{}` would read as another \
                     metric's; rename its folder",
                    metric.column()
                );
            }
            tags.push(metric.tag());
        }
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
        let mut sink = TensorBoardSink::open(run_dir, resume_through)?;
        // The layout is a step-0 record: a resume past step 0 keeps it.
        if matches!(resume_through, None | Some(-1)) {
            sink.layout(&scalar_layout(&tags))?;
        }
        sinks.push(Box::new(sink));
    }
    if config.logging.png {
        sinks.push(Box::new(PngSink::new(run_dir.join("images"))));
    }
    Ok(sinks)
}

/// `[data] boxes`, saying once (when `say`) which localization scores it allows: without
/// outlines only the head-box ones.
fn read_annotations_saying_what_scores(path: &Path, say: bool) -> Result<Annotations> {
    let annotations = data::read_annotations(path)?;
    if say {
        say_what_scores(path, &annotations);
    }
    Ok(annotations)
}

/// Say which localization scores `annotations` (read from `path`) allow.
fn say_what_scores(path: &Path, annotations: &Annotations) {
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
}

/// Bytes of everything the run keeps from the backbone: pooled features of every set and the
/// loggers' activation maps.
pub fn memory_bytes(sets: &FeatureSets, loggers: &[CamLogger]) -> usize {
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
