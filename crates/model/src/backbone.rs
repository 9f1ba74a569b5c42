//! The backbones: [`BackboneKind`], the one list of architectures with their layer names, and
//! [`Backbone`], a loaded network of any kind with its layers addressed by index.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::efficientnet::{self, EfficientNetLite0};
use crate::head::HeadKind;
use crate::resnet::{Depth, ResNet};
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
    /// A torchvision ResNet (`conv1`, `maxpool`, `layer1.0` … `layer4.N`).
    ResNet(ResNet),
}

/// Which backbone architecture: the one list of backbone names (configs, command line, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackboneKind {
    /// VGG16 `features` (torchvision weights).
    Vgg16,
    /// EfficientNet-Lite0 (lukemelas-named weights).
    EfficientNetLite0,
    /// ResNet-18 (torchvision weights).
    ResNet18,
    /// ResNet-34.
    ResNet34,
    /// ResNet-50.
    ResNet50,
    /// ResNet-101.
    ResNet101,
    /// ResNet-152.
    ResNet152,
}

impl BackboneKind {
    /// Every backbone.
    pub const ALL: [BackboneKind; 7] = [
        BackboneKind::Vgg16,
        BackboneKind::EfficientNetLite0,
        BackboneKind::ResNet18,
        BackboneKind::ResNet34,
        BackboneKind::ResNet50,
        BackboneKind::ResNet101,
        BackboneKind::ResNet152,
    ];

    /// The ResNet depth of a ResNet kind.
    pub fn resnet_depth(self) -> Option<Depth> {
        let layers = match self {
            BackboneKind::ResNet18 => 18,
            BackboneKind::ResNet34 => 34,
            BackboneKind::ResNet50 => 50,
            BackboneKind::ResNet101 => 101,
            BackboneKind::ResNet152 => 152,
            BackboneKind::Vgg16 | BackboneKind::EfficientNetLite0 => return None,
        };
        Depth::of(layers)
    }

    /// All names, comma-separated (for messages).
    pub fn names() -> String {
        BackboneKind::ALL.map(BackboneKind::name).join(", ")
    }

    /// Layer names in order.
    pub fn layer_names(self) -> Vec<&'static str> {
        match self {
            BackboneKind::Vgg16 => VGG16_LAYERS.iter().map(|(n, _)| *n).collect(),
            BackboneKind::EfficientNetLite0 => efficientnet::layer_names(),
            kind => kind
                .resnet_depth()
                .map(Depth::layer_names)
                .unwrap_or_default(),
        }
    }

    /// Index of the layer called `name` (for a ResNet, a stage name such as `layer4` is its
    /// last block: the stage's output).
    pub fn layer(self, name: &str) -> Result<usize, ModelError> {
        let names = self.layer_names();
        let index = match self.resnet_depth() {
            Some(depth) => depth.layer(name),
            None => names.iter().position(|n| *n == name),
        };
        index.ok_or_else(|| ModelError::UnknownLayer {
            name: name.to_string(),
            known: self.layer_hint(),
        })
    }

    /// The first layer that trains with `[model] train_from = name` (for a ResNet, a stage
    /// name such as `layer4` is its first block).
    pub fn train_start(self, name: &str) -> Result<usize, ModelError> {
        match self.resnet_depth().and_then(|d| d.stage_blocks(name)) {
            Some((first, _)) => Ok(first),
            None => self.layer(name),
        }
    }

    /// The layer names for a message (a ResNet's stage names first).
    fn layer_hint(self) -> String {
        let names = self.layer_names().join(", ");
        match self.resnet_depth() {
            Some(_) => format!("layer1, layer2, layer3, layer4, {names}"),
            None => names,
        }
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
                _ => names[*index] != "maxpool",
            })
            .map(|(_, name)| *name)
            .chain(
                self.resnet_depth()
                    .map_or(&[][..], |_| &["layer1", "layer2", "layer3", "layer4"][..])
                    .iter()
                    .copied(),
            )
            .collect()
    }

    /// The layer a head of `kind` pools: VGG16 `block5_conv3` (gap-linear, the CAM paper's
    /// VGGnet-GAP) or `block5_pool` (gap-dense, the seed blog's model); EfficientNet `head`;
    /// ResNet its last block (`layer4`).
    pub fn head_input(self, kind: HeadKind) -> usize {
        let name = match (self, kind) {
            (BackboneKind::Vgg16, HeadKind::GapLinear) => "block5_conv3",
            (BackboneKind::Vgg16, HeadKind::GapDense) => "block5_pool",
            (BackboneKind::EfficientNetLite0, _) => "head",
            (_, _) => return self.layer_names().len() - 1,
        };
        let names = self.layer_names();
        self.layer(name).unwrap_or(names.len() - 1)
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Vgg16 => "vgg16",
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0",
            BackboneKind::ResNet18 => "resnet18",
            BackboneKind::ResNet34 => "resnet34",
            BackboneKind::ResNet50 => "resnet50",
            BackboneKind::ResNet101 => "resnet101",
            BackboneKind::ResNet152 => "resnet152",
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
    /// EfficientNet and ResNet: their conv weights, with BatchNorm kept frozen beside them),
    /// the layers below do not. `None`: nothing trains (as [`load`](Self::load)).
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
            kind => {
                let depth = kind
                    .resnet_depth()
                    .ok_or_else(|| ModelError::UnknownBackbone(kind.name().to_string()))?;
                Backbone::ResNet(ResNet::load_trainable(file, depth, train_from, device)?)
            }
        };
        let mut backbone = backbone.set_require_grad(false);
        if let Some(from) = train_from {
            for index in from..backbone.layer_names().len() {
                backbone = match backbone {
                    Backbone::Vgg16(v) => Backbone::Vgg16(v.set_trainable(index, true)),
                    Backbone::EfficientNetLite0(e) => {
                        Backbone::EfficientNetLite0(e.set_trainable(index, true))
                    }
                    Backbone::ResNet(r) => Backbone::ResNet(r.set_trainable(index, true)),
                };
            }
        }
        Ok(backbone)
    }

    /// The weights of layers `from..` under the weight file's keys (for EfficientNet and ResNet
    /// the raw conv weights of the layers loaded by [`load_trainable`](Self::load_trainable)): what a
    /// fine-tuned backbone's weight file replaces in the original one.
    pub fn trained_weights(&self, from: usize) -> Vec<(String, burn::tensor::TensorData)> {
        (from..self.layer_names().len())
            .flat_map(|index| match self {
                Backbone::Vgg16(v) => v.layer_weights(index),
                Backbone::EfficientNetLite0(e) => e.raw_weights(index),
                Backbone::ResNet(r) => r.raw_weights(index),
            })
            .collect()
    }

    /// Which architecture this is.
    pub fn kind(&self) -> BackboneKind {
        match self {
            Backbone::Vgg16(_) => BackboneKind::Vgg16,
            Backbone::EfficientNetLite0(_) => BackboneKind::EfficientNetLite0,
            Backbone::ResNet(r) => BackboneKind::ALL
                .into_iter()
                .find(|k| k.resnet_depth() == Some(r.depth()))
                .unwrap_or(BackboneKind::ResNet50),
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
            Backbone::ResNet(r) => r.channels(index),
        }
    }

    /// The layer a head of `kind` pools (see [`BackboneKind::head_input`]).
    pub fn head_input(&self, kind: HeadKind) -> usize {
        self.kind().head_input(kind)
    }

    /// The blocks, top first, with their layer indices: the order of a cascading
    /// randomisation (Adebayo et al. 2018). VGG16 `block5` … `block1`; EfficientNet `head`,
    /// `block16` … `block1`, `stem`; ResNet `layer4` … `layer1` (each stage's blocks together),
    /// `maxpool`, `conv1`.
    pub fn blocks(&self) -> Vec<(String, Vec<usize>)> {
        let mut blocks: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, name) in self.layer_names().into_iter().enumerate() {
            // VGG16 `block5_conv1` → `block5`; ResNet `layer4.2` → `layer4`.
            let block = name.split(['_', '.']).next().unwrap_or(name).to_string();
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
            Backbone::ResNet(r) => r.reinitialize(index),
        }
    }

    /// Run layers `start..=end` on `x` (the input of layer `start`).
    pub fn run(&self, x: Tensor<4>, start: usize, end: usize) -> Tensor<4> {
        match self {
            Backbone::Vgg16(v) => v.run(x, start, end),
            Backbone::EfficientNetLite0(e) => e.run(x, start, end),
            Backbone::ResNet(r) => r.run(x, start, end),
        }
    }
}
