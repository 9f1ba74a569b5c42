//! What the engine is asked ([`Target`], [`Options`]) and what each method gets to compute its
//! terms ([`MapInputs`]).

use burn::tensor::Tensor;
use model::Explainable;

use crate::engine::error::ExplainError;

/// Small constant of pytorch-grad-cam's normaliser and weight formulas.
pub const EPS: f32 = 1e-7;

/// What each image's map explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The class the model predicts for that image (a single sigmoid logit predicts class 1,
    /// "dog", when the logit is ≥ 0, else class 0, "cat").
    #[default]
    Predicted,
    /// A fixed class for every image.
    Class(usize),
}

/// How to explain: which class, and pytorch-grad-cam's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// What each image's map explains.
    pub target: Target,
    /// The first principal component of the method's terms instead of their sum.
    pub eigen_smooth: bool,
    /// Average the maps of 6 augmented inputs (needs the images).
    pub aug_smooth: bool,
    /// Seed of the `random` baseline.
    pub seed: u64,
}

impl Options {
    /// Default options for `target`.
    pub fn target(target: Target) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }
}

/// What a method gets to compute its terms.
pub struct MapInputs<'a> {
    /// The explained layer's activations A [N, C, h, w].
    pub activations: Tensor<4>,
    /// ∂y/∂A [N, C, h, w] where y is the target score (`None` for methods that need none).
    pub gradients: Option<Tensor<4>>,
    /// The head's weights for the target class per image [N, C]: the CAM weights. Present
    /// only for a gap-linear head explained at the layer it pools.
    pub class_weights: Option<Tensor<2>>,
    /// The target score's weights per image t [N, n]: y = Σ_j t_j·logit_j.
    pub target_weights: Tensor<2>,
    /// The normalised input images [N, 3, H, W], when the caller has them.
    pub images: Option<Tensor<4>>,
    /// The model, for methods that run part of it again.
    pub model: &'a dyn Explainable,
    /// The explained layer's index in the model's [`Explainable::layer_names`].
    pub layer_index: usize,
    /// Seed of the `random` baseline.
    pub seed: u64,
}

impl MapInputs<'_> {
    /// ∂y/∂A. The engine never calls a method that needs gradients without them (it returns
    /// [`ExplainError::MissingGradients`] instead); a direct call without them panics rather
    /// than read the gradient as zero, which would give a blank map that looks like a result.
    pub(crate) fn gradients(&self) -> Tensor<4> {
        self.gradients
            .clone()
            .expect("a gradient method was called with no gradients (MapInputs::gradients is None)")
    }

    /// The activations as host floats, [N, C, h, w] row-major.
    pub(crate) fn activations_on_host(&self) -> Vec<f32> {
        host_values(self.activations.clone(), "activations").unwrap_or_default()
    }
}

/// A tensor's values on the host as f32.
pub(crate) fn host_values<const D: usize>(
    t: Tensor<D>,
    what: &'static str,
) -> Result<Vec<f32>, ExplainError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ExplainError::Data {
            what,
            message: format!("{e:?}"),
        })
}
