//! The feature cache's files: reading an entry back (checking it fits the images it is looked
//! up for) and writing the pooled features with their lists of kept and skipped images.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::tensor::{Tensor, TensorData};

use super::{Extractor, PooledFeatures, Skipped};
use crate::tensors::{read_safetensors, NamedTensor};

impl Extractor<'_> {
    /// The pooled features of `n_images` images cached at `path`: `None` when there is no
    /// such file; an error when the entry cannot be these images' (unreadable, a layer missing,
    /// or rows that do not match the images: the key covers the images' content, so such an
    /// entry is stale or damaged, and using it would train on other images' features).
    pub(super) fn cached_pooled(
        &self,
        path: &Path,
        n_images: usize,
        layers: &[usize],
    ) -> Result<Option<PooledFeatures>> {
        if !path.exists() {
            return Ok(None);
        }
        let hit = read_safetensors(path)?;
        let kept = parse_kept(
            hit.metadata
                .get("kept")
                .context("the list of kept images is missing")?,
            n_images,
        )?;
        let skipped: Vec<Skipped> = hit
            .metadata
            .get("skipped")
            .map(|s| {
                s.lines()
                    .filter_map(|l| l.split_once('\t'))
                    .map(|(p, r)| Skipped {
                        path: p.into(),
                        reason: r.into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if kept.len() + skipped.len() != n_images {
            bail!(
                "{} images kept and {} skipped, but the data set has {n_images}",
                kept.len(),
                skipped.len()
            );
        }
        let names = self.backbone.layer_names();
        let mut by_layer = HashMap::new();
        for &layer in layers {
            let name = names[layer];
            let (shape, values) = hit
                .tensors
                .get(name)
                .with_context(|| format!("layer `{name}` is missing"))?;
            let expected = [kept.len(), self.backbone.channels(layer)];
            if shape[..] != expected || values.len() != expected.iter().product::<usize>() {
                bail!(
                    "layer `{name}` has shape {shape:?}, expected {expected:?} ({} kept images)",
                    kept.len()
                );
            }
            by_layer.insert(
                name.to_string(),
                Tensor::from_data(TensorData::new(values.clone(), expected), &self.device),
            );
        }
        Ok(Some(PooledFeatures {
            kept,
            skipped,
            by_layer,
            from_cache: true,
            backbone_seconds: 0.0,
            cache_bytes: hit.bytes,
        }))
    }

    /// The activations of layer `index` (named `layer`) of `n_images` images cached at `path`;
    /// `None` when there is no such file, an error when the entry's shape does not fit.
    pub(super) fn cached_maps(
        &self,
        path: &Path,
        n_images: usize,
        layer: &str,
        index: usize,
    ) -> Result<Option<Tensor<4>>> {
        if !path.exists() {
            return Ok(None);
        }
        let hit = read_safetensors(path)?;
        let (shape, values) = hit
            .tensors
            .get(layer)
            .with_context(|| format!("layer `{layer}` is missing"))?;
        let channels = self.backbone.channels(index);
        if shape.len() != 4
            || shape[0] != n_images
            || shape[1] != channels
            || values.len() != shape.iter().product::<usize>()
        {
            bail!("layer `{layer}` has shape {shape:?}, expected [{n_images}, {channels}, h, w]");
        }
        let shape = [shape[0], shape[1], shape[2], shape[3]];
        Ok(Some(Tensor::from_data(
            TensorData::new(values.clone(), shape),
            &self.device,
        )))
    }
}

/// Write pooled features (`tensors`: per layer, its name, [N, C] and the values) to `path` as
/// f16, with the indices of the `kept` images and the `skipped` files (path and reason, tab
/// separated, one a line) as metadata. Returns the file's size in bytes.
pub(super) fn write_pooled(
    path: &Path,
    tensors: &[NamedTensor],
    kept: &[usize],
    skipped: &[Skipped],
) -> Result<u64> {
    let metadata = HashMap::from([
        (
            "kept".to_string(),
            kept.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "skipped".to_string(),
            skipped
                .iter()
                .map(|s| {
                    format!(
                        "{}\t{}",
                        s.path.display(),
                        s.reason.replace(['\n', '\t'], " ")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ]);
    crate::tensors::write_safetensors_f16(path, tensors, metadata)
        .with_context(|| format!("cannot write cache {}", path.display()))
}

/// A cache entry's list of kept images: indices, strictly increasing, below `n_images`, at
/// least one (a run with no readable image stops before writing the cache).
fn parse_kept(text: &str, n_images: usize) -> Result<Vec<usize>> {
    let mut kept: Vec<usize> = Vec::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let i: usize = item
            .parse()
            .with_context(|| format!("bad image index `{item}` in the kept list"))?;
        if i >= n_images {
            bail!("image index {i} in the kept list, but the data set has {n_images} images");
        }
        if let Some(&last) = kept.last().filter(|&&last| last >= i) {
            bail!("image index {i} after {last} in the kept list (not increasing)");
        }
        kept.push(i);
    }
    if kept.is_empty() {
        bail!("no kept images");
    }
    Ok(kept)
}

/// A cache entry that exists but cannot be used is recomputed (and overwritten), not an error:
/// the cache only saves time.
pub(super) fn warn_unusable(path: &Path, error: &anyhow::Error) {
    eprintln!(
        "warning: ignoring the feature cache {}: {error:#}; recomputing it",
        path.display()
    );
}
