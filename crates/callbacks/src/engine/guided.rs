//! Guided backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al.
//! 2017), as pytorch-grad-cam: the gradient of the target score with respect to the input
//! image, where every ReLU passes gradient only where its input is > 0 **and** the incoming
//! gradient is > 0. The result is the raw [N, 3, H, W] tensor, not a map.
//!
//! The backward pass runs layer by layer: the head by hand (its ReLU guided), global average
//! pooling spread evenly, then each backbone layer through burn's autodiff from that layer's
//! recorded input. A VGG layer is a convolution followed by ReLU: feeding its backward ReLU(g)
//! instead of g gives exactly g·(z > 0)·(g > 0) before the convolution's backward, i.e. the
//! guided ReLU. Max-pooling routes to the arg-max, unchanged. EfficientNet-Lite0's activations
//! are ReLU6 — not ReLUs, which pytorch-grad-cam leaves alone too — so its backbone passes the
//! plain gradient and only the dense head's ReLU is guided.

use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor};
use model::vgg16::{Op, VGG16_LAYERS};
use model::{Backbone, Explainable};

use crate::engine::method::Method;
use crate::engine::pipeline::{
    check_images, check_target, explain_with, target_classes, target_weights, ExplainError,
    Options, Target,
};

/// Guided backpropagation of a batch.
pub struct GuidedExplanation {
    /// ∂y/∂input with guided ReLUs [N, 3, H, W] (raw; for Guided Grad-CAM, times the
    /// normalised Grad-CAM map).
    pub values: Tensor<4>,
    /// The model's logits [N, n].
    pub logits: Tensor<2>,
    /// The explained class per image [N].
    pub classes: Tensor<1, Int>,
}

/// Guided backpropagation of normalised images [N, 3, H, W] for `target`.
/// Only the project's classifiers ([`Explainable::as_classifier`]) say where their ReLUs are;
/// any other model is [`ExplainError::NotGuided`].
pub fn guided_backprop(
    model: &dyn Explainable,
    images: Tensor<4>,
    target: Target,
) -> Result<GuidedExplanation, ExplainError> {
    check_images(model, &images)?;
    // A ResNet's ReLUs after its residual sums are not walked layer by layer here.
    let model = model
        .as_classifier()
        .filter(|c| !matches!(c.backbone, Backbone::ResNet(_)))
        .ok_or(ExplainError::NotGuided)?;
    let n = images.dims()[0];
    let head_input = model.head_input();
    // Each layer's input, forward (no autodiff: the fast path).
    let mut inputs = vec![images.without_autodiff()];
    for layer in 0..=head_input {
        let x = inputs[layer].clone();
        inputs.push(model.backbone.run(x, layer, layer));
    }
    let features = inputs.pop().expect("the head's input");
    let [_, c, h, w] = features.dims();
    let pooled = model::global_average_pool(features);
    let logits = model.head.forward_pooled(pooled.clone());
    check_target(&logits, target)?;
    let targets = target_weights(logits.clone(), target);
    // The head by hand: logits = fc2(ReLU(fc1(p))) or fc1(p); burn's Linear weight is [in, out].
    let grad_pooled = match &model.head.fc2 {
        Some(fc2) => {
            let hidden = model.head.fc1.forward(pooled);
            let grad_hidden = targets.clone().matmul(fc2.weight.val().transpose());
            let guided = relu(grad_hidden) * hidden.greater_elem(0.0).float();
            guided.matmul(model.head.fc1.weight.val().transpose())
        }
        None => targets
            .clone()
            .matmul(model.head.fc1.weight.val().transpose()),
    };
    let mut grad = (grad_pooled / (h * w) as f32)
        .reshape([n, c, 1, 1])
        .expand([n, c, h, w]);
    for layer in (0..=head_input).rev() {
        let relu_layer = matches!(
            (&model.backbone, &VGG16_LAYERS.get(layer)),
            (Backbone::Vgg16(_), Some((_, Op::Conv { .. })))
        );
        let incoming = if relu_layer { relu(grad) } else { grad };
        let leaf = inputs[layer].clone().autodiff().require_grad();
        let out = model.backbone.run(leaf.clone(), layer, layer);
        let grads = (out * incoming.autodiff()).sum().backward();
        grad = leaf
            .grad(&grads)
            .ok_or_else(|| ExplainError::NoInputGradient {
                layer: model.layer_name(layer).to_string(),
            })?;
    }
    Ok(GuidedExplanation {
        values: grad,
        logits,
        classes: target_classes(targets),
    })
}

/// Guided Grad-CAM: guided backpropagation times the normalised Grad-CAM map of `layer`,
/// broadcast over the 3 channels.
pub fn guided_gradcam(
    model: &dyn Explainable,
    images: Tensor<4>,
    layer: &str,
    target: Target,
) -> Result<GuidedExplanation, ExplainError> {
    let guided = guided_backprop(model, images.clone(), target)?;
    let gradcam = explain_with(
        model,
        images,
        layer,
        Method::GradCam,
        Options::target(target),
    )?;
    let [n, h, w] = gradcam.maps.dims();
    let values = guided.values * gradcam.maps.reshape([n, 1, h, w]);
    Ok(GuidedExplanation { values, ..guided })
}
