//! The subcommands besides training: `train explain`, `features`, `sanity`, `compare`,
//! `bench`, `pretrain`.

pub mod bench;
pub mod classifier;
pub mod compare;
pub mod explain;
pub mod features;
pub mod pretrain;
pub mod sanity;
