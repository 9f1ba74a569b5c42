//! The `train` tool as a library: every part of the binary (config, data, feature cache, head
//! training, runs, explain, sanity, compare, bench), so tests and fuzz targets can call them.

pub mod bench;
pub mod compare;
pub mod config;
pub mod cut_cache;
pub mod data;
pub mod event_images;
pub mod explain;
pub mod explain_boxes;
pub mod features;
pub mod files;
pub mod fit;
pub mod fuzz_targets;
pub mod head_training;
pub mod hooks;
pub mod hparams;
pub mod images;
pub mod metrics;
pub mod plot;
pub mod pretrain;
pub mod progress;
pub mod rng;
pub mod sanity;
pub mod session;
pub mod sets;
pub mod setup;
pub mod summary;
pub mod synth;
pub mod tensors;
pub mod top_training;
pub mod training;
