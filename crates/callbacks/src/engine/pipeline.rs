//! The explanation engine: every method on one pipeline, as in pytorch-grad-cam's `BaseCAM`:
//!
//! ```text
//! images ─► backbone to `layer` ─► activations A ─► logits ─► target score y = Σ t·logits
//!                                       │                         │ (backward, gradient methods only)
//!                                       ▼                         ▼
//!                     method.terms(A, ∂y/∂A, class weights, …) = terms [N,C,h,w]
//!                                       ▼
//!                  Σ over channels, or first principal component (EigenCAM, eigen_smooth)
//!                                       ▼
//!                    ReLU → min-max → bilinear resize (half-pixel) → min-max = maps [N,H,W]
//! ```
//!
//! Each method implements one function, [`CamMethod::terms`] (in [`crate::engine::methods`]); most are
//! channel weights times the activations. Everything stays on the model's device, batched. A
//! method whose input is missing (a gradient from a broken autodiff graph, the images for
//! Score-CAM) is an error, never a blank map. `aug_smooth` averages the maps of 6 augmented
//! inputs (horizontal flip × brightness 0.9, 1, 1.1), each flipped back, as pytorch-grad-cam.

use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor};
use model::Explainable;

pub use crate::engine::error::ExplainError;
pub use crate::engine::inputs::{MapInputs, Options, Target, EPS};
pub use crate::engine::method::Method;
pub use crate::engine::methods::{CamMethod, Reduction};
use crate::engine::projection::first_principal_component;

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
    model: &dyn Explainable,
    images: Tensor<4>,
    layer: &str,
    method: Method,
    target: Target,
) -> Result<Explanation, ExplainError> {
    explain_with(model, images, layer, method, Options::target(target))
}

/// [`explain`] with pytorch-grad-cam's options (`eigen_smooth`, `aug_smooth`, the seed).
pub fn explain_with(
    model: &dyn Explainable,
    images: Tensor<4>,
    layer: &str,
    method: Method,
    options: Options,
) -> Result<Explanation, ExplainError> {
    let size = check_images(model, &images)?;
    let index = check_method(model, layer, method)?;
    let images = images.without_autodiff();
    let activations = model.activations(images.clone(), index);
    let plain = Options {
        aug_smooth: false,
        ..options
    };
    let out = pipeline(
        model,
        layer,
        activations,
        size,
        method,
        plain,
        Some(images.clone()),
        None,
    )?;
    if !options.aug_smooth {
        return Ok(out);
    }
    // pytorch-grad-cam's aug_smooth: HorizontalFlip × Multiply(0.9, 1, 1.1); each map flipped
    // back, the 6 averaged (no renormalisation). Every copy explains the un-augmented target.
    // The un-flipped copy at brightness 1 is the plain pass above: its maps are reused.
    let targets = target_weights(out.logits.clone(), options.target);
    let mut sum = out.maps.zeros_like();
    for flip in [false, true] {
        for factor in [0.9, 1.0, 1.1] {
            if !flip && factor == 1.0 {
                sum = sum + out.maps.clone();
                continue;
            }
            let flipped = if flip {
                images.clone().flip([3])
            } else {
                images.clone()
            };
            let augmented = flipped * factor;
            let activations = model.activations(augmented.clone(), index);
            let maps = pipeline(
                model,
                layer,
                activations,
                size,
                method,
                plain,
                Some(augmented),
                Some(targets.clone()),
            )?
            .maps;
            sum = sum + if flip { maps.flip([2]) } else { maps };
        }
    }
    Ok(Explanation {
        maps: sum / 6.0,
        ..out
    })
}

/// Check a batch of images [N, 3, H, W]: not empty, a size the backbone takes; its [H, W].
pub(crate) fn check_images(
    model: &dyn Explainable,
    images: &Tensor<4>,
) -> Result<[usize; 2], ExplainError> {
    let [n, _, height, width] = images.dims();
    if n == 0 {
        return Err(ExplainError::Empty);
    }
    model.check_input_size(height, width)?;
    Ok([height, width])
}

/// Check that `target` names a class of `logits` [N, n] (a single logit has 2 classes).
pub(crate) fn check_target(logits: &Tensor<2>, target: Target) -> Result<(), ExplainError> {
    let classes = logits.dims()[1].max(2);
    match target {
        Target::Class(class) if class >= classes => Err(ExplainError::BadClass { class, classes }),
        _ => Ok(()),
    }
}

/// Check that `method` can explain `layer` of `model`; the layer's index.
pub fn check_method(
    model: &dyn Explainable,
    layer: &str,
    method: Method,
) -> Result<usize, ExplainError> {
    let index = model.layer(layer)?;
    if method == Method::Cam && model.cam_weights(index).is_none() {
        return Err(ExplainError::CamNeedsGapLinear {
            layer: layer.to_string(),
            hint: model.cam_hint(),
        });
    }
    Ok(index)
}

/// Explain from already computed (e.g. cached) activations of `layer` [N, C, h, w]; the maps
/// are resized to `size` = [H, W], the images' size. The backbone up to `layer` is not run.
pub fn explain_activations(
    model: &dyn Explainable,
    layer: &str,
    activations: Tensor<4>,
    size: [usize; 2],
    method: Method,
    target: Target,
) -> Result<Explanation, ExplainError> {
    explain_activations_with(
        model,
        layer,
        activations,
        size,
        method,
        Options::target(target),
    )
}

/// [`explain_activations`] with options. Score-CAM and `aug_smooth` run the whole network on
/// changed images, so they are [`ExplainError::NeedsImages`] here: use [`explain_with`].
pub fn explain_activations_with(
    model: &dyn Explainable,
    layer: &str,
    activations: Tensor<4>,
    size: [usize; 2],
    method: Method,
    options: Options,
) -> Result<Explanation, ExplainError> {
    if options.aug_smooth {
        return Err(ExplainError::NeedsImages {
            what: "aug_smooth".into(),
            layer: layer.into(),
        });
    }
    pipeline(model, layer, activations, size, method, options, None, None)
}

/// The shared pipeline. `targets` fixes the target weights (aug_smooth's copies explain the
/// original images' targets); otherwise they come from `options.target` and the logits.
#[allow(clippy::too_many_arguments)]
fn pipeline(
    model: &dyn Explainable,
    layer: &str,
    activations: Tensor<4>,
    size: [usize; 2],
    method: Method,
    options: Options,
    images: Option<Tensor<4>>,
    targets: Option<Tensor<2>>,
) -> Result<Explanation, ExplainError> {
    let dims = activations.dims();
    if dims[0] == 0 {
        return Err(ExplainError::Empty);
    }
    if dims.contains(&0) {
        return Err(ExplainError::EmptyLayer {
            layer: layer.into(),
            dims,
        });
    }
    let index = check_method(model, layer, method)?;
    let implementation = method.implementation();
    if implementation.needs_images() && images.is_none() {
        return Err(ExplainError::NeedsImages {
            what: method.name().into(),
            layer: layer.into(),
        });
    }
    let activations = activations.without_autodiff();
    let targets_for = |logits: Tensor<2>| {
        targets
            .clone()
            .unwrap_or_else(|| target_weights(logits, options.target))
    };

    let (logits, gradients, target_weights) = if implementation.needs_gradients() {
        let leaf = activations.clone().autodiff().require_grad();
        let logits = model.logits_from(index, leaf.clone());
        check_target(&logits, options.target)?;
        let target_weights = targets_for(logits.clone().without_autodiff());
        let score = (logits.clone() * target_weights.clone()).sum();
        let grads = score.backward();
        // `None` when the graph is broken: `raw_map` turns that into an error.
        let gradients = leaf.grad(&grads);
        (logits.without_autodiff(), gradients, target_weights)
    } else {
        let logits = model.logits_from(index, activations.clone());
        check_target(&logits, options.target)?;
        let target_weights = targets_for(logits.clone());
        (logits, None, target_weights)
    };

    // CAM weights per image: t [N, n] · Wᵀ, W = the linear head's weight [C, n].
    let class_weights = model
        .cam_weights(index)
        .map(|weight| target_weights.clone().matmul(weight.transpose()));
    let inputs = MapInputs {
        activations,
        gradients,
        class_weights,
        target_weights: target_weights.clone(),
        images,
        model,
        layer_index: index,
        seed: options.seed,
    };
    let raw = raw_map(method, layer, &inputs, options.eigen_smooth)?;
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

/// `method`'s raw map of `layer` [N, h, w]: its terms summed over channels, or projected on
/// their first principal component (the eigen methods, or any method with `eigen_smooth`). A
/// method that needs gradients and has none is [`ExplainError::MissingGradients`], never a
/// blank map.
fn raw_map(
    method: Method,
    layer: &str,
    inputs: &MapInputs,
    eigen_smooth: bool,
) -> Result<Tensor<3>, ExplainError> {
    let implementation = method.implementation();
    if implementation.needs_gradients() && inputs.gradients.is_none() {
        return Err(ExplainError::MissingGradients {
            method,
            layer: layer.to_string(),
        });
    }
    let terms = implementation.terms(inputs);
    match (implementation.reduction(), eigen_smooth) {
        (Reduction::Sum, false) => Ok(terms.sum_dim(1).squeeze_dim(1)),
        _ => first_principal_component(terms),
    }
}

/// The target score's weights t [N, n]: y = Σ_j t_j·logit_j. One-hot for softmax heads; ±1 for
/// a single sigmoid logit (+logit explains class 1, −logit class 0).
pub(crate) fn target_weights(logits: Tensor<2>, target: Target) -> Tensor<2> {
    // In the logits' float type (float64 when `train explain` runs a ResNet so).
    let dtype = logits.dtype();
    target_weights_f32(logits, target).cast(dtype)
}

fn target_weights_f32(logits: Tensor<2>, target: Target) -> Tensor<2> {
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
pub(crate) fn target_classes(target_weights: Tensor<2>) -> Tensor<1, Int> {
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
    fn inputs_without_gradients() -> MapInputs<'static> {
        let device = Device::flex();
        let model: &'static model::Classifier = Box::leak(Box::new(model::Classifier {
            backbone: model::Backbone::Vgg16(model::Vgg16::random(64, &device)),
            head: model::Head::new(model::HeadKind::GapLinear, 8, 1, &device),
        }));
        MapInputs {
            activations: Tensor::ones([2, 3, 4, 5], &device),
            gradients: None,
            class_weights: Some(Tensor::ones([2, 3], &device)),
            target_weights: Tensor::ones([2, 1], &device),
            images: None,
            model,
            layer_index: 0,
            seed: 0,
        }
    }

    #[test]
    fn a_missing_gradient_is_an_error_naming_method_and_layer() {
        let inputs = inputs_without_gradients();
        let gradient_methods = Method::ALL
            .into_iter()
            .filter(|m| m.implementation().needs_gradients());
        assert_eq!(gradient_methods.clone().count(), 7);
        for method in gradient_methods {
            for eigen_smooth in [false, true] {
                let result = raw_map(method, "block4_conv3", &inputs, eigen_smooth);
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
        // CAM reads the head's weights, not gradients.
        let cam = raw_map(Method::Cam, "block5_conv3", &inputs, false);
        assert_eq!(cam.unwrap().dims(), [2, 4, 5]);
    }

    #[test]
    #[should_panic(expected = "called with no gradients")]
    fn a_gradient_method_never_reads_a_missing_gradient_as_zero() {
        // Before the fix this returned an all-zero raw map, i.e. a blank explanation.
        let _ = crate::engine::methods::GradCam.terms(&inputs_without_gradients());
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        assert_eq!("GradCAMpp".parse::<Method>(), Ok(Method::GradCamPlusPlus));
        assert_eq!(
            "GradCAMElementWise".parse::<Method>(),
            Ok(Method::GradCamElementWise)
        );
        assert!("guided-gradcam".parse::<Method>().is_err());
    }
}
