//! Scores of heatmaps, pure functions the loggers and `train` feed: localization against boxes
//! and outlines ([`localization`], [`wsol`], [`localization_report`]), faithfulness
//! ([`faithfulness`]), ROAD ([`road`]) and the randomisation sanity check ([`sanity`]).

pub mod faithfulness;
pub mod localization;
pub mod localization_report;
pub mod probabilities;
pub mod ranks;
pub mod road;
pub mod sanity;
pub mod wsol;
