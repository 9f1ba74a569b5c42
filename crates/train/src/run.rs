//! The run directory: `runs/<name>-<YYYYmmdd-HHMMSS>[-n]` (never reused), its config.toml,
//! metrics.csv, checkpoint and exported head, all written atomically (temp file + rename).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use model::HeadKind;

use crate::tensors::{read_safetensors, to_vec, write_safetensors};
use crate::trainer::HeadTrainer;

/// Create a new run directory; never reuses an existing one.
pub fn create_run_dir(runs_dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(runs_dir)
        .with_context(|| format!("cannot create runs_dir {}", runs_dir.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    for n in 0.. {
        let dir_name = if n == 0 {
            format!("{name}-{stamp}")
        } else {
            format!("{name}-{stamp}-{n}")
        };
        let dir = runs_dir.join(dir_name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create run dir {}", dir.display()))
            }
        }
    }
    unreachable!("the loop returns")
}

/// What identifies a directory on disk (device and inode), to notice it being replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirIdentity(u64, u64);

/// The identity of `dir` now.
pub fn dir_identity(dir: &Path) -> Result<DirIdentity> {
    let meta =
        std::fs::metadata(dir).with_context(|| format!("run dir {} is gone", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(DirIdentity(meta.dev(), meta.ino()))
    }
    // Elsewhere only its existence is checked.
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(DirIdentity(0, 0))
    }
}

/// Fail when `dir` was deleted, moved or replaced since `identity` was taken.
pub fn check_same_dir(dir: &Path, identity: &DirIdentity) -> Result<()> {
    match dir_identity(dir) {
        Ok(now) if &now == identity => Ok(()),
        _ => anyhow::bail!(
            "run dir {} was deleted or replaced during the run: stopping (its log and \
             checkpoint are not where they were)",
            dir.display()
        ),
    }
}

/// Write a file atomically: a temp file beside it, fsync, rename, fsync of the directory (so
/// the rename itself survives a power loss, not only a crash of the process).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", tmp.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))?;
    Ok(())
}

/// One epoch's row of metrics.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Values in the order of [`METRIC_COLUMNS`] after `epoch`.
    pub values: Vec<f64>,
}

/// metrics.csv's first columns (a contract); per-method metrics follow, timings last.
pub const METRIC_COLUMNS: [&str; 5] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
];
/// metrics.csv's last columns.
pub const TIMING_COLUMNS: [&str; 3] = ["head_seconds", "callback_seconds", "epoch_seconds"];

/// Write metrics.csv from all rows so far.
pub fn write_metrics(path: &Path, columns: &[String], rows: &[MetricsRow]) -> Result<()> {
    let mut text = columns.join(",");
    text.push('\n');
    for row in rows {
        text.push_str(&row.epoch.to_string());
        for v in &row.values {
            text.push_str(&format!(",{v}"));
        }
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Read metrics.csv back (for resuming).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let mut fields = line.split(',');
        let epoch = fields
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("bad row in {}: {line}", path.display()))?;
        let values = fields
            .map(|f| f.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("bad row in {}: {line}", path.display()))?;
        rows.push(MetricsRow { epoch, values });
    }
    Ok(rows)
}

/// Save the checkpoint (head + Adam state + epoch) atomically.
pub fn save_checkpoint(path: &Path, head: &HeadTrainer, epoch: usize) -> Result<()> {
    let tensors = head
        .state()
        .into_iter()
        .map(|(name, t)| Ok((name, t.dims().to_vec(), to_vec(t)?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        ("epoch".to_string(), epoch.to_string()),
        ("adam_step".to_string(), head.step.to_string()),
    ]);
    write_safetensors(path, &tensors, metadata).map(|_| ())
}

/// Load a checkpoint into `head`; the epoch it was taken after.
pub fn load_checkpoint(path: &Path, head: &mut HeadTrainer, device: &Device) -> Result<usize> {
    let file = read_safetensors(path).context("checkpoint")?;
    let number = |key: &str| -> Result<u64> {
        file.metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("checkpoint {} lacks `{key}`", path.display()))
    };
    let (epoch, step) = (number("epoch")? as usize, number("adam_step")?);
    let mut tensors = HashMap::new();
    for (name, (shape, values)) in file.tensors {
        let [rows, cols] = shape[..] else {
            anyhow::bail!("checkpoint {}: `{name}` is not 2-D", path.display());
        };
        tensors.insert(
            name,
            Tensor::from_data(TensorData::new(values, [rows, cols]), device),
        );
    }
    head.restore(tensors, step)
        .with_context(|| format!("checkpoint {}", path.display()))?;
    Ok(epoch)
}

/// Export the head in PyTorch layout (what `train explain --head-weights` reads).
pub fn export_head(path: &Path, head: &HeadTrainer, kind: HeadKind) -> Result<()> {
    let mut tensors = Vec::new();
    for (i, (w, b)) in head.layers.iter().enumerate() {
        let prefix = match kind {
            HeadKind::GapLinear => String::new(),
            HeadKind::GapDense => format!("fc{}.", i + 1),
        };
        let wt = w.clone().transpose();
        tensors.push((format!("{prefix}weight"), wt.dims().to_vec(), to_vec(wt)?));
        tensors.push((
            format!("{prefix}bias"),
            b.dims().to_vec(),
            to_vec(b.clone())?,
        ));
    }
    write_safetensors(path, &tensors, HashMap::new()).map(|_| ())
}

/// The column names of a metrics.csv (`epoch` first).
pub fn read_metric_columns(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect())
}

/// The images a run logged to TensorBoard under tags starting with `prefix`, decoded, as
/// (tag, step, image); for a tag and step logged twice (a resumed run) the last one.
pub fn logged_images(run_dir: &Path, prefix: &str) -> Result<Vec<(String, i64, image::RgbImage)>> {
    let logged = tensorboard::read::run_images(run_dir, prefix)
        .with_context(|| format!("cannot read the event files in {}", run_dir.display()))?;
    let mut out: Vec<(String, i64, image::RgbImage)> = Vec::new();
    for image in logged {
        let decoded = crate::images::decode_rgb(
            &image.png,
            &format!(
                "{}: image {} step {}",
                run_dir.display(),
                image.tag,
                image.step
            ),
        )?;
        match out
            .iter_mut()
            .find(|(t, s, _)| *t == image.tag && *s == image.step)
        {
            Some(slot) => slot.2 = decoded,
            None => out.push((image.tag, image.step, decoded)),
        }
    }
    Ok(out)
}
