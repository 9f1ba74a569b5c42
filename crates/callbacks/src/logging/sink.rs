//! Where per-epoch results go: a small [`Sink`] trait, with TensorBoard and PNG-file sinks.

use std::path::{Path, PathBuf};

use image::RgbImage;
use tensorboard::{EventWriter, Experiment, HParamValue, Layout, SessionStatus, TbError};

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
pub trait Sink: Send {
    /// A scalar.
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError>;
    /// One or more images of equal size under one tag.
    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError>;
    /// Markdown text.
    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError>;
    /// Make everything written so far durable.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The run's hyperparameters and the metrics to compare them by (TensorBoard's HParams
    /// tab), under the name `session` the table shows for the run; sinks without such a view
    /// ignore them.
    fn hparams(
        &mut self,
        _experiment: &Experiment,
        _values: &[(&str, HParamValue)],
        _session: &str,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    /// Which scalars to draw together (a score and its baselines, the sets' accuracies):
    /// TensorBoard's custom scalars layout; ignored by default.
    fn layout(&mut self, _layout: &Layout) -> Result<(), SinkError> {
        Ok(())
    }
    /// The run ended with `status` (HParams session end); ignored by default.
    fn session_end(&mut self, _status: SessionStatus) -> Result<(), SinkError> {
        Ok(())
    }
}

/// TensorBoard event files: the run's own (baselines are tags of the run, drawn beside their
/// scores by the custom scalars [`Layout`], not runs of their own).
pub struct TensorBoardSink {
    /// The run's event file.
    pub writer: EventWriter,
    /// Each scalar tag's last step written: a scalar is written once per step (two loggers
    /// scoring one set both log its baselines' scores).
    last_step: std::collections::HashMap<String, i64>,
}

impl TensorBoardSink {
    /// A sink writing into `run_dir`: a new event file, or with `resume_through` the newest one
    /// cut back to that step (see [`EventWriter::resume`]).
    pub fn open(run_dir: &Path, resume_through: Option<i64>) -> Result<Self, SinkError> {
        let writer = match resume_through {
            Some(step) => EventWriter::resume(run_dir, step)?,
            None => EventWriter::create(run_dir)?,
        };
        Ok(Self {
            writer,
            last_step: std::collections::HashMap::new(),
        })
    }
}

impl Sink for TensorBoardSink {
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError> {
        if self.last_step.get(tag) == Some(&step) {
            return Ok(());
        }
        self.last_step.insert(tag.to_string(), step);
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
        session: &str,
    ) -> Result<(), SinkError> {
        self.writer.add_hparams_experiment(experiment)?;
        Ok(self
            .writer
            .add_session_start(values, session, tensorboard::now_secs())?)
    }
    fn layout(&mut self, layout: &Layout) -> Result<(), SinkError> {
        Ok(self.writer.add_custom_scalars_layout(layout)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tensorboard::proto::{EventWhat, SummaryValueKind};

    /// (step, tag, value) of every scalar in the event files of `dir`.
    fn scalars(dir: &Path) -> Vec<(i64, String, f32)> {
        let mut out = Vec::new();
        for file in tensorboard::read::event_files(dir).unwrap() {
            for event in tensorboard::read::read_event_file(&file).unwrap().events {
                let Some(EventWhat::Summary(summary)) = event.what else {
                    continue;
                };
                for v in summary.value {
                    if let Some(SummaryValueKind::SimpleValue(x)) = v.value {
                        out.push((event.step, v.tag, x));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn baselines_are_tags_of_the_run_and_the_layout_is_written_once_at_step_0() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = TensorBoardSink::open(dir.path(), None).unwrap();
        let layout = Layout {
            categories: vec![tensorboard::Category {
                title: "cam".into(),
                charts: vec![tensorboard::Chart {
                    title: "cam/pointing_game".into(),
                    tags: vec![
                        "^cam/pointing_game$".into(),
                        "^baseline_centre/pointing_game$".into(),
                    ],
                }],
            }],
        };
        sink.layout(&layout).unwrap();
        sink.scalar("cam/pointing_game", 0.75, 1).unwrap();
        // Logged by two loggers of one set: written once.
        sink.scalar("baseline_centre/pointing_game", 0.5, 1)
            .unwrap();
        sink.scalar("baseline_centre/pointing_game", 0.5, 1)
            .unwrap();
        sink.flush().unwrap();
        // One run: no sub-directory.
        let dirs = std::fs::read_dir(dir.path()).unwrap();
        assert!(dirs.into_iter().all(|e| e.unwrap().path().is_file()));
        assert_eq!(
            scalars(dir.path()),
            [
                (1, "cam/pointing_game".to_string(), 0.75),
                (1, "baseline_centre/pointing_game".to_string(), 0.5)
            ]
        );
        let mut layouts = Vec::new();
        for file in tensorboard::read::event_files(dir.path()).unwrap() {
            for event in tensorboard::read::read_event_file(&file).unwrap().events {
                let Some(EventWhat::Summary(summary)) = event.what else {
                    continue;
                };
                for v in summary.value {
                    if v.tag == tensorboard::layout::LAYOUT_TAG {
                        let plugin = v.metadata.unwrap().plugin_data.unwrap().plugin_name;
                        assert_eq!((plugin.as_str(), event.step), ("custom_scalars", 0));
                        layouts.push(v.value);
                    }
                }
            }
        }
        let Some(Some(SummaryValueKind::Tensor(t))) = layouts.pop() else {
            panic!("no layout");
        };
        assert!(layouts.is_empty());
        let written = String::from_utf8_lossy(&t.string_val[0]).into_owned();
        assert!(
            written.contains("^baseline_centre/pointing_game$"),
            "{written}"
        );
    }
}
