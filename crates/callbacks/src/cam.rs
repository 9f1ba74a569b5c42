//! The explanation engine: CAM and the Grad-CAM family on one pipeline, as in
//! pytorch-grad-cam's `BaseCAM`:
//!
//! ```text
//! images ─► backbone to `layer` ─► activations A ─► logits ─► target score y = Σ t·logits
//!                                       │                         │ (backward, gradient methods only)
//!                                       ▼                         ▼
//!                           method.map(A, ∂y/∂A, class weights) = raw map [N,h,w]
//!                                       ▼
//!                    ReLU → min-max → bilinear resize (half-pixel) → min-max = maps [N,H,W]
//! ```
//!
//! Each method implements one function, [`CamMethod::map`]; most are a weighted sum of
//! activation channels (see [`weighted_sum`]). Everything stays on the model's device, batched.
//! A gradient method whose gradient is missing (a broken autodiff graph) is an error,
//! [`ExplainError::MissingGradients`], never a blank map.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use model::{Classifier, HeadKind, ModelError};

/// Small constant of pytorch-grad-cam's normaliser and weight formulas.
pub const EPS: f32 = 1e-7;

/// An error from the explanation engine.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The layer or input does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// CAM reads the weights of a gap-linear head at the layer that head pools.
    #[error(
        "CAM needs a gap-linear head explained at the layer it pools ({head_input}); got the \
         {head} head at `{layer}` (use gradcam, which works with any head and layer)"
    )]
    CamNeedsGapLinear {
        /// The model's head.
        head: HeadKind,
        /// The layer asked for.
        layer: String,
        /// The layer the head pools.
        head_input: String,
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
}

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

/// What a method gets to compute its raw map.
pub struct MapInputs {
    /// The explained layer's activations A [N, C, h, w].
    pub activations: Tensor<4>,
    /// ∂y/∂A [N, C, h, w] where y is the target logit (`None` for methods that need none).
    pub gradients: Option<Tensor<4>>,
    /// The head's weights for the target class per image [N, C]: the CAM weights. Present
    /// only for a gap-linear head explained at the layer it pools.
    pub class_weights: Option<Tensor<2>>,
}

impl MapInputs {
    /// ∂y/∂A. The engine never calls a method that needs gradients without them (it returns
    /// [`ExplainError::MissingGradients`] instead); a direct call without them panics rather
    /// than read the gradient as zero, which would give a blank map that looks like a result.
    fn gradients(&self) -> Tensor<4> {
        self.gradients
            .clone()
            .expect("a gradient method was called with no gradients (MapInputs::gradients is None)")
    }
}

/// One explanation method: a single function from activations (and gradients) to a raw map.
pub trait CamMethod {
    /// The raw map [N, h, w], before the pipeline's ReLU and normalisation.
    ///
    /// # Panics
    /// When [`needs_gradients`](Self::needs_gradients) is true and `inputs.gradients` is
    /// `None`; the engine checks this first and returns [`ExplainError::MissingGradients`].
    fn map(&self, inputs: &MapInputs) -> Tensor<3>;

    /// Whether [`map`](Self::map) reads gradients (CAM does not).
    fn needs_gradients(&self) -> bool {
        true
    }
}

/// Σ_k w[n,k]·A[n,k] : weights [N, C], activations [N, C, h, w] → [N, h, w].
pub fn weighted_sum(weights: Tensor<2>, activations: Tensor<4>) -> Tensor<3> {
    let [n, c] = weights.dims();
    (weights.reshape([n, c, 1, 1]) * activations)
        .sum_dim(1)
        .squeeze_dim(1)
}

/// Σ over h, w: [N, C, h, w] → [N, C].
fn spatial_sum(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.sum_dim(3).sum_dim(2).reshape([n, c])
}

/// CAM (Zhou et al. 2016): the head's class weights times the pooled layer's channels.
pub struct Cam;
impl CamMethod for Cam {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        // `explain` refuses CAM unless the class weights exist.
        let [n, c, _, _] = x.activations.dims();
        let weights = x.class_weights.clone();
        let weights = weights.unwrap_or_else(|| Tensor::zeros([n, c], &x.activations.device()));
        weighted_sum(weights, x.activations.clone())
    }
    fn needs_gradients(&self) -> bool {
        false
    }
}

/// Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient.
pub struct GradCam;
impl CamMethod for GradCam {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        let [_, _, h, w] = x.activations.dims();
        let weights = spatial_sum(x.gradients()) / (h * w) as f32;
        weighted_sum(weights, x.activations.clone())
    }
}

/// Grad-CAM++ (Chattopadhay et al. 2018), pytorch-grad-cam's closed form:
/// α = g² / (2g² + ΣA·g³ + 1e-6), weights = Σ_ij ReLU(g)·α.
pub struct GradCamPlusPlus;

/// The ε of pytorch-grad-cam's Grad-CAM++ denominator (it matters: squared gradients are small).
const GRADCAM_PP_EPS: f32 = 1e-6;
impl CamMethod for GradCamPlusPlus {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        let [n, c, _, _] = x.activations.dims();
        let g = x.gradients();
        let g2 = g.clone().powi_scalar(2);
        let g3 = g2.clone() * g.clone();
        let sum_a = spatial_sum(x.activations.clone()).reshape([n, c, 1, 1]);
        let alpha = g2.clone() / (g2 * 2.0 + sum_a * g3 + GRADCAM_PP_EPS);
        let alpha = alpha.mask_fill(g.clone().equal_elem(0.0), 0.0);
        weighted_sum(spatial_sum(relu(g) * alpha), x.activations.clone())
    }
}

/// XGradCAM (Fu et al. 2020): weights = Σ_ij g·A / (Σ_ij A + ε).
pub struct XGradCam;
impl CamMethod for XGradCam {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        let [n, c, _, _] = x.activations.dims();
        let a = x.activations.clone();
        let sum_a = spatial_sum(a.clone()).reshape([n, c, 1, 1]);
        let weights = spatial_sum(x.gradients() * a.clone() / (sum_a + EPS));
        weighted_sum(weights, a)
    }
}

/// LayerCAM (Jiang et al. 2021): Σ_k ReLU(g_k)⊙A_k, element-wise.
pub struct LayerCam;
impl CamMethod for LayerCam {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        (relu(x.gradients()) * x.activations.clone())
            .sum_dim(1)
            .squeeze_dim(1)
    }
}

/// HiResCAM (Draelos & Carin 2020): Σ_k g_k⊙A_k, element-wise.
pub struct HiResCam;
impl CamMethod for HiResCam {
    fn map(&self, x: &MapInputs) -> Tensor<3> {
        (x.gradients() * x.activations.clone())
            .sum_dim(1)
            .squeeze_dim(1)
    }
}

/// The methods by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Cam`].
    Cam,
    /// [`GradCam`].
    GradCam,
    /// [`GradCamPlusPlus`].
    GradCamPlusPlus,
    /// [`LayerCam`].
    LayerCam,
    /// [`HiResCam`].
    HiResCam,
    /// [`XGradCam`].
    XGradCam,
}

impl Method {
    /// Every method, in a stable order.
    pub const ALL: [Method; 6] = [
        Method::Cam,
        Method::GradCam,
        Method::GradCamPlusPlus,
        Method::LayerCam,
        Method::HiResCam,
        Method::XGradCam,
    ];

    /// The name used in configs, on the command line and in log tags.
    pub fn name(self) -> &'static str {
        match self {
            Method::Cam => "cam",
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
            Method::LayerCam => "layercam",
            Method::HiResCam => "hirescam",
            Method::XGradCam => "xgradcam",
        }
    }

    /// The implementation.
    pub fn implementation(self) -> &'static dyn CamMethod {
        match self {
            Method::Cam => &Cam,
            Method::GradCam => &GradCam,
            Method::GradCamPlusPlus => &GradCamPlusPlus,
            Method::LayerCam => &LayerCam,
            Method::HiResCam => &HiResCam,
            Method::XGradCam => &XGradCam,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let key = match lower.as_str() {
            "gradcampp" | "gradcam-plus-plus" => "gradcam++",
            other => other,
        };
        Method::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown method `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// The result of explaining a batch; all tensors on the model's device.
pub struct Explanation {
    /// Normalised maps [N, H, W] in [0, 1], at the input's resolution.
    pub maps: Tensor<3>,
    /// Raw maps [N, h, w] at the layer's resolution, before ReLU and normalisation.
    pub raw: Tensor<3>,
    /// The model's logits [N, n].
    pub logits: Tensor<2>,
    /// The explained class per image [N].
    pub classes: Tensor<1, Int>,
    /// ∂y/∂A at the explained layer [N, C, h, w] (`None` for CAM, which needs none).
    pub gradients: Option<Tensor<4>>,
}

/// Explain a batch of normalised images [N, 3, H, W] with `method` at `layer`.
pub fn explain(
    model: &Classifier,
    images: Tensor<4>,
    layer: &str,
    method: Method,
    target: Target,
) -> Result<Explanation, ExplainError> {
    let [n, _, height, width] = images.dims();
    if n == 0 {
        return Err(ExplainError::Empty);
    }
    Classifier::check_input_size(height, width)?;
    let index = check_method(model, layer, method)?;
    let activations = model.activations(images.without_autodiff(), index);
    explain_activations(model, layer, activations, [height, width], method, target)
}

/// Check that `method` can explain `layer` of `model`; the layer's index.
pub fn check_method(
    model: &Classifier,
    layer: &str,
    method: Method,
) -> Result<usize, ExplainError> {
    let index = model.explainable_layer(layer)?;
    if method == Method::Cam
        && (model.head.kind() != HeadKind::GapLinear || index != model.head_input())
    {
        return Err(ExplainError::CamNeedsGapLinear {
            head: model.head.kind(),
            layer: layer.to_string(),
            head_input: model.layer_name(model.head_input()).to_string(),
        });
    }
    Ok(index)
}

/// Explain from already computed (e.g. cached) activations of `layer` [N, C, h, w]; the maps
/// are resized to `size` = [H, W], the images' size. The backbone up to `layer` is not run.
pub fn explain_activations(
    model: &Classifier,
    layer: &str,
    activations: Tensor<4>,
    size: [usize; 2],
    method: Method,
    target: Target,
) -> Result<Explanation, ExplainError> {
    if activations.dims()[0] == 0 {
        return Err(ExplainError::Empty);
    }
    let index = check_method(model, layer, method)?;
    let classes = model.head.num_classes();
    if let Target::Class(class) = target {
        if class >= classes.max(2) {
            return Err(ExplainError::BadClass {
                class,
                classes: classes.max(2),
            });
        }
    }
    // Explanations never train anything: work on a copy without autodiff.
    let model = model.clone().valid();
    let activations = activations.without_autodiff();

    let (logits, gradients, target_weights) = if method.implementation().needs_gradients() {
        let leaf = activations.clone().autodiff().require_grad();
        let logits = model.logits_from(index, leaf.clone());
        let target_weights = target_weights(logits.clone().without_autodiff(), target);
        let score = (logits.clone() * target_weights.clone()).sum();
        let grads = score.backward();
        // `None` when the graph is broken: `raw_map` turns that into an error.
        let gradients = leaf.grad(&grads);
        (logits.without_autodiff(), gradients, target_weights)
    } else {
        let logits = model.logits_from(index, activations.clone());
        let target_weights = target_weights(logits.clone(), target);
        (logits, None, target_weights)
    };

    // CAM weights per image: t [N, n] · Wᵀ, W = the gap-linear head's weight [C, n].
    let class_weights = (model.head.kind() == HeadKind::GapLinear && index == model.head_input())
        .then(|| {
            target_weights
                .clone()
                .matmul(model.head.fc1.weight.val().transpose())
        });
    let inputs = MapInputs {
        activations,
        gradients,
        class_weights,
    };
    let raw = raw_map(method, layer, &inputs)?;
    let gradients = inputs.gradients;
    let maps = normalize_maps(raw.clone(), size);
    Ok(Explanation {
        maps,
        raw,
        logits,
        classes: target_classes(target_weights),
        gradients,
    })
}

/// `method`'s raw map of `layer` [N, h, w]; a method that needs gradients and has none is
/// [`ExplainError::MissingGradients`], never a blank map.
fn raw_map(method: Method, layer: &str, inputs: &MapInputs) -> Result<Tensor<3>, ExplainError> {
    let implementation = method.implementation();
    if implementation.needs_gradients() && inputs.gradients.is_none() {
        return Err(ExplainError::MissingGradients {
            method,
            layer: layer.to_string(),
        });
    }
    Ok(implementation.map(inputs))
}

/// The target score's weights t [N, n]: y = Σ_j t_j·logit_j. One-hot for softmax heads; ±1 for
/// a single sigmoid logit (+logit explains class 1, −logit class 0).
fn target_weights(logits: Tensor<2>, target: Target) -> Tensor<2> {
    let [n, classes] = logits.dims();
    let device = logits.device();
    if classes == 1 {
        let positive = match target {
            Target::Predicted => logits.greater_equal_elem(0.0).float(),
            Target::Class(c) => Tensor::full([n, 1], if c == 1 { 1.0 } else { 0.0 }, &device),
        };
        positive * 2.0 - 1.0
    } else {
        let class: Tensor<2, Int> = match target {
            Target::Predicted => logits.argmax(1),
            Target::Class(c) => Tensor::full([n, 1], c as i64, &device),
        };
        let ids = Tensor::<1, Int>::arange(0..classes as i64, &device).reshape([1, classes]);
        ids.equal(class).float()
    }
}

/// The class each row of target weights explains (inverse of [`target_weights`]).
fn target_classes(target_weights: Tensor<2>) -> Tensor<1, Int> {
    let [n, classes] = target_weights.dims();
    if classes == 1 {
        target_weights.greater_elem(0.0).int().reshape([n])
    } else {
        target_weights.argmax(1).reshape([n])
    }
}

/// pytorch-grad-cam's normaliser: ReLU → per-map min-max → bilinear resize to `size` with
/// half-pixel centres (`align_corners = false`) → min-max again. [N, h, w] → [N, H, W].
/// An all-zero map stays all-zero (no NaN).
pub fn normalize_maps(raw: Tensor<3>, size: [usize; 2]) -> Tensor<3> {
    let scaled = min_max(relu(raw)).unsqueeze_dim::<4>(1);
    let resized = interpolate(
        scaled,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(size),
    );
    min_max(resized.squeeze_dim(1))
}

/// Per map: (x − min) / (max(x − min) + 1e-7).
pub fn min_max(maps: Tensor<3>) -> Tensor<3> {
    let [n, h, w] = maps.dims();
    let flat = maps.reshape([n, h * w]);
    let shifted = flat.clone() - flat.min_dim(1);
    let max = shifted.clone().max_dim(1);
    (shifted / (max + EPS)).reshape([n, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec().unwrap()
    }

    #[test]
    fn all_zero_and_all_negative_maps_stay_zero() {
        let device = Device::flex();
        let raw = Tensor::<3>::from_data(
            TensorData::new(
                vec![0.0f32; 4].into_iter().chain([-1.0f32; 4]).collect(),
                [2, 2, 2],
            ),
            &device,
        );
        let maps = values(normalize_maps(raw, [64, 32]));
        assert_eq!(maps.len(), 2 * 64 * 32);
        assert!(maps.iter().all(|v| *v == 0.0), "expected zeros, no NaN");
    }

    #[test]
    fn normalised_maps_span_zero_to_one() {
        let device = Device::flex();
        let raw = Tensor::<3>::from_data(
            TensorData::new(vec![-3.0f32, 1.0, 2.0, 5.0], [1, 2, 2]),
            &device,
        );
        let maps = values(normalize_maps(raw, [32, 32]));
        let (min, max) = maps
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert_eq!(min, 0.0);
        assert!((max - 1.0).abs() < 1e-5, "{max}");
        // The largest raw value (bottom-right) is the hottest corner.
        assert!((maps[32 * 32 - 1] - 1.0).abs() < 1e-5);
    }

    /// Activations and CAM weights, but no gradients: what a broken autodiff graph gives.
    fn inputs_without_gradients() -> MapInputs {
        let device = Device::flex();
        MapInputs {
            activations: Tensor::ones([2, 3, 4, 5], &device),
            gradients: None,
            class_weights: Some(Tensor::ones([2, 3], &device)),
        }
    }

    #[test]
    fn a_missing_gradient_is_an_error_naming_method_and_layer() {
        let inputs = inputs_without_gradients();
        for method in Method::ALL {
            let result = raw_map(method, "block4_conv3", &inputs);
            if method == Method::Cam {
                // CAM reads the head's weights, not gradients.
                assert_eq!(result.unwrap().dims(), [2, 4, 5]);
                continue;
            }
            let err = result.err().unwrap_or_else(|| panic!("{method}: no error"));
            let message = err.to_string();
            assert!(
                matches!(&err, ExplainError::MissingGradients { method: m, layer }
                    if *m == method && layer == "block4_conv3"),
                "{method}: {message}"
            );
            assert!(
                message.starts_with(&format!("{method} at `block4_conv3` got no gradient")),
                "{message}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "called with no gradients")]
    fn a_gradient_method_never_reads_a_missing_gradient_as_zero() {
        // Before the fix this returned an all-zero raw map, i.e. a blank explanation.
        let _ = GradCam.map(&inputs_without_gradients());
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        assert_eq!("GradCAMpp".parse::<Method>(), Ok(Method::GradCamPlusPlus));
        assert!("scorecam".parse::<Method>().is_err());
    }
}
