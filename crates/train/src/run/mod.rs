//! A training run (`train --config` / `--resume`): the loop ([`fit`]), the session it opens
//! ([`session`], [`setup`]), the run's files, metrics.csv and its column names, HParams, the
//! end summary and progress.

pub mod confusion;
pub mod files;
pub mod fit;
pub mod hooks;
pub mod hparams;
pub mod metrics;
pub mod open;
pub mod progress;
pub mod session;
pub mod setup;
pub mod summary;
