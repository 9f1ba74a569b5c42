//! A small TensorBoard event-file writer: scalars, RGB images (PNG), markdown text, HParams and
//! the custom scalars layout.
//!
//! Why not `tensorboard-rs`: two of its writers in one directory within a second overwrite each
//! other's file, non-square images are stored transposed, every error panics, `flush()` does
//! not wait, and it pulls `protobuf` 2.28 (RUSTSEC-2024-0437). This crate is ~500 lines on
//! `prost` derives (no `protoc`), returns `Result` everywhere and fsyncs on `flush`.
//!
//! ```no_run
//! # fn main() -> Result<(), tensorboard::TbError> {
//! let mut log = tensorboard::EventWriter::create("runs/cam-20261127-120000")?;
//! log.add_scalar("val/accuracy", 0.93, 1)?;
//! log.add_image("cam/val_00", &image::RgbImage::new(224, 224), 1)?;
//! log.flush()?;
//! # Ok(()) }
//! ```
//!
//! [`EventWriter`] knows nothing of training; [`read`] parses event files back (tests, tools).

pub mod hparams;
pub mod layout;
pub mod proto;
pub mod read;
pub mod record;
mod writer;

pub use hparams::{
    DatasetType, Domain, Experiment, HParamSpec, HParamValue, MetricSpec, SessionStatus,
};
pub use layout::{exact_tag, Category, Chart, Layout};
pub use writer::{now_secs, EventWriter, TbError};
