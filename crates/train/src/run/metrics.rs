//! metrics.csv: one row per epoch, one column per scalar tag, assembled by a [`Sink`] from the
//! scalars every sink receives. Tags and columns are named by [`Metric`] (in
//! `callbacks::logging::tags`, the one place that names them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
pub use callbacks::logging::tags::{set_name_clash, Metric};
use callbacks::{Sink, SinkError};
use image::RgbImage;

use crate::run::files::write_atomic;

/// The timing scalars of every epoch: the training pass alone, training and evaluation (`head`),
/// the callbacks, the whole epoch.
pub const SECONDS_TAGS: [&str; 4] = [
    "seconds/train",
    "seconds/head",
    "seconds/callback",
    "seconds/epoch",
];

/// One epoch of metrics.csv: values by tag (absent: not computed that epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Values by column name.
    pub values: BTreeMap<String, f32>,
}

/// A metrics.csv read back: its columns (without `epoch`) and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    /// Column names after `epoch`, in file order.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

impl MetricsTable {
    /// Read a metrics.csv. Empty cells are values not computed that epoch.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        if header.first().map(String::as_str) != Some("epoch") {
            bail!("{}: the first column is not `epoch`", path.display());
        }
        let columns = header[1..].to_vec();
        let mut rows = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let bad = || format!("bad row in {}: {line}", path.display());
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != header.len() {
                bail!("{}", bad());
            }
            let epoch = fields[0].parse().with_context(bad)?;
            let mut values = BTreeMap::new();
            for (column, field) in columns.iter().zip(&fields[1..]) {
                if !field.is_empty() {
                    values.insert(column.clone(), field.parse::<f32>().with_context(bad)?);
                }
            }
            rows.push(Row { epoch, values });
        }
        Ok(Self { columns, rows })
    }

    /// The latest value of `column`, with its epoch.
    pub fn last(&self, column: &str) -> Option<(usize, f32)> {
        self.rows
            .iter()
            .rev()
            .find_map(|r| Some((r.epoch, *r.values.get(column)?)))
    }

    /// The largest value of `column` (the first epoch reaching it), with its epoch.
    pub fn best(&self, column: &str) -> Option<(usize, f32)> {
        self.rows
            .iter()
            .filter_map(|r| Some((r.epoch, *r.values.get(column)?)))
            .fold(None, |best, (e, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((e, v)),
            })
    }
}

/// The sink that writes metrics.csv: every scalar of an epoch lands in that epoch's row under
/// its tag's column; the file is rewritten (atomically) on each flush. Columns are fixed when
/// the run starts, so a scalar with an unknown tag is an error, never a silently lost value.
pub struct MetricsCsv {
    path: PathBuf,
    /// Column names (without `epoch`), in order.
    columns: Vec<String>,
    rows: Vec<Row>,
}

impl MetricsCsv {
    /// A metrics.csv at `path` with one column per tag, keeping the rows of epochs ≤ `through`
    /// of an existing file (a resumed run).
    pub fn open(path: PathBuf, tags: &[String], through: usize) -> Result<Self> {
        let columns = tags
            .iter()
            .map(|t| {
                Metric::from_tag(t)
                    .map(|m| m.column())
                    .with_context(|| format!("no metrics.csv column for the tag `{t}`"))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = if through > 0 {
            let table = MetricsTable::read(&path)?;
            // A run started by an older version may lack newer scores' columns: their cells
            // stay empty for the epochs it wrote.
            if table.columns.iter().any(|c| !columns.contains(c)) {
                bail!(
                    "{}: it has columns this run does not write ({:?} vs {:?})",
                    path.display(),
                    table.columns,
                    columns
                );
            }
            table
                .rows
                .into_iter()
                .filter(|r| r.epoch <= through)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            path,
            columns,
            rows,
        })
    }

    fn csv_text(&self) -> String {
        let mut text = format!("epoch,{}\n", self.columns.join(","));
        for row in &self.rows {
            text.push_str(&row.epoch.to_string());
            for column in &self.columns {
                text.push(',');
                if let Some(v) = row.values.get(column) {
                    text.push_str(&v.to_string());
                }
            }
            text.push('\n');
        }
        text
    }
}

impl Sink for MetricsCsv {
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError> {
        let error = |cause: String| SinkError::File {
            path: self.path.clone(),
            cause,
        };
        let column = Metric::from_tag(tag)
            .map(|m| m.column())
            .filter(|c| self.columns.contains(c))
            .ok_or_else(|| error(format!("no column for the scalar `{tag}`")))?;
        let epoch = usize::try_from(step).map_err(|_| error(format!("step {step}")))?;
        if self.rows.last().is_none_or(|r| r.epoch != epoch) {
            self.rows.push(Row {
                epoch,
                values: BTreeMap::new(),
            });
        }
        // A scalar logged twice at a step (two loggers' shared baseline) keeps its first value,
        // as TensorBoard's sink does.
        if let Some(row) = self.rows.last_mut() {
            row.values.entry(column).or_insert(value);
        }
        Ok(())
    }
    fn images(&mut self, _: &str, _: &[RgbImage], _: i64) -> Result<(), SinkError> {
        Ok(())
    }
    fn text(&mut self, _: &str, _: &str, _: i64) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        write_atomic(&self.path, self.csv_text().as_bytes()).map_err(|e| SinkError::File {
            path: self.path.clone(),
            cause: format!("{e:#}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_columns_name_the_same_metrics() {
        for (tag, column) in [
            ("loss/train", "train_loss"),
            ("accuracy/oxford", "oxford_accuracy"),
            ("gradcam++/pointing_game", "gradcam++_pointing_game"),
            ("gradcam/box_iou", "gradcam_box_iou"),
            ("cam/maxboxacc_0.5", "cam_maxboxacc_0.5"),
            (
                "baseline_centre/pointing_game_15px",
                "baseline_centre_pointing_game_15px",
            ),
            ("baseline_uniform/pxap", "baseline_uniform_pxap"),
            (
                "agreement/cam_vs_gradcam++/top20_iou",
                "cam_vs_gradcam++_top20_iou",
            ),
            ("seconds/epoch", "epoch_seconds"),
        ] {
            let metric = Metric::from_tag(tag).unwrap();
            assert_eq!(metric.column(), column);
            assert_eq!(metric.tag(), tag);
            assert_eq!(Metric::from_column(column), Some(metric), "{column}");
        }
        assert_eq!(Metric::from_column("epoch"), None);
    }

    #[test]
    fn skipped_values_are_empty_cells_and_survive_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let tags: Vec<String> = ["loss/train", "cam/box_iou"].map(String::from).to_vec();
        let mut csv = MetricsCsv::open(path.clone(), &tags, 0).unwrap();
        csv.scalar("loss/train", 0.5, 1).unwrap();
        csv.scalar("loss/train", 0.25, 2).unwrap();
        csv.scalar("cam/box_iou", 0.125, 2).unwrap();
        csv.scalar("loss/train", 0.1, 3).unwrap();
        csv.flush().unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            written,
            "epoch,train_loss,cam_box_iou\n1,0.5,\n2,0.25,0.125\n3,0.1,\n"
        );
        // Resumed after epoch 2: epoch 3 is redone and the file reads the same.
        let mut resumed = MetricsCsv::open(path.clone(), &tags, 2).unwrap();
        resumed.scalar("loss/train", 0.1, 3).unwrap();
        resumed.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
        let table = MetricsTable::read(&path).unwrap();
        assert_eq!(table.last("cam_box_iou"), Some((2, 0.125)));
        assert_eq!(table.best("train_loss"), Some((1, 0.5)));
        // A tag without a column is an error.
        assert!(resumed.scalar("cam/unknown", 1.0, 3).is_err());
        // A run resumed by a version with more scores: the old epochs' new cells stay empty.
        let more: Vec<String> = ["loss/train", "cam/box_iou", "cam/pxap"]
            .map(String::from)
            .to_vec();
        let mut newer = MetricsCsv::open(path.clone(), &more, 2).unwrap();
        newer.scalar("cam/pxap", 0.75, 3).unwrap();
        newer.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "epoch,train_loss,cam_box_iou,cam_pxap\n1,0.5,,\n2,0.25,0.125,\n3,,,0.75\n"
        );
        // One that drops a column it had written is refused.
        assert!(MetricsCsv::open(path.clone(), &tags[..1], 2).is_err());
    }
}
