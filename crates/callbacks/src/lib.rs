//! Explanations of a classifier's decisions, and the per-epoch loggers that record them.
//!
//! - [`cam`]: the engine — CAM, Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM and XGradCAM on one
//!   batched pipeline with pytorch-grad-cam's normalisation.
//! - [`render`]: colormaps (OpenCV's JET exactly, Turbo, Viridis) and overlays.
//! - [`logger`]: the [`Callback`] trait and [`CamLogger`]; [`sink`]: where results go.
//! - [`localization`], [`faithfulness`], [`agreement`]: the scores logged with the maps.

pub mod agreement;
pub mod cam;
pub mod evolution;
pub mod faithfulness;
pub mod localization;
pub mod logger;
pub mod render;
pub mod sanity;
pub mod sink;

pub use agreement::Agreement;
pub use cam::{
    check_method, explain, explain_activations, normalize_maps, CamMethod, ExplainError,
    Explanation, Method, Target,
};
pub use evolution::MapHistory;
pub use logger::{
    Callback, CallbackContext, CallbackError, CamLogger, ExplainedImages, FaithfulnessSettings,
    LocalizationSet, RenderedMaps,
};
pub use render::{colorize, overlay, Colormap, OverlayStyle};
pub use sink::{each_sink, PngSink, Sink, SinkError, TensorBoardSink};
