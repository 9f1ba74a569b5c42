//! The explanation engine's error: what was asked, and why it cannot be explained.

use model::ModelError;

use crate::engine::method::Method;

/// An error from the explanation engine.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The layer or input does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// CAM reads the weights of a linear head at the layer that head pools.
    #[error(
        "CAM needs {hint}; `{layer}` is not read that way by this model (use gradcam, which \
         works with any head and layer)"
    )]
    CamNeedsGapLinear {
        /// The layer asked for.
        layer: String,
        /// Where the model allows CAM ([`model::Explainable::cam_hint`]).
        hint: String,
    },
    /// The requested class does not exist.
    #[error("class {class} does not exist: the head has {classes} classes")]
    BadClass {
        /// The class asked for.
        class: usize,
        /// Number of classes (2 for a single sigmoid logit).
        classes: usize,
    },
    /// The batch is empty.
    #[error("no images to explain")]
    Empty,
    /// A gradient method got no gradient at its layer: the target score does not reach the
    /// layer through the autodiff graph. Reading the gradient as zero would give blank maps.
    #[error(
        "{method} at `{layer}` got no gradient: the autodiff graph from the layer to the target \
         score is broken (refusing to return a blank map)"
    )]
    MissingGradients {
        /// The method that needs the gradient.
        method: Method,
        /// The layer explained.
        layer: String,
    },
    /// The method (or `aug_smooth`) runs the whole network on the input images, and only
    /// cached activations were given.
    #[error(
        "{what} needs the input images (it runs the whole network on changed copies of them), \
         but only cached activations of `{layer}` were given"
    )]
    NeedsImages {
        /// The method, or `aug_smooth`.
        what: String,
        /// The layer explained.
        layer: String,
    },
    /// The layer's activations have no channel or no pixel.
    #[error("`{layer}` gave empty activations {dims:?} [N, C, h, w]: nothing to explain")]
    EmptyLayer {
        /// The layer explained.
        layer: String,
        /// Its activations' shape.
        dims: [usize; 4],
    },
    /// Guided backpropagation got no gradient through a layer (a broken autodiff graph).
    #[error("guided backpropagation got no gradient through `{layer}` (refusing to return zeros)")]
    NoInputGradient {
        /// The layer the gradient did not pass.
        layer: String,
    },
    /// Guided backpropagation asked of a model that does not say where its ReLUs are.
    #[error(
        "guided backpropagation needs to know where every ReLU of the network is: only VGG16 and \
         EfficientNet-Lite0 say so (not a ResNet, nor a model of your own); use gradcam or \
         another map method"
    )]
    NotGuided,
    /// A tensor could not be read back from the device as f32.
    #[error("cannot read {what} back as f32: {message}")]
    Data {
        /// What was being read.
        what: &'static str,
        /// The backend's message.
        message: String,
    },
}
