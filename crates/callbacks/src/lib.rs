//! Explanations of a classifier's decisions, and the per-epoch loggers that record them.
//!
//! - [`cam`]: the engine — one batched pipeline with pytorch-grad-cam's normalisation, its
//!   options (eigen_smooth, aug_smooth); [`methods`]: CAM, Grad-CAM, Grad-CAM++, LayerCAM,
//!   HiResCAM, XGradCAM, GradCAM-ElementWise, EigenCAM, EigenGradCAM, Score-CAM, Ablation-CAM
//!   and a random baseline, each a few lines; [`projection`]: the principal-component maps;
//!   [`guided`]: guided backpropagation and Guided Grad-CAM (raw [N, 3, H, W] tensors).
//! - [`render`]: colormaps (OpenCV's JET exactly, Turbo, Viridis) and overlays.
//! - [`logger`]: the [`Callback`] trait and [`CamLogger`]; [`sink`]: where results go.
//! - [`localization`], [`faithfulness`], [`agreement`]: the scores logged with the maps.

pub mod agreement;
pub mod cam;
pub mod evolution;
pub mod explain_error;
pub mod faithfulness;
pub mod guided;
pub mod localization;
pub mod localization_report;
pub mod logger;
pub mod methods;
pub mod projection;
pub mod render;
pub mod road;
mod road_solver;
pub mod sanity;
pub mod sink;
pub mod wsol;

pub use agreement::Agreement;
pub use cam::{
    check_method, explain, explain_activations, explain_activations_with, explain_with,
    normalize_maps, ExplainError, Explanation, Options, Target,
};
pub use evolution::MapHistory;
pub use guided::{guided_backprop, guided_gradcam, GuidedExplanation};
pub use logger::{
    Callback, CallbackContext, CallbackError, CamLogger, ExplainedImages, FaithfulnessSettings,
    LocalizationSet, RenderedMaps,
};
pub use methods::{CamMethod, Method, Reduction};
pub use render::{colorize, guided_beside_photo, overlay, Colormap, OverlayStyle};
pub use sink::{each_sink, PngSink, Sink, SinkError, TensorBoardSink};
