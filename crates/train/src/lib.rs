//! The `train` tool as a library: every part of the binary (config, data, feature cache, head
//! training, runs, explain, sanity, compare, bench, trackers), so tests and fuzz targets can call them.

pub mod commands;
pub mod config;
pub mod data;
pub mod event_images;
pub mod features;
pub mod fuzz_targets;
pub mod learn;
pub mod plot;
pub mod run;
pub mod tensors;
pub mod tracking;
