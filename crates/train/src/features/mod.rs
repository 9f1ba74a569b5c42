//! The frozen backbone runs once per image: pooled features (what the head trains on), or the
//! activations at the cut of a fine-tuning run, and, for the few images the callbacks explain,
//! full activation maps. All of it is cached on disk under `<runs_dir>/.cache` in chunks of
//! consecutive images ([`chunks`]), each keyed by the weights' content, the content of the
//! images it holds, the input size and the layer, so a second run on the same data (say the
//! Grad-CAM run after the CAM run) skips the backbone entirely, and the processes of a sharded
//! pass (`train features --shard K/N`, [`shard`]) fill the cache side by side. A chunk that does
//! not fit the images it is looked up for (unreadable, or rows that do not match the images:
//! stale or damaged, since the key covers the images' content) is ignored with a warning,
//! recomputed and overwritten.

mod cache;
pub mod chunks;
mod compute;
pub mod cut;
pub mod sets;
pub mod shard;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use model::{Backbone, HeadKind};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::data::images;
use crate::data::{Dataset, Sample};
use crate::run::progress::Progress;
use crate::tensors::NamedTensor;
use chunks::{chunk_ranges, Readable};

/// Bump when preprocessing or the cache layout changes: old entries are then never reused.
const CACHE_FORMAT: &str = "v3: rgb8 triangle-resize imagenet-norm; chunks; pooled f16, maps f32";

/// Layers whose pooled output is cached: the inputs of both heads, in network order.
pub fn pooled_layers(backbone: &Backbone) -> Vec<usize> {
    let mut layers = vec![
        backbone.head_input(HeadKind::GapLinear),
        backbone.head_input(HeadKind::GapDense),
    ];
    layers.sort_unstable();
    layers.dedup();
    layers
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// The reason.
    pub reason: String,
}

/// Pooled features of a data set's readable images.
pub struct PooledFeatures {
    /// Indices (into the data set's samples) of the images kept, in order.
    pub kept: Vec<usize>,
    /// Unreadable files.
    pub skipped: Vec<Skipped>,
    /// Per layer of [`pooled_layers`] (by name): [N_kept, C].
    pub by_layer: HashMap<String, Tensor<2>>,
    /// Whether all of it came from the disk cache.
    pub from_cache: bool,
    /// Seconds spent in the backbone (0 on a cache hit).
    pub backbone_seconds: f64,
    /// Bytes of the cache files.
    pub cache_bytes: u64,
}

/// What the backbone computes for a chunk of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Pooled features at every layer of [`pooled_layers`] (f16; only the head trains).
    Pooled,
    /// The input of backbone layer `cut` (f16 rows; the top of the backbone trains).
    Cut(usize),
    /// The activations of backbone layer `layer` (f32; the images the callbacks explain).
    Maps(usize),
}

impl Work {
    /// The cache file's prefix.
    pub fn kind(self) -> &'static str {
        match self {
            Work::Pooled => "pooled",
            Work::Cut(_) => "cut",
            Work::Maps(_) => "maps",
        }
    }

    /// What the cache key covers besides the weights, the input size and the images.
    fn detail(self, backbone: &Backbone) -> String {
        let names = backbone.layer_names();
        match self {
            Work::Pooled => {
                let layers: Vec<&str> = pooled_layers(backbone).iter().map(|&l| names[l]).collect();
                format!("{}:{}", backbone.name(), layers.join(","))
            }
            Work::Cut(cut) => format!("input of {}", names[cut]),
            Work::Maps(layer) => names[layer].to_string(),
        }
    }
}

/// A chunk's result: which images were read, and what the backbone made of them.
pub struct Chunk {
    /// Which of the chunk's images were read.
    pub readable: Readable,
    /// Pooled features (one [kept, C] per layer) or maps ([kept, C, h, w]) on the host; for a
    /// cut, nothing (the rows are in `rows`).
    pub tensors: Vec<NamedTensor>,
    /// A cut's rows, on disk.
    pub rows: Option<cut::CutPart>,
    /// Whether it came from the cache.
    pub from_cache: bool,
    /// Seconds spent decoding and in the backbone (0 from the cache).
    pub backbone_seconds: f64,
    /// Bytes of its cache file.
    pub bytes: u64,
}

/// How many images' backbone work a process computed and read from the cache (an image counts
/// once per chunk it is in: its pooled features, and its maps when a callback explains it).
#[derive(Debug, Default)]
pub struct Tally {
    computed: AtomicUsize,
    cached: AtomicUsize,
}

impl Tally {
    /// (computed, cached) so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.computed.load(Ordering::Relaxed),
            self.cached.load(Ordering::Relaxed),
        )
    }

    /// The line a run and `train features` print: `features: X computed, Y cached`.
    pub fn line(&self) -> String {
        let (computed, cached) = self.counts();
        format!("features: {computed} computed, {cached} cached")
    }

    fn add(&self, images: usize, from_cache: bool) {
        let counter = if from_cache {
            &self.cached
        } else {
            &self.computed
        };
        counter.fetch_add(images, Ordering::Relaxed);
    }
}

/// Runs the backbone and the cache.
pub struct Extractor<'a> {
    /// The frozen backbone.
    pub backbone: &'a Backbone,
    /// Where tensors live.
    pub device: Device,
    /// Network input [height, width].
    pub size: [usize; 2],
    /// Images per backbone batch.
    pub batch_size: usize,
    /// Hex SHA-256 of the weights file.
    pub weights_hash: String,
    /// The cache directory (`None`: no disk cache).
    pub cache_dir: Option<PathBuf>,
    /// What was computed and what read from the cache.
    pub tally: Tally,
    /// Without a cache: where a cut's rows go (removed when the last rows using it are).
    scratch: OnceLock<Arc<tempfile::TempDir>>,
}

/// Hex SHA-256 of a file's content.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<'a> Extractor<'a> {
    /// An extractor for `backbone` at input `size`, caching under `cache_dir` (checked to be
    /// writable; `None`: no disk cache).
    pub fn new(
        backbone: &'a Backbone,
        device: Device,
        size: [usize; 2],
        batch_size: usize,
        weights_hash: String,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let cache_dir = cache_dir
            .as_deref()
            .map(chunks::check_writable)
            .transpose()?;
        if let Some(dir) = &cache_dir {
            let removed = chunks::remove_stale_temporaries(dir);
            if removed > 0 {
                println!(
                    "removed {removed} temporary files that killed processes left in {}",
                    dir.display()
                );
            }
        }
        Ok(Self {
            backbone,
            device,
            size,
            batch_size,
            weights_hash,
            cache_dir,
            tally: Tally::default(),
            scratch: OnceLock::new(),
        })
    }

    pub(crate) fn key(&self, kind: &str, image_hashes: &[String], extra: &str) -> String {
        let mut h = Sha256::new();
        let parts = [
            CACHE_FORMAT,
            kind,
            self.backbone.name(),
            &self.weights_hash,
            &format!("{:?}", self.size),
            extra,
        ];
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for ih in image_hashes {
            h.update(ih.as_bytes());
        }
        hex(&h.finalize())[..24].to_string()
    }

    pub(crate) fn hashes(samples: &[&Sample]) -> Vec<String> {
        samples
            .par_iter()
            .map(|s| match std::fs::read(&s.path) {
                Ok(bytes) => hex(&Sha256::digest(&bytes)),
                Err(e) => format!("unreadable:{e}"),
            })
            .collect()
    }

    /// `work` for every chunk of `samples`, in order, with each chunk's range; a progress bar
    /// labelled `what` counts the images computed.
    pub fn chunks(
        &self,
        work: Work,
        samples: &[&Sample],
        what: &str,
    ) -> Result<Vec<(Range<usize>, Chunk)>> {
        let mut progress = Progress::new(&format!("{what}: backbone images"), samples.len());
        let mut out = Vec::new();
        for range in chunk_ranges(samples.len()) {
            let chunk = self.chunk(work, &samples[range.clone()], &mut progress)?;
            out.push((range, chunk));
        }
        progress.finish();
        Ok(out)
    }

    /// Pooled features of every readable image of `data` (at [`pooled_layers`]).
    pub fn pooled(&self, data: &Dataset, what: &str) -> Result<PooledFeatures> {
        let samples: Vec<&Sample> = data.samples.iter().collect();
        let mut chunks = self.chunks(Work::Pooled, &samples, what)?;
        let mut by_layer: Vec<(String, Vec<f32>)> = Vec::new();
        for (_, chunk) in &mut chunks {
            for (name, _, values) in std::mem::take(&mut chunk.tensors) {
                match by_layer.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, all)) => all.extend(values),
                    None => by_layer.push((name, values)),
                }
            }
        }
        let mut extracted = extracted(chunks, &samples, what, "features")?;
        let n = extracted.kept.len();
        for (name, values) in by_layer {
            let c = values.len() / n;
            let t = Tensor::from_data(TensorData::new(values, [n, c]), &self.device);
            extracted.by_layer.insert(name, t);
        }
        Ok(extracted)
    }

    /// The photos at the network's input size.
    pub fn photos(&self, samples: &[&Sample]) -> Result<Vec<RgbImage>> {
        samples
            .iter()
            .map(|s| images::read_rgb(&s.path).map(|p| images::resize(&p, self.size)))
            .collect()
    }

    /// The input of layer `index` for a few images: the normalised images for 0, otherwise the
    /// activations of layer `index − 1` (see [`maps`](Self::maps)). Returns them and the seconds
    /// spent.
    pub fn inputs(&self, samples: &[&Sample], index: usize) -> Result<(Tensor<4>, f64)> {
        let Some(below) = index.checked_sub(1) else {
            let start = Instant::now();
            let photos = self.photos(samples)?;
            let x = images::to_tensor(&photos, &self.device);
            return Ok((x, start.elapsed().as_secs_f64()));
        };
        let names = self.backbone.layer_names();
        let layer = names
            .get(below)
            .with_context(|| format!("no layer {below}"))?;
        self.maps(samples, layer)
    }

    /// Activations of `layer` [n, C, h, w] for a few images (the callbacks' and the localization
    /// sets'), cached like the pooled features; photos are decoded only on a cache miss. Every
    /// image must be readable. Returns the activations and the seconds spent in the backbone.
    pub fn maps(&self, samples: &[&Sample], layer: &str) -> Result<(Tensor<4>, f64)> {
        let index = self.backbone.kind().layer(layer)?;
        let mut values = Vec::new();
        let (mut seconds, mut shape) = (0.0, [samples.len(), 0, 0, 0]);
        for (range, chunk) in self.chunks(Work::Maps(index), samples, layer)? {
            if let Some((i, reason)) = chunk.readable.skipped.first() {
                bail!(
                    "cannot read {}: {reason}",
                    samples[range.start + i].path.display()
                );
            }
            seconds += chunk.backbone_seconds;
            for (_, s, v) in chunk.tensors {
                shape[1..].copy_from_slice(&s[1..]);
                values.extend(v);
            }
        }
        let t = Tensor::from_data(TensorData::new(values, shape), &self.device);
        Ok((t, seconds))
    }
}

/// What extracting a set's `chunks` (of its images `samples`) found and cost, without the features
/// (the caller adds them); an error when no image could be read. Says so when all of it came
/// from the cache.
fn extracted(
    chunks: Vec<(Range<usize>, Chunk)>,
    samples: &[&Sample],
    what: &str,
    label: &str,
) -> Result<PooledFeatures> {
    let n = samples.len();
    let mut out = PooledFeatures {
        kept: Vec::new(),
        skipped: Vec::new(),
        by_layer: HashMap::new(),
        from_cache: true,
        backbone_seconds: 0.0,
        cache_bytes: 0,
    };
    let count = chunks.len();
    for (range, chunk) in chunks {
        out.kept
            .extend(chunk.readable.kept.iter().map(|k| range.start + k));
        out.skipped
            .extend(chunk.readable.skipped_files(&samples[range.clone()]));
        out.from_cache &= chunk.from_cache;
        out.backbone_seconds += chunk.backbone_seconds;
        out.cache_bytes += chunk.bytes;
    }
    if out.kept.is_empty() {
        bail!("{what}: none of the {n} images could be read");
    }
    if out.from_cache {
        println!(
            "{what}: {} images' {label} from the cache ({count} chunks)",
            out.kept.len()
        );
    }
    Ok(out)
}
