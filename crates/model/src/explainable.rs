//! [`Explainable`]: what the explanation engine needs of a network, so that any burn model
//! (a project backbone with its head, a ResNet, your own CNN) can be explained and logged.
//!
//! Four required methods split the forward pass at a named layer; everything else has a
//! default. The engine's methods need only these: Grad-CAM and its family differentiate
//! [`logits_from`](Explainable::logits_from) with respect to the activations, Score-CAM,
//! Ablation-CAM, faithfulness and ROAD call [`forward`](Explainable::forward) or
//! [`logits_from`](Explainable::logits_from) on changed inputs.
//!
//! ```ignore
//! impl Explainable for MyCnn {
//!     fn layer_names(&self) -> Vec<String> { vec!["conv1".into(), "conv2".into()] }
//!     fn activations(&self, images: Tensor<4>, layer: usize) -> Tensor<4> {
//!         let x = self.conv1.forward(images).relu();
//!         if layer == 0 { x } else { self.conv2.forward(x).relu() }
//!     }
//!     fn logits_from(&self, layer: usize, a: Tensor<4>) -> Tensor<2> {
//!         let a = if layer == 0 { self.conv2.forward(a).relu() } else { a };
//!         self.fc.forward(global_average_pool(a))
//!     }
//!     fn forward(&self, images: Tensor<4>) -> Tensor<2> { self.logits_from(1, self.activations(images, 1)) }
//! }
//! ```

use burn::tensor::Tensor;

use crate::{imagenet_normalize, Classifier, ModelError};

/// A network the explanation engine can explain: named layers (in forward order), and the
/// forward pass split at any of them. Pass a model whose parameters are not tracked by autodiff
/// (`model.clone().valid()` of a model being trained): the engine differentiates with respect
/// to the activations only, and tracked parameters would make every call build their graph. A layer's index is its position in
/// [`layer_names`](Self::layer_names). Inputs are normalised images [N, 3, H, W] (see
/// [`normalize`](Self::normalize)); logits are [N, n] (a single logit is a sigmoid's: class 1
/// when ≥ 0).
pub trait Explainable {
    /// The layers that can be explained, in forward order.
    fn layer_names(&self) -> Vec<String>;

    /// The output of layer `layer` [N, C, h, w] for a normalised image batch.
    fn activations(&self, images: Tensor<4>, layer: usize) -> Tensor<4>;

    /// The logits [N, n] from the output of layer `layer`: the rest of the network. Must be
    /// differentiable with respect to `activations` (gradient methods backpropagate through it).
    fn logits_from(&self, layer: usize, activations: Tensor<4>) -> Tensor<2>;

    /// The logits [N, n] for a normalised image batch: the whole network.
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;

    /// The index of the layer called `name` (an error naming the known layers otherwise).
    fn layer(&self, name: &str) -> Result<usize, ModelError> {
        let names = self.layer_names();
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| ModelError::UnknownLayer {
                name: name.to_string(),
                known: names.join(", "),
            })
    }

    /// CAM's class weights: `Some(W)` [C, n] when the logits are `W`ᵀ·(global average pool of
    /// layer `layer`) + b, i.e. a linear head reads that layer's pooled output directly (the CAM
    /// architecture). `None` (the default) makes CAM refuse the layer; Grad-CAM explains any.
    fn cam_weights(&self, _layer: usize) -> Option<Tensor<2>> {
        None
    }

    /// Where CAM can be used, for the message when it is refused (e.g. "a gap-linear head at
    /// `block5_conv3`").
    fn cam_hint(&self) -> String {
        "a global-average-pool → linear head at the layer explained".to_string()
    }

    /// Check an input size [H, W] before running (default: any size).
    fn check_input_size(&self, _height: usize, _width: usize) -> Result<(), ModelError> {
        Ok(())
    }

    /// Normalise, in place, images stored as [N, 3, H, W] with values in [0, 1] (`plane` = H·W)
    /// into the model's input space: how the scores (faithfulness, ROAD) feed changed photos.
    /// Default: ImageNet mean and standard deviation.
    fn normalize(&self, values: &mut [f32], plane: usize) {
        imagenet_normalize(values, plane);
    }

    /// The project's own classifier, when this is one: guided backpropagation (which must know
    /// where every ReLU is) and recomputing a fine-tuning run's cut need its layer structure.
    /// Other models return `None` (the default), and those two features refuse them clearly.
    fn as_classifier(&self) -> Option<&Classifier> {
        None
    }
}

impl Explainable for Classifier {
    fn layer_names(&self) -> Vec<String> {
        // Only the layers the logits depend on (up to the one the head reads).
        let names = self.backbone.layer_names();
        names[..=self.head_input()]
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn activations(&self, images: Tensor<4>, layer: usize) -> Tensor<4> {
        Classifier::activations(self, images, layer)
    }

    fn logits_from(&self, layer: usize, activations: Tensor<4>) -> Tensor<2> {
        Classifier::logits_from(self, layer, activations)
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        Classifier::forward(self, images)
    }

    fn layer(&self, name: &str) -> Result<usize, ModelError> {
        self.explainable_layer(name)
    }

    fn cam_weights(&self, layer: usize) -> Option<Tensor<2>> {
        (self.head.kind() == crate::HeadKind::GapLinear && layer == self.head_input())
            .then(|| self.head.fc1.weight.val())
    }

    fn cam_hint(&self) -> String {
        format!(
            "a gap-linear head at the layer it pools, `{}`",
            self.layer_name(self.head_input())
        )
    }

    fn check_input_size(&self, height: usize, width: usize) -> Result<(), ModelError> {
        // A ResNet takes any size from 32 px (PyTorch's floor/ceil rules give a 1x1 layer4);
        // the others keep the multiples of 32 their pooling grid is aligned to.
        let side_ok = |s: usize| (32..=crate::MAX_INPUT_SIDE).contains(&s);
        match self.backbone {
            crate::Backbone::ResNet(_) if side_ok(height) && side_ok(width) => Ok(()),
            _ => Classifier::check_input_size(height, width),
        }
    }

    fn as_classifier(&self) -> Option<&Classifier> {
        Some(self)
    }
}
