//! `train --config FILE` / `train --resume RUN_DIR`: the whole run, in order —
//! data → frozen backbone once (cached) → head epochs → callbacks → logs → summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use callbacks::{
    Callback, CallbackContext, CamLogger, ExplainedImages, PngSink, Sink, TensorBoardSink,
};
use model::{Backbone, Classifier, Head, HeadKind, WeightFile};
use tensorboard::{EventWriter, SessionStatus};

use crate::config::Config;
use crate::data::{self, Dataset};
use crate::features::{file_hash, Extractor};
use crate::run::{self, MetricsRow};
use crate::trainer::HeadTrainer;

/// Test hook: `EPOCH` or `EPOCH:SECONDS`: after checkpointing that epoch, stall (600 s by
/// default), so a test can SIGKILL the run or pull its directory away mid-run.
const STALL_ENV: &str = "TRAIN_TEST_STALL_AFTER_EPOCH";

fn each(
    sinks: &mut [Box<dyn Sink>],
    f: impl FnMut(&mut dyn Sink) -> Result<(), callbacks::SinkError>,
) -> Result<()> {
    callbacks::each_sink(sinks, f).context("writing logs")
}

/// Run (or resume) training.
pub fn fit(config: Config, resume_dir: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let device = model::device_from_name(&config.run.device).map_err(anyhow::Error::msg)?;
    let kind = config.head_kind()?;
    let specs = config.callback_specs()?;
    // A synthetic set is generated once into the cache and then read like any other.
    let mut data_config = config.clone();
    if let Some(dir) = crate::setup::synthetic_dir(&config)? {
        data_config.data.synthetic = None;
        data_config.data.train_dir = Some(dir.join("train"));
        data_config.data.val_dir = Some(dir.join("val"));
        data_config.data.boxes = Some(dir.join("boxes.json"));
    }
    let (train, val) = crate::setup::load_data(&data_config)?;
    let boxes = match &data_config.data.boxes {
        Some(path) => Some(data::read_boxes(path)?),
        None => None,
    };

    let weights = WeightFile::open(&config.model.weights).context("[model] weights")?;
    let backbone =
        Backbone::load(&config.model.backbone, &weights, &device).context("[model] weights")?;
    let channels = backbone.channels(backbone.head_input(kind));
    let num_logits = if train.classes.len() == 2 {
        1
    } else {
        train.classes.len()
    };
    let mut model = Classifier {
        backbone,
        head: Head::new(kind, channels, num_logits, &device),
    };
    for (i, spec) in specs.iter().enumerate() {
        callbacks::check_method(&model, &spec.layer, spec.method).with_context(|| {
            format!(
                "[[callbacks]] #{} ({} at `{}`)",
                i + 1,
                spec.method,
                spec.layer
            )
        })?;
    }

    let run_dir = match resume_dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let dir = run::create_run_dir(&config.run.runs_dir, &config.run.name)?;
            let text = toml::to_string_pretty(&config).context("cannot serialise the config")?;
            run::write_atomic(&dir.join("config.toml"), text.as_bytes())?;
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
    let train_features = extractor.pooled(&train, "train")?;
    let val_features = extractor.pooled(&val, "val")?;
    let head_layer = model.layer_name(model.head_input());
    let x_train = train_features.by_layer[head_layer].clone();
    let x_val = val_features.by_layer[head_layer].clone();
    let y_train: Vec<usize> = train_features
        .kept
        .iter()
        .map(|&i| train.samples[i].label)
        .collect();
    let y_val: Vec<usize> = val_features
        .kept
        .iter()
        .map(|&i| val.samples[i].label)
        .collect();

    // More evaluation sets: pooled features and labels, scored every epoch like val.
    let mut evals = Vec::new();
    for e in &config.data.eval {
        let set = data::scan(&e.dir, &format!("[[data.eval]] {}", e.name))?;
        if set.classes != train.classes {
            bail!(
                "[[data.eval]] {}: classes {:?} differ from training classes {:?}",
                e.name,
                set.classes,
                train.classes
            );
        }
        let features = extractor.pooled(&set, &e.name)?;
        let x = features.by_layer[head_layer].clone();
        let y: Vec<usize> = features
            .kept
            .iter()
            .map(|&i| set.samples[i].label)
            .collect();
        let kept: Vec<crate::data::Sample> = features
            .kept
            .iter()
            .map(|&i| set.samples[i].clone())
            .collect();
        evals.push((e.name.clone(), x, y, kept, features));
    }

    // The callbacks' fixed images: chosen once, balanced over classes, readable ones only.
    let readable = Dataset {
        classes: val.classes.clone(),
        samples: val_features
            .kept
            .iter()
            .map(|&i| val.samples[i].clone())
            .collect(),
    };
    let most = specs.iter().map(|s| s.num_images).max().unwrap_or(0);
    let chosen = data::balanced_subset(&readable, most);
    let mut map_seconds = 0.0;
    let mut loggers: Vec<CamLogger> = Vec::new();
    let mut originals = Vec::new();
    for spec in &specs {
        let samples: Vec<_> = chosen
            .iter()
            .take(spec.num_images)
            .map(|&i| &readable.samples[i])
            .collect();
        let photos = extractor.photos(&samples)?;
        let (activations, seconds) = extractor.maps(&samples, &spec.layer)?;
        map_seconds += seconds;
        if originals.len() < photos.len() {
            originals = samples
                .iter()
                .map(|s| s.name.clone())
                .zip(photos.iter().cloned())
                .collect();
        }
        let localization = match &boxes {
            Some(boxes) => {
                // Every evaluated image that has a box: validation first, then the eval sets.
                let mut candidates = readable.clone();
                for (_, _, _, kept, _) in &evals {
                    candidates.samples.extend(kept.iter().cloned());
                }
                let (set, seconds) =
                    crate::setup::localization_set(&extractor, &candidates, boxes, spec)?;
                map_seconds += seconds;
                set
            }
            None => None,
        };
        loggers.push(CamLogger {
            localization,
            faithfulness: spec.faithfulness,
            last_scalars: Vec::new(),
            last_maps: None,
            method: spec.method,
            layer: spec.layer.clone(),
            every: spec.every,
            style: spec.style,
            images: ExplainedImages {
                names: samples.iter().map(|s| s.name.clone()).collect(),
                photos,
                labels: samples.iter().map(|s| s.label).collect(),
                class_names: val.classes.clone(),
                activations,
            },
        });
    }
    // Everything the run keeps from the backbone: pooled features of every set and layer, and
    // the callbacks' and localization sets' activation maps.
    let bytes_of = |t: &burn::tensor::Tensor<2>| t.dims().iter().product::<usize>() * 4;
    let maps_of = |t: &burn::tensor::Tensor<4>| t.dims().iter().product::<usize>() * 4;
    let cache_memory: usize = [&train_features, &val_features]
        .into_iter()
        .chain(evals.iter().map(|e| &e.4))
        .flat_map(|f| f.by_layer.values())
        .map(bytes_of)
        .sum::<usize>()
        + loggers
            .iter()
            .map(|l| {
                maps_of(&l.images.activations)
                    + l.localization
                        .as_ref()
                        .map_or(0, |s| maps_of(&s.activations))
            })
            .sum::<usize>();

    // The head, fresh or from the checkpoint.
    let dims: Vec<usize> = match kind {
        HeadKind::GapLinear => vec![channels, num_logits],
        HeadKind::GapDense => vec![channels, model::head::DENSE_HIDDEN, num_logits],
    };
    let mut head = HeadTrainer::new(&dims, config.train.learning_rate, config.run.seed, &device);
    let checkpoint = run_dir.join("checkpoint.safetensors");
    let metrics_path = run_dir.join("metrics.csv");
    let (start_epoch, mut rows) = if resume_dir.is_some() && checkpoint.exists() {
        let epoch = run::load_checkpoint(&checkpoint, &mut head, &device)?;
        let rows: Vec<MetricsRow> = run::read_metrics(&metrics_path)?
            .into_iter()
            .filter(|r| r.epoch <= epoch)
            .collect();
        println!("resuming after epoch {epoch}");
        (epoch, rows)
    } else {
        (0, Vec::new())
    };
    if start_epoch >= config.train.epochs {
        println!("run already complete ({start_epoch} epochs)");
        return Ok(());
    }

    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if config.logging.tensorboard {
        let writer = if resume_dir.is_some() {
            // Before the first checkpoint nothing is kept: the step-0 records are written again.
            let through = if start_epoch == 0 {
                -1
            } else {
                start_epoch as i64
            };
            EventWriter::resume(&run_dir, through)?
        } else {
            EventWriter::create(&run_dir)?
        };
        sinks.push(Box::new(TensorBoardSink { writer }));
    }
    if config.logging.png {
        sinks.push(Box::new(PngSink::new(run_dir.join("images"))));
    }
    if start_epoch == 0 {
        let config_text = format!(
            "```toml\n{}\n```",
            toml::to_string_pretty(&config).unwrap_or_default()
        );
        each(&mut sinks, |s| s.text("config", &config_text, 0))?;
        for (name, photo) in &originals {
            each(&mut sinks, |s| {
                s.images(&format!("originals/{name}"), std::slice::from_ref(photo), 0)
            })?;
        }
        if let Some(tb) = tb_writer(&mut sinks) {
            tb.add_hparams_experiment(&crate::hparams::experiment(&config, kind))?;
            tb.add_session_start(
                &crate::hparams::hparams(&config, kind),
                tensorboard::now_secs(),
            )?;
        }
        each(&mut sinks, |s| s.flush())?;
    }

    if start_epoch == 0 {
        for logger in &mut loggers {
            let mut ctx = CallbackContext {
                model: &model,
                epoch: 0,
                sinks: &mut sinks,
            };
            logger
                .on_train_start(&mut ctx)
                .with_context(|| format!("callback {}", logger.name()))?;
        }
    }
    let mut columns: Vec<String> = run::METRIC_COLUMNS.iter().map(|c| c.to_string()).collect();
    for (name, ..) in &evals {
        columns.push(format!("{name}_loss"));
        columns.push(format!("{name}_accuracy"));
    }
    for logger in &loggers {
        for m in logger.scalar_names() {
            columns.push(format!("{}_{m}", logger.method));
        }
    }
    let pairs = callbacks::agreement::pairs(&loggers, &model);
    columns.extend(callbacks::agreement::column_names(&pairs));
    columns.extend(run::TIMING_COLUMNS.iter().map(|c| c.to_string()));
    let run_dir_identity = run::dir_identity(&run_dir)?;
    let stall: Option<(usize, u64)> = std::env::var(STALL_ENV).ok().and_then(|v| {
        let (epoch, seconds) = v.split_once(':').unwrap_or((&v, "600"));
        Some((epoch.parse().ok()?, seconds.parse().ok()?))
    });
    let mut progress = crate::progress::Progress::new("epochs", config.train.epochs - start_epoch);
    let (mut head_seconds, mut callback_seconds) = (0.0, 0.0);
    // The agreement values of the latest epoch run here (for the summary).
    let mut last_agreement: Vec<f32> = Vec::new();
    for epoch in start_epoch + 1..=config.train.epochs {
        let epoch_start = Instant::now();
        let train_score = head.train_epoch(
            &x_train,
            &y_train,
            config.train.batch_size,
            config.run.seed,
            epoch,
        )?;
        let val_score = head.evaluate(&x_val, &y_val)?;
        let eval_scores = evals
            .iter()
            .map(|(_, x, y, _, _)| head.evaluate(x, y))
            .collect::<Result<Vec<_>>>()?;
        let head_time = epoch_start.elapsed().as_secs_f64();
        model.head = model.head.with_parameters(head.layers.clone());
        let step = epoch as i64;
        for (tag, value) in [
            ("loss/train", train_score.loss),
            ("loss/val", val_score.loss),
            ("accuracy/train", train_score.accuracy),
            ("accuracy/val", val_score.accuracy),
        ] {
            each(&mut sinks, |s| s.scalar(tag, value as f32, step))?;
        }
        for ((name, ..), score) in evals.iter().zip(&eval_scores) {
            each(&mut sinks, |s| {
                s.scalar(&format!("loss/{name}"), score.loss as f32, step)
            })?;
            each(&mut sinks, |s| {
                s.scalar(&format!("accuracy/{name}"), score.accuracy as f32, step)
            })?;
        }
        let callbacks_start = Instant::now();
        for logger in &mut loggers {
            let mut ctx = CallbackContext {
                model: &model,
                epoch,
                sinks: &mut sinks,
            };
            logger
                .on_epoch_end(&mut ctx)
                .with_context(|| format!("callback {}", logger.name()))?;
        }
        let (agreement, warnings) =
            callbacks::agreement::log_epoch(&loggers, &pairs, epoch, &mut sinks)
                .context("agreement between methods")?;
        for warning in &warnings {
            progress.println(&format!("warning: {warning}"));
        }
        let callback_time = callbacks_start.elapsed().as_secs_f64();
        each(&mut sinks, |s| s.flush())?;
        head_seconds += head_time;
        callback_seconds += callback_time;
        let mut values = vec![
            train_score.loss,
            train_score.accuracy,
            val_score.loss,
            val_score.accuracy,
        ];
        for score in &eval_scores {
            values.extend([score.loss, score.accuracy]);
        }
        for logger in &loggers {
            let n = logger.scalar_names().len();
            let latest = logger.last_scalars.iter().copied().map(f64::from);
            // NaN when the logger did not score yet (`every` > 1).
            values.extend(latest.chain(std::iter::repeat(f64::NAN)).take(n));
        }
        values.extend(agreement.iter().map(|&v| f64::from(v)));
        last_agreement = agreement;
        values.extend([
            head_time,
            callback_time,
            epoch_start.elapsed().as_secs_f64(),
        ]);
        rows.push(MetricsRow { epoch, values });
        // Writers recreate missing directories; a run dir deleted or replaced under the run
        // must stop it instead of silently starting a new, partial one.
        run::check_same_dir(&run_dir, &run_dir_identity)?;
        run::write_metrics(&metrics_path, &columns, &rows)?;
        run::export_head(&run_dir.join("head.safetensors"), &head, kind)?;
        run::save_checkpoint(&checkpoint, &head, epoch)?;
        progress.println(&format!(
            "epoch {epoch:>3}/{}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  (head {:.3} s, callbacks {:.3} s)",
            config.train.epochs, train_score.loss, train_score.accuracy, val_score.loss, val_score.accuracy, head_time, callback_time
        ));
        if progress.is_bar() {
            progress.add(1);
        }
        if let Some((_, seconds)) = stall.filter(|(e, _)| *e == epoch) {
            eprintln!("{STALL_ENV}: stalled after epoch {epoch}");
            std::thread::sleep(std::time::Duration::from_secs(seconds));
        }
    }
    progress.finish();
    for logger in &mut loggers {
        let mut ctx = CallbackContext {
            model: &model,
            epoch: config.train.epochs,
            sinks: &mut sinks,
        };
        logger
            .on_train_end(&mut ctx)
            .with_context(|| format!("callback {}", logger.name()))?;
    }
    if let Some(tb) = tb_writer(&mut sinks) {
        tb.add_session_end(SessionStatus::Success, tensorboard::now_secs())?;
    }
    each(&mut sinks, |s| s.flush())?;

    // Summary.
    let best = rows
        .iter()
        .max_by(|a, b| a.values[3].total_cmp(&b.values[3]));
    println!("\nsummary: {}", run_dir.display());
    if let Some(best) = best {
        println!(
            "  best val accuracy {:.4} at epoch {}",
            best.values[3], best.epoch
        );
    }
    let pooled_seconds = train_features.backbone_seconds
        + val_features.backbone_seconds
        + evals.iter().map(|e| e.4.backbone_seconds).sum::<f64>();
    let images = train_features.kept.len()
        + val_features.kept.len()
        + evals.iter().map(|e| e.3.len()).sum::<usize>();
    if let Some(last) = rows.last() {
        for (i, (name, ..)) in evals.iter().enumerate() {
            println!(
                "  {name} accuracy {:.4} (last epoch)",
                last.values[5 + 2 * i]
            );
        }
    }
    let from_cache = train_features.from_cache
        && val_features.from_cache
        && evals.iter().all(|e| e.4.from_cache);
    if from_cache {
        println!("  backbone 0.0 s ({images} images, from the cache)");
    } else {
        println!(
            "  backbone {pooled_seconds:.1} s for {images} images = {:.1} img/s (pooled features)",
            images as f64 / pooled_seconds.max(1e-9)
        );
    }
    println!(
        "  callback maps {map_seconds:.1} s, weights hash {hash_seconds:.1} s, head training {head_seconds:.2} s, \
         callbacks {callback_seconds:.2} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  feature cache: {:.2} MB of pooled features on disk; {:.2} MB of features and maps in memory",
        (train_features.cache_bytes + val_features.cache_bytes + evals.iter().map(|e| e.4.cache_bytes).sum::<u64>()) as f64 / 1e6,
        cache_memory as f64 / 1e6
    );
    let skipped: Vec<_> = train_features
        .skipped
        .iter()
        .chain(&val_features.skipped)
        .collect();
    println!("  skipped files: {}", skipped.len());
    for s in &skipped {
        println!("    {}: {}", s.path.display(), s.reason);
    }
    for logger in &loggers {
        let scores: Vec<String> = logger
            .scalar_names()
            .iter()
            .zip(&logger.last_scalars)
            .map(|(name, value)| format!("{} {value:.3}", name.replace('_', " ")))
            .collect();
        if !scores.is_empty() {
            println!("  {} (last epoch): {}", logger.method, scores.join(", "));
        }
    }
    for (i, pair) in pairs.iter().enumerate() {
        if let (Some(rho), Some(iou)) = (last_agreement.get(2 * i), last_agreement.get(2 * i + 1)) {
            println!(
                "  agreement {} (last epoch): Spearman {rho:.3}, top-20% IoU {iou:.3}",
                pair.label
            );
        }
    }
    println!(
        "  open TensorBoard: scripts/tensorboard.sh {}",
        config.run.runs_dir.display()
    );
    Ok(())
}

fn tb_writer(sinks: &mut [Box<dyn Sink>]) -> Option<&mut EventWriter> {
    sinks.iter_mut().find_map(|s| s.as_tensorboard())
}

/// Read the config a run was started with (for `--resume`).
pub fn run_config(run_dir: &Path) -> Result<(Config, PathBuf)> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        bail!(
            "--resume {}: no config.toml there (is it a run directory?)",
            run_dir.display()
        );
    }
    Ok((Config::load(&path)?, run_dir.to_path_buf()))
}
