//! The MLflow sink: the run's config as params, every scalar as a metric at its epoch (sent in
//! batches when the run flushes, every epoch), every image as a PNG artifact under
//! `images/<method>/epoch-NNN/`, text as Markdown artifacts, metrics.csv and config.toml at the
//! end, and the run marked FINISHED, or FAILED when the run stops on an error. The MLflow run's
//! id is kept in the run directory (`mlflow.json`), so `--resume` continues the same run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use callbacks::{Sink, SinkError};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use tensorboard::SessionStatus;

use super::mlflow::{now_ms, Client, Metric};
use crate::config::Config;
use crate::run::metrics::MetricsTable;

/// The run directory's record of its MLflow run.
const RECORD: &str = "mlflow.json";
/// Scalars kept while the server is away (sent when it is back); beyond, the oldest go (they
/// are in metrics.csv).
const MAX_PENDING: usize = 200_000;

/// A server that answered, and the experiment the run goes to.
pub struct Tracker {
    client: Client,
    experiment: String,
}

/// Reach `[logging] mlflow` before anything is written: `None` without one, or when it cannot
/// be reached and `mlflow_required = false` (with a warning); an error when it cannot be
/// reached and is required.
pub fn connect(config: &Config) -> Result<Option<Tracker>> {
    let Some(uri) = &config.logging.mlflow else {
        return Ok(None);
    };
    let reached = Client::new(uri).and_then(|client| {
        let experiment = client.experiment(&config.logging.experiment)?;
        Ok(Tracker { client, experiment })
    });
    match reached {
        Ok(tracker) => Ok(Some(tracker)),
        Err(e) if !config.logging.mlflow_required => {
            eprintln!(
                "warning: [logging] mlflow: {e:#}; training without it (mlflow_required = false)"
            );
            Ok(None)
        }
        Err(e) => Err(e.context(format!(
            "[logging] mlflow = \"{uri}\": the server cannot be reached (set mlflow_required = \
             false to train without it)"
        ))),
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    tracking_uri: String,
    experiment_id: String,
    run_id: String,
}

/// A run's MLflow run.
pub struct MlflowSink {
    client: Client,
    run_id: String,
    artifact_uri: String,
    run_dir: PathBuf,
    pending: Vec<Metric>,
    /// Since when requests fail (a warning once; retried at every flush).
    down: bool,
    skipped_images: usize,
    ended: bool,
}

impl MlflowSink {
    /// The MLflow run of the run in `run_dir`: a new one with the config as params, or the
    /// one its `mlflow.json` names (a resumed run; a new one if that run is gone). A failure
    /// here, after the server answered at the start, is a warning: the run goes on without it.
    pub fn open(tracker: Tracker, run_dir: &Path, config: &Config) -> Option<Self> {
        match Self::try_open(tracker, run_dir, config) {
            Ok(sink) => Some(sink),
            Err(e) => {
                eprintln!("warning: [logging] mlflow: {e:#}; training goes on without it");
                None
            }
        }
    }

    fn try_open(tracker: Tracker, run_dir: &Path, config: &Config) -> Result<Self> {
        let Tracker { client, experiment } = tracker;
        let record_path = run_dir.join(RECORD);
        let record: Option<Record> = std::fs::read(&record_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .filter(|r: &Record| r.tracking_uri == client.uri() && r.experiment_id == experiment);
        // A resumed run's MLflow run, if it is still there (its params were logged when it
        // was created: a changed value would be refused).
        let resumed = record.and_then(|r| {
            let uri = client
                .set_status(&r.run_id, "RUNNING")
                .and_then(|_| client.artifact_uri(&r.run_id));
            match uri {
                Ok(uri) => Some((r.run_id, uri)),
                Err(e) => {
                    eprintln!(
                        "warning: mlflow: run {} cannot be continued ({e:#}): a new run",
                        r.run_id
                    );
                    None
                }
            }
        });
        let (run_id, artifact_uri) = match resumed {
            Some((id, uri)) => {
                println!("mlflow: resuming run {id} at {}", client.uri());
                (id, uri)
            }
            None => {
                let name = run_dir.file_name().unwrap_or_default().to_string_lossy();
                let tags = [
                    ("mlflow.source.name".to_string(), "train".to_string()),
                    ("run_dir".to_string(), run_dir.display().to_string()),
                ];
                let (id, uri) = client.create_run(&experiment, &name, &tags)?;
                let record = Record {
                    tracking_uri: client.uri().to_string(),
                    experiment_id: experiment.clone(),
                    run_id: id.clone(),
                };
                crate::run::files::write_atomic(&record_path, &serde_json::to_vec(&record)?)?;
                client
                    .log_batch(&id, &[], &params(config)?)
                    .context("logging the config as params")?;
                println!(
                    "mlflow: run {id} in experiment {experiment} at {}",
                    client.uri()
                );
                (id, uri)
            }
        };
        Ok(Self {
            client,
            run_id,
            artifact_uri,
            run_dir: run_dir.to_path_buf(),
            pending: Vec::new(),
            down: false,
            skipped_images: 0,
            ended: false,
        })
    }

    /// A request failed: a server away is marked down (a warning the first time; no retries
    /// until it answers again); a refusal by a server that is there drops only that item.
    fn failed(&mut self, what: &str, error: &anyhow::Error) {
        if super::mlflow::rejected(error) {
            eprintln!("warning: mlflow: {what} refused: {error:#}; skipped");
            return;
        }
        if !self.down {
            eprintln!(
                "warning: mlflow: {what}: {error:#}; training goes on (everything is in the run \
                 directory; scalars are kept and sent when the server is back, images are not)"
            );
        }
        self.down = true;
        self.client.set_retry(false);
    }

    fn upload(&mut self, path: &str, bytes: &[u8]) {
        if self.down {
            self.skipped_images += 1;
            return;
        }
        if let Err(e) = self.client.upload(&self.artifact_uri, path, bytes) {
            self.failed(&format!("uploading {path}"), &e);
        }
    }
}

/// The config as flat params: `train.learning_rate = 0.01`, `callbacks.0.kind = cam`, … (not
/// `[logging]`).
fn params(config: &Config) -> Result<Vec<(String, String)>> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
        let join = |k: &str| match prefix {
            "" => k.to_string(),
            p => format!("{p}.{k}"),
        };
        match value {
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
            toml::Value::Array(a) if a.iter().all(|v| v.is_table()) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| flatten(&join(&i.to_string()), v, out)),
            toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    flatten("", &toml::Value::try_from(config)?, &mut out);
    // Where the run is logged is not a setting of the run.
    out.retain(|(k, _)| !k.starts_with("logging."));
    Ok(out)
}

/// The run's summary as Markdown: the best validation accuracy and every column's last value.
fn summary(table: &MetricsTable) -> String {
    let mut text = String::from("# Summary\n\n");
    if let Some((epoch, accuracy)) = table.best("val_accuracy") {
        text.push_str(&format!(
            "best val accuracy {accuracy:.4} at epoch {epoch}\n\n"
        ));
    }
    text.push_str("| metric | last value | epoch |\n|---|---|---|\n");
    for column in &table.columns {
        if let Some((epoch, value)) = table.last(column) {
            text.push_str(&format!("| {column} | {value:.4} | {epoch} |\n"));
        }
    }
    text
}

/// Where an image of `tag` at `step` goes: `images/<method>/epoch-NNN/<rest>.png`.
fn image_path(tag: &str, step: i64, index: Option<usize>) -> String {
    let (head, rest) = tag.split_once('/').unwrap_or((tag, "image"));
    let suffix = index.map_or(String::new(), |i| format!("-{i}"));
    format!("images/{head}/epoch-{step:03}/{rest}{suffix}.png")
}

impl Sink for MlflowSink {
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError> {
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        let timestamp = now_ms();
        let key = tag.to_string();
        self.pending.push(Metric {
            key,
            value,
            step,
            timestamp,
        });
        Ok(())
    }

    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError> {
        for (i, image) in images.iter().enumerate() {
            let mut png = Vec::new();
            let encoded =
                image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
            if encoded.is_ok() {
                let path = image_path(tag, step, (images.len() > 1).then_some(i));
                self.upload(&path, &png);
            }
        }
        Ok(())
    }

    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError> {
        let path = format!("text/{tag}/epoch-{step:03}.md");
        self.upload(&path, markdown.as_bytes());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.client.log_batch(&self.run_id, &self.pending, &[]) {
            Ok(()) => {
                if self.down {
                    eprintln!(
                        "mlflow: the server is back; {} scalars sent ({} images were not)",
                        self.pending.len(),
                        self.skipped_images
                    );
                }
                self.pending.clear();
                self.down = false;
                self.client.set_retry(true);
            }
            Err(e) => {
                if super::mlflow::rejected(&e) {
                    self.pending.clear();
                }
                self.failed("sending scalars", &e)
            }
        }
        Ok(())
    }

    fn session_end(&mut self, status: SessionStatus) -> Result<(), SinkError> {
        self.flush()?;
        if let Ok(table) = MetricsTable::read(&self.run_dir.join("metrics.csv")) {
            self.upload("summary.md", summary(&table).as_bytes());
        }
        for name in ["metrics.csv", "config.toml"] {
            if let Ok(bytes) = std::fs::read(self.run_dir.join(name)) {
                self.upload(name, &bytes);
            }
        }
        let status = match status {
            SessionStatus::Success => "FINISHED",
            _ => "FAILED",
        };
        if let Err(e) = self.client.set_status(&self.run_id, status) {
            self.failed("marking the run finished", &e);
        }
        self.ended = true;
        Ok(())
    }
}

impl Drop for MlflowSink {
    /// A run that stops on an error drops its sinks without ending the session: FAILED.
    fn drop(&mut self) {
        if !self.ended {
            if !self.down {
                let _ = self.flush();
            }
            // One try (a short one while the server is away).
            self.client.set_retry(false);
            let _ = self.client.set_status(&self.run_id, "FAILED");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_go_under_their_method_and_epoch() {
        assert_eq!(
            image_path("cam/grid", 3, None),
            "images/cam/epoch-003/grid.png"
        );
        assert_eq!(
            image_path("gradcam/evolution/cat_00600", 10, None),
            "images/gradcam/epoch-010/evolution/cat_00600.png"
        );
        assert_eq!(
            image_path("cam/grid", 1, Some(2)),
            "images/cam/epoch-001/grid-2.png"
        );
    }
}
