//! Where per-epoch results go: a small [`Sink`] trait, with TensorBoard and PNG-file sinks.

use std::path::{Path, PathBuf};

use image::RgbImage;
use tensorboard::{EventWriter, Experiment, HParamValue, SessionStatus, TbError};

/// An error from a sink, naming what was being written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// TensorBoard event file.
    #[error(transparent)]
    TensorBoard(#[from] TbError),
    /// A file under the run directory.
    #[error("cannot write {path}: {cause}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: String,
    },
}

/// A destination for scalars, images and text, addressed by tag and step (the epoch).
pub trait Sink {
    /// A scalar.
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError>;
    /// One or more images of equal size under one tag.
    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError>;
    /// Markdown text.
    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError>;
    /// Make everything written so far durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The run's hyperparameters and the metrics to compare them by (TensorBoard's HParams
    /// tab); sinks without such a view ignore them.
    fn hparams(
        &mut self,
        _experiment: &Experiment,
        _values: &[(&str, HParamValue)],
    ) -> Result<(), SinkError> {
        Ok(())
    }
    /// The run ended with `status` (HParams session end); ignored by default.
    fn session_end(&mut self, _status: SessionStatus) -> Result<(), SinkError> {
        Ok(())
    }
}

/// TensorBoard event files.
pub struct TensorBoardSink {
    /// The writer.
    pub writer: EventWriter,
}

impl Sink for TensorBoardSink {
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError> {
        Ok(self.writer.add_scalar(tag, value, step)?)
    }
    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError> {
        Ok(self.writer.add_images(tag, images, step)?)
    }
    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError> {
        Ok(self.writer.add_text(tag, markdown, step)?)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.writer.flush()?)
    }
    fn hparams(
        &mut self,
        experiment: &Experiment,
        values: &[(&str, HParamValue)],
    ) -> Result<(), SinkError> {
        self.writer.add_hparams_experiment(experiment)?;
        Ok(self
            .writer
            .add_session_start(values, tensorboard::now_secs())?)
    }
    fn session_end(&mut self, status: SessionStatus) -> Result<(), SinkError> {
        Ok(self
            .writer
            .add_session_end(status, tensorboard::now_secs())?)
    }
}

/// PNG (and markdown) files: tag `a/b` at step s → `<root>/a/epoch-<sss>/b.png`.
pub struct PngSink {
    root: PathBuf,
}

impl PngSink {
    /// Files go below `root` (e.g. `runs/<run>/images`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, tag: &str, step: i64, index: Option<usize>, extension: &str) -> PathBuf {
        let (group, name) = tag.rsplit_once('/').unwrap_or(("misc", tag));
        let name = match index {
            Some(i) => format!("{name}-{i}"),
            None => name.to_string(),
        };
        self.root
            .join(sanitize(group))
            .join(format!("epoch-{step:03}"))
            .join(format!("{}.{extension}", sanitize(&name)))
    }
}

fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .replace("..", "_")
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), SinkError> {
    let error = |cause: String| SinkError::File {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
    }
    write(path).map_err(error)
}

impl Sink for PngSink {
    fn scalar(&mut self, _tag: &str, _value: f32, _step: i64) -> Result<(), SinkError> {
        Ok(())
    }
    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError> {
        for (i, image) in images.iter().enumerate() {
            let index = (images.len() > 1).then_some(i);
            let path = self.path(tag, step, index, "png");
            write_file(&path, |p| image.save(p).map_err(|e| e.to_string()))?;
        }
        Ok(())
    }
    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError> {
        if !tag.contains('/') {
            // Run-level text (the config) already has its own file in the run directory.
            return Ok(());
        }
        let path = self.path(tag, step, None, "md");
        write_file(&path, |p| {
            std::fs::write(p, markdown).map_err(|e| e.to_string())
        })
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Send to every sink; the first error wins.
pub fn each_sink(
    sinks: &mut [Box<dyn Sink>],
    mut f: impl FnMut(&mut dyn Sink) -> Result<(), SinkError>,
) -> Result<(), SinkError> {
    for sink in sinks.iter_mut() {
        f(sink.as_mut())?;
    }
    Ok(())
}
