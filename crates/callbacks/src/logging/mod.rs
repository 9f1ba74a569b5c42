//! The per-epoch loggers: the [`Callback`](callback::Callback) trait, [`CamLogger`](cam_logger::CamLogger)
//! and what it explains ([`image_sets`]), agreement between methods, drift and evolution, grids,
//! and where results go ([`sink`]).

pub mod agreement;
pub mod callback;
pub mod cam_logger;
pub mod evolution;
pub mod grid;
pub mod image_sets;
pub mod sink;
pub mod tags;
