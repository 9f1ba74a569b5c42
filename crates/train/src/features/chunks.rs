//! The cache's unit: a chunk of consecutive images of a set, stored as one safetensors file
//! keyed by the content of the images it holds. Chunks are small enough that the processes of
//! a sharded pass (`train features --shard K/N`) each write their own, side by side, and every
//! file is written whole or not at all (a temporary file, fsync, rename), so two processes
//! writing one chunk, or one killed mid-write, never leave a half-written entry in its place.
//!
//! Each file's metadata says how many images the chunk has (`images`), which of them were read
//! (`kept`, indices into the chunk) and which could not be, with why (`skipped`), and holds a
//! checksum of the values (`sha256`): a file damaged in place, at its full length, is caught
//! too.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::Skipped;
use crate::data::Sample;
use crate::run::files::Pending;
use crate::tensors::NamedTensor;
use sha2::{Digest, Sha256};

/// A set is cut into chunks of about this many parts of its images…
const CHUNKS_PER_SET: usize = 64;
/// …of at least this many images…
const MIN_CHUNK: usize = 8;
/// …and at most this many (a chunk of a cut is held in memory while it is computed).
const MAX_CHUNK: usize = 128;

/// The chunks of a set of `n` images: consecutive runs of one length (the last one shorter), a
/// power of two of about `n / 64`, from 8 to 128 images. The length depends only on `n`, so every
/// process cuts a set the same way without reading its images.
pub fn chunk_ranges(n: usize) -> Vec<Range<usize>> {
    let len = chunk_len(n);
    (0..n.div_ceil(len))
        .map(|i| i * len..((i + 1) * len).min(n))
        .collect()
}

/// The chunk length of a set of `n` images.
fn chunk_len(n: usize) -> usize {
    (n / CHUNKS_PER_SET)
        .next_power_of_two()
        .clamp(MIN_CHUNK, MAX_CHUNK)
}

/// Which of a chunk's images were read: what its file's metadata records.
#[derive(Debug, Clone, PartialEq)]
pub struct Readable {
    /// Indices (into the chunk) of the images read, increasing.
    pub kept: Vec<usize>,
    /// Indices (into the chunk) of the images that could not be read, with why.
    pub skipped: Vec<(usize, String)>,
}

impl Readable {
    /// The metadata of a chunk of `images` images whose values have the checksum `sha256`
    /// ([`values_sha256`] or, for a cut, of its data bytes). Skipped images are recorded by
    /// index (their paths are the reader's: a cache shared by machines may see other paths).
    pub fn metadata(&self, images: usize, sha256: &str) -> HashMap<String, String> {
        let kept = self.kept.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        HashMap::from([
            ("images".to_string(), images.to_string()),
            ("kept".to_string(), kept.join(",")),
            (
                "skipped".to_string(),
                serde_json::json!(self.skipped).to_string(),
            ),
            ("sha256".to_string(), sha256.to_string()),
        ])
    }

    /// Read back from a chunk's metadata, checked against the `images` it is looked up for:
    /// the image count, kept indices strictly increasing, every image either kept or skipped.
    pub fn from_metadata(metadata: &HashMap<String, String>, images: usize) -> Result<Self> {
        let recorded = field(metadata, "images")?;
        if recorded.parse::<usize>().ok() != Some(images) {
            bail!("the entry holds `{recorded}` images, expected {images}");
        }
        let mut kept: Vec<usize> = Vec::new();
        for item in field(metadata, "kept")?
            .split(',')
            .filter(|s| !s.is_empty())
        {
            let i: usize = item
                .parse()
                .with_context(|| format!("bad image index `{item}` in the kept list"))?;
            if let Some(&last) = kept.last().filter(|&&last| last >= i) {
                bail!("image index {i} after {last} in the kept list (not increasing)");
            }
            kept.push(i);
        }
        let skipped: Vec<(usize, String)> = serde_json::from_str(field(metadata, "skipped")?)
            .context("the skipped list is not [[index, reason], …]")?;
        let mut all: Vec<usize> = kept
            .iter()
            .copied()
            .chain(skipped.iter().map(|s| s.0))
            .collect();
        all.sort_unstable();
        if all != (0..images).collect::<Vec<_>>() {
            bail!(
                "kept {:?} and skipped {:?} are not each of the chunk's {images} images once",
                kept,
                skipped.iter().map(|s| s.0).collect::<Vec<_>>()
            );
        }
        Ok(Self { kept, skipped })
    }

    /// The skipped files, named by the chunk's `samples`.
    pub fn skipped_files(&self, samples: &[&Sample]) -> Vec<Skipped> {
        self.skipped
            .iter()
            .map(|(i, reason)| Skipped {
                path: samples[*i].path.clone(),
                reason: reason.clone(),
            })
            .collect()
    }
}

/// A metadata field, or an error naming it.
pub fn field<'m>(metadata: &'m HashMap<String, String>, name: &str) -> Result<&'m str> {
    metadata
        .get(name)
        .map(String::as_str)
        .with_context(|| format!("the metadata has no `{name}`"))
}

/// The checksum of host tensors (name, shape, values) as a chunk records it: SHA-256 over each
/// tensor's name, shape and little-endian f32 values, in the order given.
pub fn values_sha256(tensors: &[NamedTensor]) -> String {
    let mut h = Sha256::new();
    for (name, shape, values) in tensors {
        h.update(name.as_bytes());
        h.update(format!("{shape:?}").as_bytes());
        for v in values {
            h.update(v.to_le_bytes());
        }
    }
    super::hex(&h.finalize())
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Deserialize)]
pub struct TensorInfo {
    /// `F16`, `F32`, ….
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its bytes, from the start of the data.
    pub data_offsets: [u64; 2],
}

/// A safetensors file's header, read without its data (a chunk of a cut is read a row at a time).
pub struct Header {
    /// Where the data starts in the file.
    pub data_start: u64,
    /// Tensors by name.
    pub tensors: HashMap<String, TensorInfo>,
    /// String metadata.
    pub metadata: HashMap<String, String>,
}

/// Read the header of the safetensors file `file`.
pub fn read_header(file: &mut File) -> Result<Header> {
    let mut size = [0u8; 8];
    file.read_exact(&mut size).context("no header")?;
    let len = u64::from_le_bytes(size);
    // Our headers are a few kB; a larger one is not ours.
    if len > 100_000_000 {
        bail!("a header of {len} bytes");
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).context("a short header")?;
    let mut json: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).context("the header is not JSON")?;
    let metadata = match json.remove("__metadata__") {
        Some(m) => serde_json::from_value(m).context("bad metadata")?,
        None => HashMap::new(),
    };
    let mut tensors = HashMap::new();
    for (name, value) in json {
        let info: TensorInfo =
            serde_json::from_value(value).with_context(|| format!("tensor `{name}`"))?;
        tensors.insert(name, info);
    }
    Ok(Header {
        data_start: 8 + len,
        tensors,
        metadata,
    })
}

/// The checksum a streamed file's header holds until its data is written (as long as a real one).
pub const SHA256_PENDING: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Write the header of a safetensors file holding one f16 tensor `name` of `shape`, whose
/// bytes follow (a chunk of a cut, streamed a batch at a time). Returns where in the file the
/// metadata's `sha256` value starts (write the real checksum there once the data is written:
/// [`SHA256_PENDING`] holds its place), if the metadata has one.
pub fn write_f16_header(
    file: &mut impl Write,
    name: &str,
    shape: &[usize],
    metadata: &HashMap<String, String>,
) -> Result<Option<u64>> {
    let bytes = shape.iter().product::<usize>() * 2;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    header.insert(
        name.into(),
        serde_json::json!({ "dtype": "F16", "shape": shape, "data_offsets": [0, bytes] }),
    );
    let mut text = serde_json::to_vec(&header)?;
    // The data starts 8-byte aligned, as safetensors writes it.
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    file.write_all(&(text.len() as u64).to_le_bytes())?;
    file.write_all(&text)?;
    let key = br#""sha256":""#;
    let at = text.windows(key.len()).position(|w| w == key);
    Ok(at.map(|at| (8 + at + key.len()) as u64))
}

/// A temporary file untouched for this long was left by a killed process (a live writer
/// touches its file every backbone batch).
const STALE_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

/// Remove the temporary files (`.<name>.<random>.tmp`) that killed processes left in `dir`,
/// those untouched for a day; returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMPORARY);
        if name.starts_with('.') && name.ends_with(".tmp") && stale {
            removed += usize::from(std::fs::remove_file(entry.path()).is_ok());
        }
    }
    removed
}

/// Create `dir` if needed and check that a file can be written in it: a clear error naming it
/// before any backbone work, not a failure after an hour of it.
pub fn check_writable(dir: &Path) -> Result<PathBuf> {
    let fail = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the feature cache directory {} is not writable: {e}",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    Pending::new(dir, "write-check").map_err(|e| fail(&format!("{:#}", e.root_cause())))?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_image_once_with_one_length_per_set() {
        for n in [0, 1, 7, 8, 9, 100, 511, 512, 1_000, 25_000, 1_000_000] {
            let ranges = chunk_ranges(n);
            let covered: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(covered, (0..n).collect::<Vec<_>>(), "n = {n}");
            let len = chunk_len(n);
            assert!(len.is_power_of_two() && (MIN_CHUNK..=MAX_CHUNK).contains(&len));
            assert!(ranges.iter().all(|r| r.len() <= len), "n = {n}");
            if let Some((_, full)) = ranges.split_last() {
                assert!(full.iter().all(|r| r.len() == len), "n = {n}");
            }
        }
        assert_eq!(chunk_ranges(100)[0].len(), 8);
        assert_eq!(chunk_ranges(1_000)[0].len(), 16);
        assert_eq!(chunk_ranges(25_000)[0].len(), 128);
    }

    #[test]
    fn readable_lists_round_trip_and_bad_ones_are_refused() {
        let readable = Readable {
            kept: vec![0, 2],
            skipped: vec![(1, "bad\tjpeg\nheader \"x\"".into())],
        };
        let metadata = readable.metadata(3, SHA256_PENDING);
        let back = Readable::from_metadata(&metadata, 3).unwrap();
        assert_eq!(back, readable);
        assert!(
            Readable::from_metadata(&metadata, 4).is_err(),
            "other count"
        );
        for (kept, why) in [
            ("0,3", "past the chunk"),
            ("2,0", "not increasing"),
            ("0,x", "unparsable"),
            ("0", "one missing"),
            ("0,1,2", "one kept and skipped"),
        ] {
            let mut bad = metadata.clone();
            bad.insert("kept".into(), kept.into());
            assert!(Readable::from_metadata(&bad, 3).is_err(), "{why}");
        }
    }

    #[test]
    fn a_streamed_header_is_read_back_and_by_the_safetensors_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let mut pending = Pending::new(dir.path(), "x").unwrap();
        let metadata = HashMap::from([("sha256".to_string(), SHA256_PENDING.to_string())]);
        let at = write_f16_header(pending.file(), "rows", &[2, 3], &metadata).unwrap();
        let values = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        pending
            .file()
            .write_all(&crate::tensors::f16_bytes(&values))
            .unwrap();
        use std::os::unix::fs::FileExt;
        let sum = "ab".repeat(32);
        pending
            .file()
            .write_all_at(sum.as_bytes(), at.unwrap())
            .unwrap();
        let mut file = pending.persist(&path).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        use std::io::Seek;
        file.rewind().unwrap();
        let header = read_header(&mut file).unwrap();
        assert_eq!(header.data_start % 8, 0);
        assert_eq!(header.tensors["rows"].shape, [2, 3]);
        assert_eq!(header.metadata["sha256"], sum);
        let read = crate::tensors::read_safetensors(&path).unwrap();
        assert_eq!(read.tensors["rows"].1, values);
    }

    #[test]
    fn only_stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, age_hours: u64| {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            let when = std::time::SystemTime::now() - Duration::from_secs(age_hours * 3600);
            file.set_modified(when).unwrap();
            path
        };
        let stale = make(".cut-abc.safetensors.x1y2.tmp", 30);
        let live = make(".cut-abc.safetensors.z3w4.tmp", 1);
        let entry = make("cut-abc.safetensors", 30);
        let visible = make("notes.tmp", 30);
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert!(!stale.exists() && live.exists() && entry.exists() && visible.exists());
    }

    #[test]
    fn an_unpersisted_file_leaves_nothing_and_an_unwritable_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(Pending::new(dir.path(), "x").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Tests run as root, which any permission lets write: a path under a file cannot be
        // a directory for anyone.
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();
        let error = check_writable(&file.join("cache")).unwrap_err().to_string();
        assert!(
            error.contains("plain-file/cache") && error.contains("not writable"),
            "{error}"
        );
    }
}
