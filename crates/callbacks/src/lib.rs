//! Explanations of a classifier's decisions, and (later) the per-epoch loggers that record them.
//!
//! - [`cam`]: the engine — CAM, Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM and XGradCAM on one
//!   batched pipeline with pytorch-grad-cam's normalisation.
//! - [`render`]: colormaps (OpenCV's JET exactly, Turbo, Viridis) and overlays.

pub mod cam;
pub mod render;

pub use cam::{
    check_method, explain, explain_activations, normalize_maps, CamMethod, ExplainError,
    Explanation, Method, Target,
};
pub use render::{colorize, overlay, Colormap, OverlayStyle};
