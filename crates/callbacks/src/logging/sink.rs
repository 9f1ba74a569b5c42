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
pub trait Sink: Send {
    /// A scalar.
    fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError>;
    /// One or more images of equal size under one tag.
    fn images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), SinkError>;
    /// Markdown text.
    fn text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), SinkError>;
    /// A reference series' value for the scalar `tag` (`<method>/<score>`), e.g. a baseline's
    /// score beside a method's. By default it is the scalar `<series>/<score>`; TensorBoard
    /// draws it in `tag`'s own chart, as a run-like series.
    fn series_scalar(
        &mut self,
        series: &str,
        tag: &str,
        value: f32,
        step: i64,
    ) -> Result<(), SinkError> {
        let score = tag.split_once('/').map_or(tag, |(_, score)| score);
        self.scalar(
            &crate::logging::tags::method_tag(series, score),
            value,
            step,
        )
    }
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

/// TensorBoard event files: the run's, and one sub-directory per reference series (e.g.
/// `baseline_centre/`), which TensorBoard lists as a run of its own and draws in the same charts.
pub struct TensorBoardSink {
    /// The run's event file.
    pub writer: EventWriter,
    run_dir: PathBuf,
    /// `Some(step)`: a resumed run, whose series files are cut back to `step` when opened.
    resume_through: Option<i64>,
    series: std::collections::BTreeMap<String, EventWriter>,
}

impl TensorBoardSink {
    /// A sink writing into `run_dir`: a new event file, or with `resume_through` the newest one
    /// cut back to that step (see [`EventWriter::resume`]). Series files are opened likewise
    /// when first written; on a resume, those of the `series` a run may write that exist are cut
    /// back at once, so a series the resumed run no longer writes keeps no record past the
    /// checkpoint either.
    pub fn open(
        run_dir: &Path,
        resume_through: Option<i64>,
        series: &[&str],
    ) -> Result<Self, SinkError> {
        let writer = match resume_through {
            Some(step) => EventWriter::resume(run_dir, step)?,
            None => EventWriter::create(run_dir)?,
        };
        let mut opened = std::collections::BTreeMap::new();
        if let Some(step) = resume_through {
            for name in series.iter().filter(|n| run_dir.join(n).is_dir()) {
                opened.insert(
                    name.to_string(),
                    EventWriter::resume(run_dir.join(name), step)?,
                );
            }
        }
        Ok(Self {
            writer,
            run_dir: run_dir.to_path_buf(),
            resume_through,
            series: opened,
        })
    }
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
    fn series_scalar(
        &mut self,
        series: &str,
        tag: &str,
        value: f32,
        step: i64,
    ) -> Result<(), SinkError> {
        let writer = match self.series.entry(series.to_string()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let dir = self.run_dir.join(series);
                e.insert(match self.resume_through {
                    Some(step) => EventWriter::resume(dir, step)?,
                    None => EventWriter::create(dir)?,
                })
            }
        };
        Ok(writer.add_scalar(tag, value, step)?)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        for writer in self.series.values_mut() {
            writer.flush()?;
        }
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
    fn a_series_is_a_run_like_sub_directory_with_the_methods_tag_and_resumes_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = TensorBoardSink::open(dir.path(), None, &[]).unwrap();
        sink.scalar("cam/pointing_game", 0.75, 1).unwrap();
        for step in [1, 2] {
            sink.series_scalar("baseline_centre", "cam/pointing_game", 0.5, step)
                .unwrap();
        }
        sink.flush().unwrap();
        let series = dir.path().join("baseline_centre");
        assert_eq!(
            scalars(dir.path()),
            [(1, "cam/pointing_game".to_string(), 0.75)]
        );
        assert_eq!(
            scalars(&series),
            [
                (1, "cam/pointing_game".to_string(), 0.5),
                (2, "cam/pointing_game".to_string(), 0.5)
            ]
        );
        drop(sink);
        // Resumed after step 1, a run that no longer writes the series: its step 2 is cut all
        // the same.
        drop(TensorBoardSink::open(dir.path(), Some(1), &["baseline_centre"]).unwrap());
        assert_eq!(
            scalars(&series),
            [(1, "cam/pointing_game".to_string(), 0.5)]
        );
        // Resumed after step 1 again: step 2 is written once again.
        let mut sink = TensorBoardSink::open(dir.path(), Some(1), &["baseline_centre"]).unwrap();
        sink.series_scalar("baseline_centre", "cam/pointing_game", 0.25, 2)
            .unwrap();
        sink.flush().unwrap();
        assert_eq!(
            scalars(&series),
            [
                (1, "cam/pointing_game".to_string(), 0.5),
                (2, "cam/pointing_game".to_string(), 0.25)
            ]
        );
        // A run killed before its first series value resumes into a new series directory.
        let mut sink = TensorBoardSink::open(dir.path(), Some(1), &["baseline_uniform"]).unwrap();
        sink.series_scalar("baseline_uniform", "cam/pxap", 0.125, 2)
            .unwrap();
        sink.flush().unwrap();
        assert_eq!(
            scalars(&dir.path().join("baseline_uniform")),
            [(2, "cam/pxap".to_string(), 0.125)]
        );
    }

    /// A sink that only records scalars.
    #[derive(Default)]
    struct Recorder(Vec<(String, f32, i64)>);

    impl Sink for Recorder {
        fn scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), SinkError> {
            self.0.push((tag.to_string(), value, step));
            Ok(())
        }
        fn images(&mut self, _: &str, _: &[RgbImage], _: i64) -> Result<(), SinkError> {
            Ok(())
        }
        fn text(&mut self, _: &str, _: &str, _: i64) -> Result<(), SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    #[test]
    fn elsewhere_a_series_value_is_the_scalar_series_slash_score() {
        let mut sink = Recorder::default();
        sink.series_scalar("baseline_centre", "gradcam++/maxboxacc_0.5", 0.5, 3)
            .unwrap();
        assert_eq!(
            sink.0,
            [("baseline_centre/maxboxacc_0.5".to_string(), 0.5, 3)]
        );
    }
}
