//! The cut of a fine-tuning run: the frozen layers below `train_from` run once per image, and
//! their output (the input of the first trained layer) is stored as f16 rows in a file that
//! training reads back a batch at a time — a 25,000-image set at VGG16's block4_pool is 5 GB,
//! which must not be held in memory. The file is content-keyed like the pooled cache (weights,
//! images, size, cut) under `<runs_dir>/.cache`: `cut-<key>.f16` (rows) and `cut-<key>.json`
//! (shape, kept and skipped images; written last, so a file without it is never used). Without
//! a cache directory the rows go to an anonymous temporary file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Sample};
use crate::features::{Extractor, PooledFeatures, Skipped};
use crate::tensors::{f16_bytes, f16_values, to_vec};

/// A set's activations at the cut, on disk.
pub struct CutActivations {
    file: File,
    /// Per image [C, h, w].
    pub shape: [usize; 3],
    /// Images (rows).
    pub rows: usize,
    /// The cut: these are the input of layer `cut`.
    pub cut: usize,
}

#[derive(Serialize, Deserialize)]
struct Index {
    shape: [usize; 3],
    kept: Vec<usize>,
    skipped: Vec<(PathBuf, String)>,
}

impl CutActivations {
    /// No rows yet, to be [`append`](Self::append)ed to `file` (opened for reading and
    /// writing, empty): the input of layer `cut`.
    pub fn new(file: File, cut: usize) -> Self {
        Self {
            file,
            shape: [0; 3],
            rows: 0,
            cut,
        }
    }

    /// Rows from a tensor [N, C, h, w] (the input of layer `cut`), in an anonymous temporary
    /// file (tests, small sets).
    pub fn from_tensor(x: Tensor<4>, cut: usize) -> Result<Self> {
        let mut rows = Self::new(tempfile::tempfile()?, cut);
        rows.append(x)?;
        Ok(rows)
    }

    /// Append the rows of `x` [B, C, h, w] (f16 on disk); every batch must have one shape.
    pub fn append(&mut self, x: Tensor<4>) -> Result<()> {
        let [b, c, h, w] = x.dims();
        if self.rows > 0 && self.shape != [c, h, w] {
            bail!("cut rows of shape {:?} after {:?}", [c, h, w], self.shape);
        }
        self.file
            .write_all(&f16_bytes(&to_vec(x)?))
            .context("cannot write the cut activations")?;
        self.shape = [c, h, w];
        self.rows += b;
        Ok(())
    }

    fn row_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * 2
    }

    /// Rows `rows` as a tensor [B, C, h, w] on `device`, in the order given.
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<Tensor<4>> {
        let row_bytes = self.row_bytes();
        let mut bytes = vec![0u8; row_bytes];
        let mut values = Vec::with_capacity(rows.len() * row_bytes / 2);
        for &row in rows {
            if row >= self.rows {
                bail!("cut activations: row {row} of {}", self.rows);
            }
            self.file
                .read_exact_at(&mut bytes, (row * row_bytes) as u64)
                .context("cannot read the cut activations")?;
            values.extend(f16_values(&bytes));
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_data(
            TensorData::new(values, [rows.len(), c, h, w]),
            device,
        ))
    }
}

impl Extractor<'_> {
    /// The input of layer `cut` for every readable image of `data` (from the cache when
    /// possible), with what extracting it cost and found.
    pub fn cut(
        &self,
        data: &Dataset,
        what: &str,
        cut: usize,
    ) -> Result<(CutActivations, PooledFeatures)> {
        let samples: Vec<&Sample> = data.samples.iter().collect();
        let layer = format!("input of {}", self.backbone.layer_names()[cut]);
        let key = self.key("cut", &Self::hashes(&samples), &layer);
        let paths = self.cache_dir.as_ref().map(|d| {
            (
                d.join(format!("cut-{key}.f16")),
                d.join(format!("cut-{key}.json")),
            )
        });
        if let Some((rows_path, index_path)) = &paths {
            match open_cached(rows_path, index_path, samples.len(), cut) {
                Ok(Some(hit)) => {
                    println!(
                        "{what}: {} images' cut activations ({layer}) from the cache ({})",
                        hit.0.rows,
                        rows_path.display()
                    );
                    return Ok(hit);
                }
                Ok(None) => {}
                Err(e) => eprintln!(
                    "warning: ignoring the cut cache {}: {e:#}; recomputing it",
                    rows_path.display()
                ),
            }
        }
        let (file, tmp) = match &paths {
            Some((rows_path, _)) => {
                let dir = rows_path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let tmp = rows_path.with_extension(format!("f16.tmp{}", std::process::id()));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                (file, Some(tmp))
            }
            None => (
                tempfile::tempfile().context("cannot create a temporary file")?,
                None,
            ),
        };
        let mut rows = CutActivations::new(file, cut);
        let (kept, skipped, seconds) = self.each_batch(&samples, what, |batch| {
            rows.append(match cut {
                0 => batch,
                _ => self.backbone.run(batch, 0, cut - 1),
            })
        })?;
        let mut cache_bytes = 0;
        if let (Some((rows_path, index_path)), Some(tmp)) = (&paths, &tmp) {
            // The index below says the rows are complete: they must be on disk first.
            rows.file
                .sync_all()
                .with_context(|| format!("cannot flush the cut cache {}", tmp.display()))?;
            std::fs::rename(tmp, rows_path)
                .with_context(|| format!("cannot move {} into place", rows_path.display()))?;
            let index = Index {
                shape: rows.shape,
                kept: kept.clone(),
                skipped: skipped
                    .iter()
                    .map(|s| (s.path.clone(), s.reason.clone()))
                    .collect(),
            };
            crate::run::files::write_atomic(index_path, &serde_json::to_vec(&index)?)?;
            cache_bytes = std::fs::metadata(rows_path).map_or(0, |m| m.len());
        }
        Ok((
            rows,
            PooledFeatures {
                kept,
                skipped,
                by_layer: Default::default(),
                from_cache: false,
                backbone_seconds: seconds,
                cache_bytes,
            },
        ))
    }
}

/// A cached cut of `n_images` images: `None` when there is none; an error when the entry does
/// not fit (an index that does not parse, counts or a file size that do not match).
fn open_cached(
    rows_path: &Path,
    index_path: &Path,
    n_images: usize,
    cut: usize,
) -> Result<Option<(CutActivations, PooledFeatures)>> {
    if !index_path.exists() {
        return Ok(None);
    }
    let index: Index = serde_json::from_slice(&std::fs::read(index_path)?)
        .with_context(|| format!("cannot parse {}", index_path.display()))?;
    if index.kept.len() + index.skipped.len() != n_images
        || index.kept.windows(2).any(|w| w[0] >= w[1])
        || index.kept.last().is_some_and(|&k| k >= n_images)
    {
        bail!("the index does not fit a set of {n_images} images");
    }
    let file =
        File::open(rows_path).with_context(|| format!("cannot open {}", rows_path.display()))?;
    let bytes = file.metadata()?.len();
    let cut_rows = CutActivations {
        file,
        shape: index.shape,
        rows: index.kept.len(),
        cut,
    };
    if bytes != (cut_rows.rows * cut_rows.row_bytes()) as u64 {
        bail!(
            "{bytes} bytes, expected {} rows of {:?} f16 values",
            cut_rows.rows,
            cut_rows.shape
        );
    }
    Ok(Some((
        cut_rows,
        PooledFeatures {
            kept: index.kept,
            skipped: index
                .skipped
                .into_iter()
                .map(|(path, reason)| Skipped { path, reason })
                .collect(),
            by_layer: Default::default(),
            from_cache: true,
            backbone_seconds: 0.0,
            cache_bytes: bytes,
        },
    )))
}
