//! Reading a chunk back from the cache, checked against the images it is looked up for: an
//! entry that does not fit is an error here, and a warning and a recomputation for the caller.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::chunks::{field, read_header, values_sha256, Readable};
use super::cut::CutPart;
use super::{pooled_layers, Chunk, Extractor, Work};
use crate::tensors::read_safetensors;

impl Extractor<'_> {
    /// The chunk of `images` images cached at `path` for `work`: `None` when there is no such
    /// file; an error when the entry cannot be these images' (unreadable, a layer missing, or
    /// rows that do not match the images: the key covers the images' content, so such an entry
    /// is stale or damaged, and using it would train on other images' features).
    pub(super) fn cached(&self, path: &Path, work: Work, images: usize) -> Result<Option<Chunk>> {
        if !path.exists() {
            return Ok(None);
        }
        let chunk = match work {
            Work::Cut(cut) => self.cached_rows(path, cut, images)?,
            Work::Pooled | Work::Maps(_) => self.cached_tensors(path, work, images)?,
        };
        Ok(Some(chunk))
    }

    fn cached_tensors(&self, path: &Path, work: Work, images: usize) -> Result<Chunk> {
        let mut hit = read_safetensors(path)?;
        let readable = Readable::from_metadata(&hit.metadata, images)?;
        let kept = readable.kept.len();
        let layers = match work {
            Work::Maps(layer) => vec![layer],
            _ => pooled_layers(self.backbone),
        };
        let names = self.backbone.layer_names();
        let mut tensors = Vec::new();
        for layer in layers {
            let name = names[layer];
            let (shape, values) = hit
                .tensors
                .remove(name)
                .with_context(|| format!("layer `{name}` is missing"))?;
            let channels = self.backbone.channels(layer);
            let fits = match work {
                Work::Pooled => shape[..] == [kept, channels],
                _ => shape.len() == 4 && shape[0] == kept && shape[1] == channels,
            };
            if !fits || values.len() != shape.iter().product::<usize>() {
                bail!("layer `{name}` has shape {shape:?}, expected [{kept}, {channels}, …] ({kept} kept images)");
            }
            tensors.push((name.to_string(), shape, values));
        }
        let recorded = field(&hit.metadata, "sha256")?;
        let found = values_sha256(&tensors);
        if found != recorded {
            bail!("the values' checksum is {found}, the metadata says {recorded}");
        }
        Ok(Chunk {
            readable,
            tensors,
            rows: None,
            from_cache: true,
            backbone_seconds: 0.0,
            bytes: hit.bytes,
        })
    }

    fn cached_rows(&self, path: &Path, cut: usize, images: usize) -> Result<Chunk> {
        let mut file = File::open(path)?;
        let header = read_header(&mut file)?;
        let readable = Readable::from_metadata(&header.metadata, images)?;
        let rows = CutPart::from_header(path.to_path_buf(), &file, &header, None)?;
        rows.verify(&file, field(&header.metadata, "sha256")?)?;
        let channels = match cut {
            0 => 3,
            _ => self.backbone.channels(cut - 1),
        };
        if rows.rows != readable.kept.len() || (rows.rows > 0 && rows.shape[0] != channels) {
            bail!(
                "{} rows of {:?}, expected {} rows of {channels} channels",
                rows.rows,
                rows.shape,
                readable.kept.len()
            );
        }
        Ok(Chunk {
            readable,
            tensors: Vec::new(),
            from_cache: true,
            backbone_seconds: 0.0,
            bytes: rows.bytes(),
            rows: Some(rows),
        })
    }
}

/// A cache entry that exists but cannot be used is recomputed (and overwritten), not an error:
/// the cache only saves time.
pub(super) fn warn_unusable(path: &Path, error: &anyhow::Error) {
    eprintln!(
        "warning: ignoring the feature cache {}: {error:#}; recomputing it",
        path.display()
    );
}
