//! [`EventWriter`]: one event file in one run directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Cursor, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use image::{ImageFormat, RgbImage};
use prost::Message;

use crate::hparams::{Experiment, HParamValue, SessionStatus};
use crate::layout::Layout;
use crate::proto::{self, Event, EventWhat, Summary, SummaryValue, SummaryValueKind};
use crate::record::write_record;

/// An error while writing events. Every variant says what was being written.
#[derive(Debug, thiserror::Error)]
pub enum TbError {
    /// The run directory or event file could not be created, written or synced.
    #[error("TensorBoard log {path}: {cause}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// An image with no pixels.
    #[error("image `{tag}` is empty ({width}x{height})")]
    EmptyImage {
        /// The tag.
        tag: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Images of one tag and step must share one size (TensorBoard stores one width/height).
    #[error("images of `{tag}` differ in size: {first:?} and {other:?}")]
    MixedImageSizes {
        /// The tag.
        tag: String,
        /// (width, height) of the first image.
        first: (u32, u32),
        /// (width, height) of a different one.
        other: (u32, u32),
    },
    /// PNG encoding failed.
    #[error("cannot encode image `{tag}` as PNG: {cause}")]
    Png {
        /// The tag.
        tag: String,
        /// The encoder's error.
        cause: image::ImageError,
    },
}

/// Seconds since the Unix epoch, as TensorBoard's wall times.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Distinguishes files created by one process within one second.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn host_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// Writes one TensorBoard event file (`events.out.tfevents.<secs>.<host>.<pid>.<n>`) in a run
/// directory. The file is created with create-new semantics, so two writers never share or
/// clobber a file. Records are buffered; [`flush`](Self::flush) writes and fsyncs them.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Create the run directory (and parents) and a new event file in it.
    pub fn create(run_dir: impl AsRef<Path>) -> Result<Self, TbError> {
        let dir = run_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|cause| TbError::Io {
            path: dir.to_path_buf(),
            cause,
        })?;
        let secs = now_secs() as u64;
        let (host, pid) = (host_name(), std::process::id());
        loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{pid}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut writer = Self {
                        path,
                        out: BufWriter::new(file),
                    };
                    writer.write_event(0, EventWhat::FileVersion("brain.Event:2".into()))?;
                    writer.flush()?;
                    return Ok(writer);
                }
                // Another writer (another process with a recycled pid) took the name.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(cause) => return Err(TbError::Io { path, cause }),
            }
        }
    }

    /// Continue a run after a crash: keep the newest event file of `run_dir` up to the last
    /// complete record whose step is ≤ `through_step` (−1: keep only the file-version record;
    /// records of later steps, written after
    /// the last checkpoint, and any record cut short are removed), and append to it. Older
    /// event files of the run are trimmed the same way, so no step is ever duplicated. With no
    /// event file (or no directory), a new one is created.
    pub fn resume(run_dir: impl AsRef<Path>, through_step: i64) -> Result<Self, TbError> {
        let dir = run_dir.as_ref();
        let io = |path: &Path, cause| TbError::Io {
            path: path.to_path_buf(),
            cause,
        };
        if !dir.exists() {
            // Nothing was written before the crash (not even the directory).
            return Self::create(dir);
        }
        let files = crate::read::event_files(dir).map_err(|e| io(dir, e))?;
        let Some(newest) = files.last().cloned() else {
            return Self::create(dir);
        };
        for path in &files {
            let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
            let keep = crate::read::keep_through_step(&bytes, through_step);
            if keep < bytes.len() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io(path, e))?;
                file.set_len(keep as u64).map_err(|e| io(path, e))?;
                file.sync_all().map_err(|e| io(path, e))?;
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&newest)
            .map_err(|e| io(&newest, e))?;
        Ok(Self {
            path: newest,
            out: BufWriter::new(file),
        })
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, cause: std::io::Error) -> TbError {
        TbError::Io {
            path: self.path.clone(),
            cause,
        }
    }

    fn write_event(&mut self, step: i64, what: EventWhat) -> Result<(), TbError> {
        let event = Event {
            wall_time: now_secs(),
            step,
            what: Some(what),
        };
        write_record(&mut self.out, &event.encode_to_vec()).map_err(|e| self.io_error(e))
    }

    fn write_value(&mut self, step: i64, value: SummaryValue) -> Result<(), TbError> {
        self.write_event(step, EventWhat::Summary(Summary { value: vec![value] }))
    }

    /// A scalar. NaN and infinities are written as they are (TensorBoard shows them).
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), TbError> {
        self.write_value(
            step,
            SummaryValue {
                tag: tag.into(),
                metadata: None,
                value: Some(SummaryValueKind::SimpleValue(value)),
            },
        )
    }

    /// One RGB image (PNG-encoded), any width and height.
    pub fn add_image(&mut self, tag: &str, image: &RgbImage, step: i64) -> Result<(), TbError> {
        self.add_images(tag, std::slice::from_ref(image), step)
    }

    /// Several RGB images of one size under one tag and step (TensorBoard shows them as
    /// samples of the tag), as the modern image summary: a string tensor
    /// `[width, height, png, png, ...]` with the `images` plugin's metadata.
    pub fn add_images(&mut self, tag: &str, images: &[RgbImage], step: i64) -> Result<(), TbError> {
        let Some(first) = images.first() else {
            return Err(TbError::EmptyImage {
                tag: tag.into(),
                width: 0,
                height: 0,
            });
        };
        let (width, height) = first.dimensions();
        let mut strings = vec![
            width.to_string().into_bytes(),
            height.to_string().into_bytes(),
        ];
        for image in images {
            let size = image.dimensions();
            if size.0 == 0 || size.1 == 0 {
                return Err(TbError::EmptyImage {
                    tag: tag.into(),
                    width: size.0,
                    height: size.1,
                });
            }
            if size != (width, height) {
                return Err(TbError::MixedImageSizes {
                    tag: tag.into(),
                    first: (width, height),
                    other: size,
                });
            }
            let mut png = Cursor::new(Vec::new());
            image
                .write_to(&mut png, ImageFormat::Png)
                .map_err(|cause| TbError::Png {
                    tag: tag.into(),
                    cause,
                })?;
            strings.push(png.into_inner());
        }
        let value = tensor_value(
            tag,
            "images",
            proto::DATA_CLASS_BLOB_SEQUENCE,
            strings,
            true,
        );
        self.write_value(step, value)
    }

    /// Markdown text (the `text` plugin), e.g. the run's config.
    pub fn add_text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<(), TbError> {
        let value = tensor_value(
            tag,
            "text",
            proto::DATA_CLASS_TENSOR,
            vec![markdown.as_bytes().to_vec()],
            false,
        );
        self.write_value(step, value)
    }

    fn add_hparams(&mut self, tag: &str, data: proto::HParamsData) -> Result<(), TbError> {
        let content = proto::HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        let value = SummaryValue {
            tag: tag.into(),
            metadata: Some(proto::SummaryMetadata {
                plugin_data: Some(proto::PluginData {
                    plugin_name: "hparams".into(),
                    content,
                }),
                data_class: 0,
            }),
            value: None,
        };
        self.write_value(0, value)
    }

    /// `_hparams_/experiment`: which hyperparameters and metrics the HPARAMS tab shows as
    /// columns. Write it once, in the log directory's root run.
    pub fn add_hparams_experiment(&mut self, experiment: &Experiment) -> Result<(), TbError> {
        self.add_hparams(
            "_hparams_/experiment",
            proto::HParamsData::Experiment(experiment.to_proto()),
        )
    }

    /// `_hparams_/session_start_info`: this run's hyperparameter values. `group_name` is the
    /// name the HPARAMS table shows for the run (its "Trial ID"; empty: the run's directory);
    /// runs of one group name share a row.
    pub fn add_session_start(
        &mut self,
        hparams: &[(&str, HParamValue)],
        group_name: &str,
        start_time_secs: f64,
    ) -> Result<(), TbError> {
        let info = proto::SessionStartInfo {
            hparams: hparams
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_proto()))
                .collect(),
            group_name: group_name.into(),
            start_time_secs,
        };
        self.add_hparams(
            "_hparams_/session_start_info",
            proto::HParamsData::SessionStartInfo(info),
        )
    }

    /// `_hparams_/session_end_info`: how and when the run ended.
    pub fn add_session_end(
        &mut self,
        status: SessionStatus,
        end_time_secs: f64,
    ) -> Result<(), TbError> {
        let info = proto::SessionEndInfo {
            status: status as i32,
            end_time_secs,
        };
        self.add_hparams(
            "_hparams_/session_end_info",
            proto::HParamsData::SessionEndInfo(info),
        )
    }

    /// The custom scalars layout ([`Layout`]): which tags the CUSTOM SCALARS tab draws together.
    pub fn add_custom_scalars_layout(&mut self, layout: &Layout) -> Result<(), TbError> {
        let value = tensor_value(
            crate::layout::LAYOUT_TAG,
            "custom_scalars",
            proto::DATA_CLASS_TENSOR,
            vec![layout.to_proto().encode_to_vec()],
            false,
        );
        self.write_value(0, value)
    }

    /// Write everything buffered and fsync it: when this returns, the records are on disk.
    pub fn flush(&mut self) -> Result<(), TbError> {
        self.out.flush().map_err(|e| self.io_error(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io_error(e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        // Best effort; call `flush` to see errors.
        let _ = self.out.flush();
    }
}

fn tensor_value(
    tag: &str,
    plugin: &str,
    data_class: i32,
    strings: Vec<Vec<u8>>,
    vector: bool,
) -> SummaryValue {
    let dim = if vector {
        vec![proto::TensorShapeDim {
            size: strings.len() as i64,
        }]
    } else {
        Vec::new()
    };
    SummaryValue {
        tag: tag.into(),
        metadata: Some(proto::SummaryMetadata {
            plugin_data: Some(proto::PluginData {
                plugin_name: plugin.into(),
                // ImagePluginData / TextPluginData at version 0: all fields default.
                content: Vec::new(),
            }),
            data_class,
        }),
        value: Some(SummaryValueKind::Tensor(proto::TensorProto {
            dtype: proto::DT_STRING,
            tensor_shape: Some(proto::TensorShapeProto { dim }),
            string_val: strings,
        })),
    }
}
