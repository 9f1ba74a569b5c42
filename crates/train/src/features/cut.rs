//! The cut of a fine-tuning run: the frozen layers below `train_from` run once per image, and
//! their output (the input of the first trained layer) is stored as f16 rows that training reads
//! back a batch at a time — a 25,000-image set at VGG16's block4_pool is 5 GB, which must not be
//! held in memory. The rows live in the set's chunk files (`cut-<key>.safetensors` under
//! `<runs_dir>/.cache`, or in a scratch directory without a cache), one tensor `rows`
//! [kept, C, h, w] each, read a row at a time at its offset.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{Dataset, Sample};
use crate::features::chunks::{read_header, write_f16_header, Header, Readable, SHA256_PENDING};
use crate::features::{Extractor, PooledFeatures, Work};
use crate::run::files::Pending;
use crate::tensors::{f16_bytes, f16_values, to_vec};
use sha2::{Digest, Sha256};

/// One chunk's rows in its file.
pub struct CutPart {
    path: PathBuf,
    data_start: u64,
    /// Rows (images).
    pub rows: usize,
    /// Per row [C, h, w].
    pub shape: [usize; 3],
    /// The scratch directory holding the file, when it is not in the cache.
    _scratch: Option<Arc<tempfile::TempDir>>,
}

impl CutPart {
    /// The rows of the chunk file at `path` (`file`, whose `header` was read), checked: one f16
    /// tensor `rows` [n, C, h, w] whose bytes fill the file.
    pub fn from_header(
        path: PathBuf,
        file: &File,
        header: &Header,
        scratch: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Self> {
        let info = header.tensors.get("rows").context("no tensor `rows`")?;
        let shape = &info.shape;
        let bytes = shape.iter().product::<usize>() as u64 * 2;
        if info.dtype != "F16" || shape.len() != 4 || info.data_offsets != [0, bytes] {
            bail!(
                "`rows` is {} {shape:?} at {:?}",
                info.dtype,
                info.data_offsets
            );
        }
        let size = file.metadata()?.len();
        if size != header.data_start + bytes {
            bail!("{size} bytes, expected {}", header.data_start + bytes);
        }
        Ok(Self {
            path,
            data_start: header.data_start,
            rows: shape[0],
            shape: [shape[1], shape[2], shape[3]],
            _scratch: scratch,
        })
    }

    /// Check the rows against the checksum `sha256` (of their bytes) by reading them all.
    pub fn verify(&self, file: &File, sha256: &str) -> Result<()> {
        let mut h = Sha256::new();
        let mut buffer = vec![0u8; 1 << 22];
        let (mut offset, end) = (self.data_start, self.data_start + self.bytes());
        while offset < end {
            let n = buffer.len().min((end - offset) as usize);
            file.read_exact_at(&mut buffer[..n], offset)?;
            h.update(&buffer[..n]);
            offset += n as u64;
        }
        let found = crate::features::hex(&h.finalize());
        if found != sha256 {
            bail!("the rows' checksum is {found}, the header says {sha256}");
        }
        Ok(())
    }

    /// Open the file, reading its header again: another process may have put an equal entry in
    /// its place since (same rows, maybe another header length).
    fn open(&self) -> Result<(File, u64)> {
        let mut file = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        let header = read_header(&mut file)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let again = Self::from_header(self.path.clone(), &file, &header, None)
            .with_context(|| format!("{}", self.path.display()))?;
        if (again.rows, again.shape) != (self.rows, self.shape) {
            bail!("{} changed under the run", self.path.display());
        }
        Ok((file, again.data_start))
    }

    /// Bytes of the rows.
    pub fn bytes(&self) -> u64 {
        (self.rows * self.shape.iter().product::<usize>() * 2) as u64
    }
}

/// A set's activations at the cut, on disk.
pub struct CutActivations {
    parts: Vec<CutPart>,
    /// The first row of each part.
    starts: Vec<usize>,
    /// Per image [C, h, w].
    pub shape: [usize; 3],
    /// Images (rows).
    pub rows: usize,
    /// The cut: these are the input of layer `cut`.
    pub cut: usize,
}

impl CutActivations {
    /// The rows of `parts` in order (parts without rows are left out; the others must have one
    /// shape): the input of layer `cut`.
    pub fn new(parts: Vec<CutPart>, cut: usize) -> Result<Self> {
        let parts: Vec<CutPart> = parts.into_iter().filter(|p| p.rows > 0).collect();
        let shape = parts.first().map_or([0; 3], |p| p.shape);
        if let Some(other) = parts.iter().find(|p| p.shape != shape) {
            bail!(
                "cut rows of shape {:?} in {} after {shape:?}",
                other.shape,
                other.path.display()
            );
        }
        let mut starts = Vec::new();
        let mut rows = 0;
        for p in &parts {
            starts.push(rows);
            rows += p.rows;
        }
        Ok(Self {
            parts,
            starts,
            shape,
            rows,
            cut,
        })
    }

    /// Rows from a tensor [N, C, h, w] (the input of layer `cut`), in a scratch file (tests).
    pub fn from_tensor(x: Tensor<4>, cut: usize) -> Result<Self> {
        let scratch = Arc::new(tempfile::tempdir()?);
        let rows = x.dims()[0];
        let readable = Readable {
            kept: (0..rows).collect(),
            skipped: Vec::new(),
        };
        let dir = scratch.path().to_path_buf();
        let metadata = readable.metadata(rows, SHA256_PENDING);
        let part = write_part(&dir, "rows", rows, &metadata, [Ok(x)], Some(scratch))?;
        Self::new(vec![part], cut)
    }

    /// Rows `rows` as a tensor [B, C, h, w] on `device`, in the order given (each part's file
    /// is opened once per batch).
    pub fn batch(&self, rows: &[usize], device: &Device) -> Result<Tensor<4>> {
        let row_len: usize = self.shape.iter().product();
        let mut values = vec![0f32; rows.len() * row_len];
        let mut bytes = vec![0u8; row_len * 2];
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i]);
        let mut open: Option<(usize, File, u64)> = None;
        for i in order {
            let row = rows[i];
            if row >= self.rows {
                bail!("cut activations: row {row} of {}", self.rows);
            }
            let p = self.starts.partition_point(|&s| s <= row) - 1;
            let part = &self.parts[p];
            if open.as_ref().is_none_or(|(q, _, _)| *q != p) {
                let (file, data_start) = part.open()?;
                open = Some((p, file, data_start));
            }
            let Some((_, file, data_start)) = &open else {
                unreachable!("opened above")
            };
            let offset = data_start + ((row - self.starts[p]) * row_len * 2) as u64;
            file.read_exact_at(&mut bytes, offset)
                .with_context(|| format!("cannot read {}", part.path.display()))?;
            for (dst, v) in values[i * row_len..(i + 1) * row_len]
                .iter_mut()
                .zip(f16_values(&bytes))
            {
                *dst = v;
            }
        }
        let [c, h, w] = self.shape;
        Ok(Tensor::from_data(
            TensorData::new(values, [rows.len(), c, h, w]),
            device,
        ))
    }
}

/// Write `rows` rows, handed over a batch [B, C, h, w] at a time by `batches`, as the chunk
/// file `dir/name` (one f16 tensor `rows`, the chunk's `metadata`), atomically and streamed: the
/// header goes first, when the first batch gives the row shape. `scratch`: the scratch
/// directory `dir` is, kept as long as the rows.
pub fn write_part(
    dir: &Path,
    name: &str,
    rows: usize,
    metadata: &HashMap<String, String>,
    batches: impl IntoIterator<Item = Result<Tensor<4>>>,
    scratch: Option<Arc<tempfile::TempDir>>,
) -> Result<CutPart> {
    let path = dir.join(name);
    let mut pending = Pending::new(dir, name)?;
    let (mut shape, mut written, mut checksum_at) = (None, 0, None);
    let mut sha256 = Sha256::new();
    for batch in batches {
        let x = batch?;
        let [b, c, h, w] = x.dims();
        if shape.is_none() {
            checksum_at = write_f16_header(pending.file(), "rows", &[rows, c, h, w], metadata)?;
            shape = Some([c, h, w]);
        }
        if shape != Some([c, h, w]) || written + b > rows {
            bail!(
                "cut rows of shape {:?} after {shape:?} ({written} of {rows} written)",
                [b, c, h, w]
            );
        }
        let bytes = f16_bytes(&to_vec(x)?);
        sha256.update(&bytes);
        pending
            .file()
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += b;
    }
    if written != rows {
        bail!("{written} cut rows written, {rows} expected");
    }
    if shape.is_none() {
        checksum_at = write_f16_header(pending.file(), "rows", &[0, 0, 0, 0], metadata)?;
    }
    if let Some(at) = checksum_at {
        let sum = crate::features::hex(&sha256.finalize());
        pending.file().write_all_at(sum.as_bytes(), at)?;
    }
    let mut file = pending.persist(&path)?;
    file.rewind()?;
    let header = read_header(&mut file)?;
    CutPart::from_header(path, &file, &header, scratch)
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
        let mut chunks = self.chunks(Work::Cut(cut), &samples, what)?;
        let parts = chunks
            .iter_mut()
            .filter_map(|(_, chunk)| chunk.rows.take())
            .collect();
        let extracted = super::extracted(chunks, &samples, what, "cut activations")?;
        Ok((CutActivations::new(parts, cut)?, extracted))
    }
}
