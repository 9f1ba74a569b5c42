//! The frozen backbone runs once per image: pooled features (what the head trains on) and,
//! for the few images the callbacks explain, full activation maps. Both are cached on disk under
//! `<runs_dir>/.cache`, keyed by the weights' content, the images' content, the input size and the
//! layer, so a second run on the same data (say the Grad-CAM run after the CAM run) skips the
//! backbone entirely. An entry that does not fit the images it is looked up for (unreadable, or
//! rows that do not match the images: stale or damaged, since the key covers the images'
//! content) is ignored with a warning, recomputed and overwritten.

mod cache;
pub mod cut;
pub mod sets;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use model::{global_average_pool, Backbone, HeadKind};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::data::images;
use crate::data::{Dataset, Sample};
use crate::tensors::{to_vec, write_safetensors};
use cache::warn_unusable;

/// Bump when preprocessing or the cache layout changes: old entries are then never reused.
const CACHE_FORMAT: &str = "v2: rgb8 triangle-resize imagenet-norm; pooled f16, maps f32";

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
#[derive(Debug, Clone)]
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
    /// Whether this came from the disk cache.
    pub from_cache: bool,
    /// Seconds spent in the backbone (0 on a cache hit).
    pub backbone_seconds: f64,
    /// Bytes of the cache file.
    pub cache_bytes: u64,
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
}

/// Hex SHA-256 of a file's content.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Extractor<'_> {
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

    /// Pooled features of every readable image of `data` (at [`pooled_layers`]).
    pub fn pooled(&self, data: &Dataset, what: &str) -> Result<PooledFeatures> {
        let samples: Vec<&Sample> = data.samples.iter().collect();
        let layers = pooled_layers(self.backbone);
        let names = self.backbone.layer_names();
        let layer_names: Vec<&str> = layers.iter().map(|&l| names[l]).collect();
        let key = self.key(
            "pooled",
            &Self::hashes(&samples),
            &format!("{}:{}", self.backbone.name(), layer_names.join(",")),
        );
        let cache_path = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("pooled-{key}.safetensors")));
        if let Some(path) = cache_path.as_deref() {
            match self.cached_pooled(path, samples.len(), &layers) {
                Ok(Some(hit)) => {
                    println!(
                        "{what}: {} images' features from the cache ({})",
                        hit.kept.len(),
                        path.display()
                    );
                    return Ok(hit);
                }
                Ok(None) => {}
                Err(e) => warn_unusable(path, &e),
            }
        }

        let mut pooled: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
        let (kept, skipped, backbone_seconds) = self.each_batch(&samples, what, |batch| {
            // One pass, pooling at each cached layer on the way.
            let (mut x, mut next) = (batch, 0);
            for (i, &layer) in layers.iter().enumerate() {
                x = self.backbone.run(x, next, layer);
                next = layer + 1;
                pooled[i].extend(to_vec(global_average_pool(x.clone()))?);
            }
            Ok(())
        })?;
        let n = kept.len();
        let mut by_layer = HashMap::new();
        let mut tensors = Vec::new();
        for (layer, mut values) in layer_names.iter().zip(pooled) {
            // Pooled features are stored as f16 (half the disk); training uses the same
            // rounded values whether they come from the backbone or the cache.
            crate::tensors::round_to_f16(&mut values);
            let c = values.len() / n;
            by_layer.insert(
                layer.to_string(),
                Tensor::from_data(TensorData::new(values.clone(), [n, c]), &self.device),
            );
            tensors.push((layer.to_string(), vec![n, c], values));
        }
        let mut cache_bytes = 0;
        if let Some(path) = &cache_path {
            cache_bytes = cache::write_pooled(path, &tensors, &kept, &skipped)?;
        }
        Ok(PooledFeatures {
            kept,
            skipped,
            by_layer,
            from_cache: false,
            backbone_seconds,
            cache_bytes,
        })
    }

    /// Decode `samples` a backbone batch at a time (unreadable files are skipped with a
    /// warning) and hand each batch of normalised images [B, 3, H, W] to `each`. Returns the
    /// indices of the images kept, the skipped files and the seconds it took; an error when no
    /// image could be read.
    pub fn each_batch(
        &self,
        samples: &[&Sample],
        what: &str,
        mut each: impl FnMut(Tensor<4>) -> Result<()>,
    ) -> Result<(Vec<usize>, Vec<Skipped>, f64)> {
        let mut kept = Vec::new();
        let mut skipped = Vec::new();
        let start = Instant::now();
        let total = samples.len();
        let mut progress =
            crate::run::progress::Progress::new(&format!("{what}: backbone images"), total);
        for chunk in (0..total).collect::<Vec<_>>().chunks(self.batch_size) {
            let decoded: Vec<(usize, Result<RgbImage>)> = chunk
                .par_iter()
                .map(|&i| {
                    (
                        i,
                        images::read_rgb(&samples[i].path).map(|p| images::resize(&p, self.size)),
                    )
                })
                .collect();
            let mut photos = Vec::new();
            for (i, result) in decoded {
                match result {
                    Ok(photo) => {
                        kept.push(i);
                        photos.push(photo);
                    }
                    Err(e) => {
                        eprintln!("warning: skipping {}: {e:#}", samples[i].path.display());
                        skipped.push(Skipped {
                            path: samples[i].path.clone(),
                            reason: format!("{e:#}"),
                        });
                    }
                }
            }
            if !photos.is_empty() {
                each(images::to_tensor(&photos, &self.device))?;
            }
            progress.add(chunk.len());
        }
        progress.finish();
        if kept.is_empty() {
            bail!("{what}: none of the {total} images could be read");
        }
        Ok((kept, skipped, start.elapsed().as_secs_f64()))
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
    /// sets'), cached like the pooled features; photos are decoded only on a cache miss. Returns
    /// the activations and the seconds spent in the backbone.
    pub fn maps(&self, samples: &[&Sample], layer: &str) -> Result<(Tensor<4>, f64)> {
        let index = self.backbone.kind().layer(layer)?;
        let key = self.key("maps", &Self::hashes(samples), layer);
        let cache_path = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("maps-{key}.safetensors")));
        if let Some(path) = cache_path.as_deref() {
            match self.cached_maps(path, samples.len(), layer, index) {
                Ok(Some(t)) => return Ok((t, 0.0)),
                Ok(None) => {}
                Err(e) => warn_unusable(path, &e),
            }
        }
        let start = Instant::now();
        let photos = self.photos(samples)?;
        let mut parts = Vec::new();
        for chunk in photos.chunks(self.batch_size) {
            parts.push(
                self.backbone
                    .run(images::to_tensor(chunk, &self.device), 0, index),
            );
        }
        let activations = Tensor::cat(parts, 0);
        let seconds = start.elapsed().as_secs_f64();
        if let Some(path) = &cache_path {
            let shape = activations.dims().to_vec();
            write_safetensors(
                path,
                &[(layer.to_string(), shape, to_vec(activations.clone())?)],
                HashMap::new(),
            )
            .with_context(|| format!("cannot write cache {}", path.display()))?;
        }
        Ok((activations, seconds))
    }
}
