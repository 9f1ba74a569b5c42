//! Explanations of a classifier's decisions, and the per-epoch loggers that record them.
//!
//! - [`engine`]: one batched pipeline with pytorch-grad-cam's normalisation and options
//!   (eigen_smooth, aug_smooth); CAM, Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM, XGradCAM,
//!   GradCAM-ElementWise, EigenCAM, EigenGradCAM, Score-CAM, Ablation-CAM and a random
//!   baseline, each a few lines; guided backpropagation and Guided Grad-CAM.
//! - [`scores`]: localization (pointing game, WSOL scores), faithfulness, ROAD, sanity.
//! - [`logging`]: the [`Callback`] trait, [`CamLogger`], agreement, drift, sinks.
//! - [`render`]: colormaps (OpenCV's JET exactly, Turbo, Viridis) and overlays.

pub mod engine;
pub mod logging;
pub mod render;
pub mod scores;

pub use engine::guided::{guided_backprop, guided_gradcam, GuidedExplanation};
pub use engine::method::Method;
pub use engine::methods::{CamMethod, Reduction};
pub use engine::pipeline::{
    check_method, explain, explain_activations, explain_activations_with, explain_with,
    normalize_maps, ExplainError, Explanation, Options, Target,
};
pub use logging::agreement::Agreement;
pub use logging::callback::{
    run_callbacks, Callback, CallbackContext, CallbackError, Hook, RenderedMaps,
};
pub use logging::cam_logger::CamLogger;
pub use logging::evolution::MapHistory;
pub use logging::image_sets::{ExplainedImages, FaithfulnessSettings, LocalizationSet};
pub use logging::sink::{each_sink, PngSink, Sink, SinkError, TensorBoardSink};
pub use render::{colorize, guided_beside_photo, overlay, Colormap, OverlayStyle};
