//! `train features --config C --shard K/N`: shard `K` of `N` of the backbone work that
//! `train --config C` will need, written into C's feature cache; run the shards anywhere that
//! sees the cache (a Slurm job array, a Kubernetes Indexed Job), then `train --config C` reads it
//! all and prints `features: 0 computed, … cached`.
//!
//! The work is a list of items, the same in every process: every chunk of the train,
//! validation and eval sets (pooled features, or the input of the cut when the top of the
//! backbone trains), then the activations of the images the callbacks explain and score. Shard
//! `K` takes the items whose middle image falls in the `K`-th of `N` equal parts of all the
//! items' images (see [`shard`](crate::features::shard)).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::config::{CallbackConfig, Config};
use crate::data::{images, Dataset, Sample};
use crate::features::chunks::{check_writable, chunk_ranges};
use crate::features::shard::{Shard, ShardArg};
use crate::features::{file_hash, Extractor, Work};
use crate::run::open::{self, Inputs};
use crate::run::progress::Progress;
use crate::run::setup::logger_images;
use burn::module::Module;
use model::Backbone;
use model::WeightFile;

/// Arguments of `train features`.
#[derive(Debug, clap::Args)]
pub struct FeaturesArgs {
    /// The run's config (TOML): the same file `train --config` will be given.
    #[arg(long)]
    pub config: PathBuf,
    /// Which part of the work: `K/N` (shard K of N, counting from 0), or `auto`: a Slurm job
    /// array's task (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed
    /// Job's pod (JOB_COMPLETION_INDEX of JOB_COMPLETIONS). Default: all of it.
    #[arg(long, default_value = "0/1")]
    pub shard: ShardArg,
}

/// Run `train features`.
pub fn run(args: &FeaturesArgs) -> Result<()> {
    let shard = args.shard.resolve(|name| std::env::var(name).ok())?;
    let started = Instant::now();
    let config = Config::load(&args.config)?;
    let cache_dir = config.cache_dir().context(
        "train features fills the feature cache, but the config has [data] cache = false",
    )?;
    check_writable(&cache_dir)?;
    let device = model::device_from_name(&config.run.device).map_err(anyhow::Error::msg)?;
    let inputs = open::load_inputs(&config)?;
    let weights = WeightFile::open(&config.model.weights).context("[model] weights")?;
    let (backbone, cut) = open::backbone(&config, &weights, &device)?;
    drop(weights);
    let backbone = backbone.valid();
    let extractor = Extractor::new(
        &backbone,
        device,
        config.data.image_size.hw(),
        config.data.backbone_batch_size,
        file_hash(&config.model.weights)?,
        Some(cache_dir.clone()),
    )?;
    println!("shard {shard}: feature cache {}", cache_dir.display());
    let work = match cut {
        Some(cut) => Work::Cut(cut),
        None => Work::Pooled,
    };
    let items = owned_items(plan(&config, &inputs, &backbone, cut)?, shard);
    set_chunks(&extractor, &inputs, &items, work)?;
    callback_maps(&extractor, &config, &inputs, &items, cut)?;
    println!(
        "shard {shard} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", extractor.tally.line());
    Ok(())
}

/// One item of the backbone pass.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// A chunk of a labelled set (an index into [`sets`]).
    Chunk { set: usize, range: Range<usize> },
    /// The activations at the input of layer `input_of` of the images a `[[callbacks]]` entry
    /// explains (`scored` false) or scores (true), with the entry's image count.
    Maps {
        input_of: usize,
        scored: bool,
        images: usize,
    },
}

/// The sets in the order a run extracts them, with their names.
fn sets(inputs: &Inputs) -> Vec<(&str, &Dataset)> {
    [("train", &inputs.train), ("val", &inputs.val)]
        .into_iter()
        .chain(inputs.evals.iter().map(|(name, set)| (name.as_str(), set)))
        .collect()
}

/// Every item of the pass with its size in images, the same in every process: the sets'
/// chunks, then the callbacks' activations (sizes from the config and the file lists, so no
/// image is read to plan).
fn plan(
    config: &Config,
    inputs: &Inputs,
    backbone: &Backbone,
    cut: Option<usize>,
) -> Result<Vec<(Item, usize)>> {
    let mut items = Vec::new();
    for (set, (_, data)) in sets(inputs).iter().enumerate() {
        for range in chunk_ranges(data.samples.len()) {
            let len = range.len();
            items.push((Item::Chunk { set, range }, len));
        }
    }
    for spec in &config.callbacks {
        for scored in [false, true] {
            if let Some(item @ Item::Maps { images, .. }) =
                maps_item(spec, scored, inputs, backbone, cut)?
            {
                if !items.iter().any(|(i, _)| *i == item) {
                    items.push((item, images));
                }
            }
        }
    }
    Ok(items)
}

/// The item of the images a `[[callbacks]]` entry explains (`scored` false) or scores
/// localization on (true); `None` when there is no backbone work (no such images, or the entry
/// keeps the images themselves). Entries with one item share its activations.
fn maps_item(
    spec: &CallbackConfig,
    scored: bool,
    inputs: &Inputs,
    backbone: &Backbone,
    cut: Option<usize>,
) -> Result<Option<Item>> {
    let layer = backbone.kind().layer(&spec.layer)?;
    let input_of = match cut {
        Some(cut) if layer >= cut => cut,
        _ => layer + 1,
    };
    let images = match (scored, &inputs.boxes) {
        (false, _) => spec.num_images.min(inputs.val.samples.len()),
        (true, None) => 0,
        (true, Some(boxes)) => sets(inputs)[1..]
            .iter()
            .flat_map(|(_, d)| &d.samples)
            .filter(|s| boxes.contains_key(&s.path))
            .count()
            .min(spec.localization_images),
    };
    Ok((input_of > 0 && images > 0).then_some(Item::Maps {
        input_of,
        scored,
        images,
    }))
}

/// This shard's items: those whose middle image falls in its share of all the items' images.
fn owned_items(items: Vec<(Item, usize)>, shard: Shard) -> Vec<Item> {
    let total: usize = items.iter().map(|(_, len)| len).sum();
    let mut start = 0;
    let mut out = Vec::new();
    for (item, len) in items {
        if shard.owns(start, len, total) {
            out.push(item);
        }
        start += len;
    }
    out
}

/// The labelled sets' chunks among `items`, computing `work`, set by set.
fn set_chunks(extractor: &Extractor, inputs: &Inputs, items: &[Item], work: Work) -> Result<()> {
    for (index, (name, set)) in sets(inputs).into_iter().enumerate() {
        let samples: Vec<&Sample> = set.samples.iter().collect();
        let ranges: Vec<&Range<usize>> = items
            .iter()
            .filter_map(|item| match item {
                Item::Chunk { set, range } if *set == index => Some(range),
                _ => None,
            })
            .collect();
        let images: usize = ranges.iter().map(|r| r.len()).sum();
        println!(
            "{name}: {} of {} chunks ({images} of {} images)",
            ranges.len(),
            chunk_ranges(samples.len()).len(),
            samples.len()
        );
        let mut progress = Progress::new(&format!("{name}: backbone images"), images);
        for range in ranges {
            extractor.chunk(work, &samples[range.clone()], &mut progress)?;
        }
        progress.finish();
    }
    Ok(())
}

/// The callbacks' activations among `items`, of the images a run's callbacks choose (see
/// [`readable_candidates`]).
fn callback_maps(
    extractor: &Extractor,
    config: &Config,
    inputs: &Inputs,
    items: &[Item],
    cut: Option<usize>,
) -> Result<()> {
    if !items.iter().any(|i| matches!(i, Item::Maps { .. })) {
        return Ok(());
    }
    let most = config
        .callbacks
        .iter()
        .map(|c| c.num_images)
        .max()
        .unwrap_or(0);
    let scored = config
        .callbacks
        .iter()
        .map(|c| c.localization_images)
        .max()
        .unwrap_or(0);
    let (val, candidates) = readable_candidates(inputs, most, scored);
    let candidates: Vec<&Sample> = candidates.iter().collect();
    let backbone = extractor.backbone;
    let boxes = inputs.boxes.as_ref();
    let chosen = logger_images(config, backbone, &val, &candidates, boxes, cut)?;
    for (spec, images) in config.callbacks.iter().zip(&chosen) {
        for (scored, samples) in [(false, &images.explained), (true, &images.localized)] {
            let item = maps_item(spec, scored, inputs, backbone, cut)?;
            if item.is_some_and(|item| items.contains(&item)) && !samples.is_empty() {
                let below = images.input_of - 1; // An item has input_of > 0.
                let samples: Vec<&Sample> = samples.iter().collect();
                extractor.chunks(Work::Maps(below), &samples, backbone.layer_names()[below])?;
            }
        }
    }
    Ok(())
}

/// The readable images a run's callbacks choose from, found by reading only as far as the
/// choice reaches (a run learns which images are readable from its whole backbone pass): the
/// first `most` readable validation images of each class (a class-balanced choice of `most`
/// takes no more from one class), in the set's order, and the first `scored` readable images
/// with a box among the validation and eval images.
fn readable_candidates(inputs: &Inputs, most: usize, scored: usize) -> (Dataset, Vec<Sample>) {
    let val = &inputs.val;
    let mut kept: Vec<usize> = Vec::new();
    for class in 0..val.classes.len() {
        let of_class = val
            .samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.label == class);
        kept.extend(first_readable(of_class, most).into_iter().map(|(i, _)| i));
    }
    kept.sort_unstable();
    let explained = Dataset {
        classes: val.classes.clone(),
        samples: kept.iter().map(|&i| val.samples[i].clone()).collect(),
    };
    let candidates = match &inputs.boxes {
        Some(boxes) => {
            let sets = sets(inputs);
            let evaluated = sets[1..]
                .iter()
                .flat_map(|(_, d)| &d.samples)
                .filter(|s| boxes.contains_key(&s.path))
                .enumerate();
            first_readable(evaluated, scored)
                .into_iter()
                .map(|(_, s)| s.clone())
                .collect()
        }
        None => Vec::new(),
    };
    (explained, candidates)
}

/// The first `count` of `samples` that can be read (as a run's backbone pass reads them),
/// decoding a few at a time in parallel.
fn first_readable<'a>(
    mut samples: impl Iterator<Item = (usize, &'a Sample)>,
    count: usize,
) -> Vec<(usize, &'a Sample)> {
    let mut found = Vec::new();
    while found.len() < count {
        let next: Vec<(usize, &Sample)> = samples.by_ref().take(16).collect();
        if next.is_empty() {
            break;
        }
        let readable: Vec<bool> = next
            .par_iter()
            .map(|(_, s)| images::read_rgb(&s.path).is_ok())
            .collect();
        let remaining = count - found.len();
        found.extend(
            next.into_iter()
                .zip(readable)
                .filter(|(_, ok)| *ok)
                .map(|(item, _)| item)
                .take(remaining),
        );
    }
    found
}
