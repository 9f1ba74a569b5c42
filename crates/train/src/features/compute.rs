//! One chunk of backbone work: read from the cache, or decode the chunk's photos, run the
//! backbone a batch at a time and write the result as the chunk's cache file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use image::RgbImage;
use model::global_average_pool;
use rayon::prelude::*;

use super::cache::warn_unusable;
use super::chunks::{values_sha256, Readable, SHA256_PENDING};
use super::cut::write_part;
use super::{pooled_layers, Chunk, Extractor, Work};
use crate::data::images;
use crate::data::Sample;
use crate::run::progress::Progress;
use crate::tensors::{round_to_f16, to_vec, write_safetensors, write_safetensors_f16, NamedTensor};

impl Extractor<'_> {
    /// `work` for `samples` (one chunk): from the cache when it holds a fitting entry,
    /// otherwise computed and written there (a cut's rows always go to a file).
    pub fn chunk(&self, work: Work, samples: &[&Sample], progress: &mut Progress) -> Result<Chunk> {
        let key = self.key(
            work.kind(),
            &Self::hashes(samples),
            &work.detail(self.backbone),
        );
        let name = format!("{}-{key}.safetensors", work.kind());
        if let Some(path) = self.cache_dir.as_ref().map(|d| d.join(&name)) {
            match self.cached(&path, work, samples.len()) {
                Ok(Some(hit)) => {
                    self.tally.add(samples.len(), true);
                    progress.add(samples.len());
                    return Ok(hit);
                }
                Ok(None) => {}
                Err(e) => warn_unusable(&path, &e),
            }
        }
        let start = Instant::now();
        let (readable, photos) = self.decode(samples);
        let batches = photos.chunks(self.batch_size.max(1));
        let mut chunk = match work {
            Work::Cut(cut) => self.cut_chunk(&name, cut, &readable, samples.len(), batches)?,
            Work::Pooled | Work::Maps(_) => {
                let tensors = self.host_tensors(work, batches)?;
                let mut bytes = 0;
                if let Some(dir) = &self.cache_dir {
                    let metadata = readable.metadata(samples.len(), &values_sha256(&tensors));
                    let path = dir.join(&name);
                    bytes = match work {
                        Work::Pooled => write_safetensors_f16(&path, &tensors, metadata),
                        _ => write_safetensors(&path, &tensors, metadata),
                    }
                    .with_context(|| format!("cannot write cache {}", path.display()))?;
                }
                Chunk {
                    readable,
                    tensors,
                    rows: None,
                    from_cache: false,
                    backbone_seconds: 0.0,
                    bytes,
                }
            }
        };
        chunk.backbone_seconds = start.elapsed().as_secs_f64();
        self.tally.add(samples.len(), false);
        progress.add(samples.len());
        Ok(chunk)
    }

    /// Decode and resize the photos (in parallel); unreadable files are skipped with a warning.
    fn decode(&self, samples: &[&Sample]) -> (Readable, Vec<RgbImage>) {
        let decoded: Vec<Result<RgbImage>> = samples
            .par_iter()
            .map(|s| images::read_rgb(&s.path).map(|p| images::resize(&p, self.size)))
            .collect();
        let mut readable = Readable {
            kept: Vec::new(),
            skipped: Vec::new(),
        };
        let mut photos = Vec::new();
        for (i, result) in decoded.into_iter().enumerate() {
            match result {
                Ok(photo) => {
                    readable.kept.push(i);
                    photos.push(photo);
                }
                Err(e) => {
                    eprintln!("warning: skipping {}: {e:#}", samples[i].path.display());
                    readable.skipped.push((i, format!("{e:#}")));
                }
            }
        }
        (readable, photos)
    }

    /// Pooled features (one [kept, C] per pooled layer, rounded to f16 as the cache stores
    /// them, so a run trains on the same values whether they come from the backbone or the
    /// cache) or maps ([kept, C, h, w]) of the photos.
    fn host_tensors<'p>(
        &self,
        work: Work,
        batches: impl Iterator<Item = &'p [RgbImage]>,
    ) -> Result<Vec<NamedTensor>> {
        let layers = match work {
            Work::Maps(layer) => vec![layer],
            _ => pooled_layers(self.backbone),
        };
        let names = self.backbone.layer_names();
        let mut tensors: Vec<NamedTensor> = layers
            .iter()
            .map(|&l| (names[l].to_string(), Vec::new(), Vec::new()))
            .collect();
        for batch in batches {
            // One pass, stopping at each layer on the way.
            let (mut x, mut next) = (images::to_tensor(batch, &self.device), 0);
            for (i, &layer) in layers.iter().enumerate() {
                x = self.backbone.run(x, next, layer);
                next = layer + 1;
                let (dims, values) = match work {
                    Work::Maps(_) => (x.dims().to_vec(), to_vec(x.clone())?),
                    _ => {
                        let pooled = global_average_pool(x.clone());
                        (pooled.dims().to_vec(), to_vec(pooled)?)
                    }
                };
                let (_, shape, all) = &mut tensors[i];
                match shape.is_empty() {
                    true => *shape = dims,
                    false => shape[0] += dims[0],
                }
                all.extend(values);
            }
        }
        for ((_, shape, values), &layer) in tensors.iter_mut().zip(&layers) {
            if work == Work::Pooled {
                round_to_f16(values);
            }
            if shape.is_empty() {
                // No photo could be read: no rows.
                *shape = vec![0, self.backbone.channels(layer)];
                if work != Work::Pooled {
                    shape.extend([0, 0]);
                }
            }
        }
        Ok(tensors)
    }

    /// A cut's rows (the input of layer `cut`), streamed a batch at a time into the chunk's
    /// file: in the cache, or in a scratch directory without one.
    fn cut_chunk<'p>(
        &self,
        name: &str,
        cut: usize,
        readable: &Readable,
        images: usize,
        batches: impl Iterator<Item = &'p [RgbImage]>,
    ) -> Result<Chunk> {
        let (dir, scratch) = self.rows_dir()?;
        let metadata = readable.metadata(images, SHA256_PENDING);
        let rows = batches.map(|batch| {
            let x = images::to_tensor(batch, &self.device);
            Ok(match cut {
                0 => x,
                _ => self.backbone.run(x, 0, cut - 1),
            })
        });
        let part = write_part(&dir, name, readable.kept.len(), &metadata, rows, scratch)?;
        Ok(Chunk {
            readable: readable.clone(),
            tensors: Vec::new(),
            from_cache: false,
            backbone_seconds: 0.0,
            bytes: if self.cache_dir.is_some() {
                part.bytes()
            } else {
                0
            },
            rows: Some(part),
        })
    }

    /// Where a cut's rows are written: the cache, or (without one) a scratch directory that
    /// lives as long as the rows in it.
    fn rows_dir(&self) -> Result<(PathBuf, Option<Arc<tempfile::TempDir>>)> {
        if let Some(dir) = &self.cache_dir {
            return Ok((dir.clone(), None));
        }
        let scratch = match self.scratch.get() {
            Some(s) => s.clone(),
            None => {
                let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
                self.scratch.get_or_init(|| Arc::new(dir)).clone()
            }
        };
        Ok((scratch.path().to_path_buf(), Some(scratch)))
    }
}
