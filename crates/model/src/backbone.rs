//! The backbones: [`BackboneKind`], the one list of architectures with their layer names, and
//! [`Backbone`], a loaded network of either kind with its layers addressed by index.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::efficientnet::{self, EfficientNetLite0};
use crate::head::HeadKind;
use crate::vgg16::{self, Vgg16, VGG16_LAYERS};
use crate::weights::WeightFile;
use crate::ModelError;

/// The backbones, with named layers.
// One backbone exists per process; the variants' size difference does not matter, and burn's
// Module derive does not see through a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    /// VGG16 `features` (Keras layer names).
    Vgg16(Vgg16),
    /// EfficientNet-Lite0 (`stem`, `block1` … `block16`, `head`).
    EfficientNetLite0(EfficientNetLite0),
}

/// Which backbone architecture: the one list of backbone names (configs, command line, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackboneKind {
    /// VGG16 `features` (torchvision weights).
    Vgg16,
    /// EfficientNet-Lite0 (lukemelas-named weights).
    EfficientNetLite0,
}

impl BackboneKind {
    /// Every backbone.
    pub const ALL: [BackboneKind; 2] = [BackboneKind::Vgg16, BackboneKind::EfficientNetLite0];

    /// All names, comma-separated (for messages).
    pub fn names() -> String {
        BackboneKind::ALL.map(BackboneKind::name).join(", ")
    }

    /// Layer names in order.
    pub fn layer_names(self) -> Vec<&'static str> {
        match self {
            BackboneKind::Vgg16 => VGG16_LAYERS.iter().map(|(n, _)| *n).collect(),
            BackboneKind::EfficientNetLite0 => efficientnet::layer_names(),
        }
    }

    /// Index of the layer called `name`.
    pub fn layer(self, name: &str) -> Result<usize, ModelError> {
        let names = self.layer_names();
        names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| ModelError::UnknownLayer {
                name: name.to_string(),
                known: names.join(", "),
            })
    }

    /// The layers a fine-tuning run can start training from (`[model] train_from`): layers
    /// with weights, up to the one a `head` head reads.
    pub fn trainable_layers(self, head: HeadKind) -> Vec<&'static str> {
        let names = self.layer_names();
        names[..=self.head_input(head)]
            .iter()
            .enumerate()
            .filter(|(index, _)| match self {
                BackboneKind::Vgg16 => matches!(VGG16_LAYERS[*index].1, vgg16::Op::Conv { .. }),
                BackboneKind::EfficientNetLite0 => true,
            })
            .map(|(_, name)| *name)
            .collect()
    }

    /// The layer a head of `kind` pools: VGG16 `block5_conv3` (gap-linear, the CAM paper's
    /// VGGnet-GAP) or `block5_pool` (gap-dense, the seed blog's model); EfficientNet `head`.
    pub fn head_input(self, kind: HeadKind) -> usize {
        let name = match (self, kind) {
            (BackboneKind::Vgg16, HeadKind::GapLinear) => "block5_conv3",
            (BackboneKind::Vgg16, HeadKind::GapDense) => "block5_pool",
            (BackboneKind::EfficientNetLite0, _) => "head",
        };
        let names = self.layer_names();
        self.layer(name).unwrap_or(names.len() - 1)
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Vgg16 => "vgg16",
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0",
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackboneKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        BackboneKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ModelError::UnknownBackbone(s.to_string()))
    }
}

impl Backbone {
    /// Load a backbone of this kind from a weight file (frozen: nothing trains).
    pub fn load(
        kind: BackboneKind,
        file: &WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Self::load_trainable(kind, file, None, device)
    }

    /// Load a backbone for fine-tuning: layers `train_from..` require gradients (for
    /// EfficientNet: their conv weights, with BatchNorm kept frozen beside them), the layers
    /// below do not. `None`: nothing trains (as [`load`](Self::load)).
    pub fn load_trainable(
        kind: BackboneKind,
        file: &WeightFile,
        train_from: Option<usize>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let backbone = match kind {
            BackboneKind::Vgg16 => Backbone::Vgg16(Vgg16::load(file, device)?),
            BackboneKind::EfficientNetLite0 => Backbone::EfficientNetLite0(
                EfficientNetLite0::load_trainable(file, train_from, device)?,
            ),
        };
        let mut backbone = backbone.set_require_grad(false);
        if let Some(from) = train_from {
            for index in from..backbone.layer_names().len() {
                backbone = match backbone {
                    Backbone::Vgg16(v) => Backbone::Vgg16(v.set_trainable(index, true)),
                    Backbone::EfficientNetLite0(e) => {
                        Backbone::EfficientNetLite0(e.set_trainable(index, true))
                    }
                };
            }
        }
        Ok(backbone)
    }

    /// The weights of layers `from..` under the weight file's keys (for EfficientNet the raw
    /// conv weights of the layers loaded by [`load_trainable`](Self::load_trainable)): what a
    /// fine-tuned backbone's weight file replaces in the original one.
    pub fn trained_weights(&self, from: usize) -> Vec<(String, burn::tensor::TensorData)> {
        (from..self.layer_names().len())
            .flat_map(|index| match self {
                Backbone::Vgg16(v) => v.layer_weights(index),
                Backbone::EfficientNetLite0(e) => e.raw_weights(index),
            })
            .collect()
    }

    /// Which architecture this is.
    pub fn kind(&self) -> BackboneKind {
        match self {
            Backbone::Vgg16(_) => BackboneKind::Vgg16,
            Backbone::EfficientNetLite0(_) => BackboneKind::EfficientNetLite0,
        }
    }

    /// The name used in configs.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Layer names in order.
    pub fn layer_names(&self) -> Vec<&'static str> {
        self.kind().layer_names()
    }

    /// Output channels of layer `index`.
    pub fn channels(&self, index: usize) -> usize {
        match self {
            Backbone::Vgg16(v) => vgg16::layer_channels(index, v.width_divisor()),
            Backbone::EfficientNetLite0(_) => efficientnet::layer_channels(index),
        }
    }

    /// The layer a head of `kind` pools (see [`BackboneKind::head_input`]).
    pub fn head_input(&self, kind: HeadKind) -> usize {
        self.kind().head_input(kind)
    }

    /// The blocks, top first, with their layer indices: the order of a cascading
    /// randomisation (Adebayo et al. 2018). VGG16 `block5` … `block1`; EfficientNet `head`,
    /// `block16` … `block1`, `stem`.
    pub fn blocks(&self) -> Vec<(String, Vec<usize>)> {
        let mut blocks: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, name) in self.layer_names().into_iter().enumerate() {
            let block = name.split('_').next().unwrap_or(name).to_string();
            match blocks.last_mut() {
                Some((last, layers)) if *last == block => layers.push(index),
                _ => blocks.push((block, vec![index])),
            }
        }
        blocks.reverse();
        blocks
    }

    /// Replace the weights of layer `index` (if it has any) with a fresh He-normal
    /// initialisation (zero biases), drawn from the device's random generator.
    pub fn reinitialize(&mut self, index: usize) {
        match self {
            Backbone::Vgg16(v) => v.reinitialize(index),
            Backbone::EfficientNetLite0(e) => e.reinitialize(index),
        }
    }

    /// Run layers `start..=end` on `x` (the input of layer `start`).
    pub fn run(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        match self {
            Backbone::Vgg16(v) => v.run(x, start, end),
            Backbone::EfficientNetLite0(e) => e.run(x, start, end),
        }
    }
}
