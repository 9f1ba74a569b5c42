//! The networks: a VGG16 backbone with named layers, GAP classification heads, and the
//! weight loading that fills them from PyTorch/safetensors files.
//!
//! [`Classifier`] puts a backbone and a head together and can run the network from any
//! named layer to the logits, which is what Grad-CAM needs: the explanation engine runs the
//! backbone to the explained layer once, then differentiates the logits with respect to
//! that layer's activations.

/// Evaluates `body` compiled for AVX2 when the CPU has it (the channel loops then run 8 wide),
/// else for the baseline.
macro_rules! simd_dispatch {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

/// Defines `fn $name(args)` that runs `$kernel(args)` compiled for AVX2 and FMA when the CPU
/// has both, else for the baseline. Unlike [`simd_dispatch!`], the kernel (`#[inline(always)]`)
/// is called by name inside the AVX2 function, so it is always inlined there, however large.
/// (A kernel's `mul_add` is one instruction there; on an x86 CPU without FMA, a slow library
/// call.)
macro_rules! simd_fn {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $kernel:path) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $kernel($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}

pub mod backbone;
pub mod bn_conv;
pub mod conv3x3;
pub mod efficientnet;
pub mod explainable;
pub mod head;
pub mod mobile_conv;
pub mod resnet;
pub mod rng;
pub mod vgg16;
pub mod weights;
pub mod winograd;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use backbone::{Backbone, BackboneKind};
pub use efficientnet::EfficientNetLite0;
pub use explainable::Explainable;
pub use head::{global_average_pool, Head, HeadKind};
pub use resnet::ResNet;
pub use vgg16::{Vgg16, VGG16_LAYERS};
pub use weights::{WeightError, WeightFile};

/// ImageNet channel means (RGB, on [0, 1] pixels), as torchvision's weights expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, on [0, 1] pixels).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// ImageNet-normalise, in place, images stored as [N, 3, H, W] with values in [0, 1]
/// (`plane` = H·W): (v − mean[c]) / std[c]. The one place the networks' input is normalised.
pub fn imagenet_normalize(values: &mut [f32], plane: usize) {
    for (i, channel) in values.chunks_mut(plane.max(1)).enumerate() {
        let c = i % 3;
        for v in channel {
            *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
}

/// Errors about how a model is put together or addressed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A weight file could not be used.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// No layer has this name.
    #[error("unknown layer `{name}` (layers: {known})")]
    UnknownLayer {
        /// The name asked for.
        name: String,
        /// All layer names, comma-separated.
        known: String,
    },
    /// The layer comes after the one the head reads, so the logits do not depend on it.
    #[error("layer `{layer}` comes after `{head_input}`, the layer the {head} head reads")]
    LayerAfterHead {
        /// The layer asked for.
        layer: String,
        /// The layer feeding the head.
        head_input: String,
        /// The head.
        head: HeadKind,
    },
    /// No backbone has this name.
    #[error("unknown backbone `{0}` (available: {list})", list = BackboneKind::names())]
    UnknownBackbone(String),
    /// The input has a size the backbone cannot take.
    #[error(
        "input size {height}x{width}: need multiples of 32 (five 2x2 pools), at most {MAX_INPUT_SIDE} a side"
    )]
    InputSize {
        /// Height in pixels.
        height: usize,
        /// Width in pixels.
        width: usize,
    },
}

/// The largest input side accepted (a batch of 8 at 1024x1024 already needs 2 GB for VGG16's
/// first activations): a bound on memory for any config or command line.
pub const MAX_INPUT_SIDE: usize = 1024;

/// `module` with every parameter's id derived from its path in the module tree (e.g.
/// `backbone.Vgg16.convs.14.weight`): the same parameter then has the same id in every process,
/// which the optimizer's saved state (keyed by id) needs to resume.
pub fn ids_from_paths<M: Module>(module: M) -> M {
    use burn::module::{ModuleMapper, Param};
    struct Paths(Vec<String>);
    impl ModuleMapper for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (_, tensor, mapper) = param.consume();
            Param::from_mapped_value(head::param_id(&self.0.join(".")), tensor, mapper)
        }
    }
    module.map(&mut Paths(Vec::new()))
}

/// `module` with every float parameter cast to float64 (`train explain` runs a ResNet so: see
/// [`Classifier::wants_float64`]). Constant tensors (a [`bn_conv::FrozenBn`] kept beside a
/// trained conv) are not parameters and stay float32: cast only fully folded networks, as
/// `train explain` loads them.
pub fn in_float64<M: Module>(module: M) -> M {
    use burn::module::{ModuleMapper, Param};
    struct Cast;
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let tensor = tensor.cast(burn::tensor::FloatDType::F64);
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    module.map(&mut Cast)
}

/// A copy of `conv` with He-normal weights (std √(2 / fan_in)) and zero biases.
pub fn reinitialized(conv: &burn::nn::conv::Conv2d) -> burn::nn::conv::Conv2d {
    let weight = conv.weight.val();
    let shape = weight.dims();
    let device = weight.device();
    let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
    let random = Tensor::random(
        shape,
        burn::tensor::Distribution::Normal(0.0, (2.0 / fan_in).sqrt()),
        &device,
    );
    let mut out = conv.clone();
    out.weight = burn::module::Param::from_tensor(random);
    out.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
        [shape[0]],
        &device,
    )));
    out
}

/// A backbone and a head: the whole classifier.
#[derive(Module, Debug)]
pub struct Classifier {
    /// The (frozen) backbone.
    pub backbone: Backbone,
    /// The trained head.
    pub head: Head,
}

impl Classifier {
    /// A trained classifier from files: the backbone's weights and a head exported in PyTorch
    /// layout (see [`Head::load`]).
    pub fn load(
        backbone: BackboneKind,
        weights: &WeightFile,
        head: HeadKind,
        head_weights: &WeightFile,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let backbone = Backbone::load(backbone, weights, device)?;
        let channels = backbone.channels(backbone.head_input(head));
        let head = Head::load(head_weights, head, channels, device)?;
        Ok(Self { backbone, head })
    }

    /// All layer names of the backbone, in order.
    pub fn layer_names(&self) -> Vec<&'static str> {
        self.backbone.layer_names()
    }

    /// Index of a named layer.
    pub fn layer(&self, name: &str) -> Result<usize, ModelError> {
        self.backbone.kind().layer(name)
    }

    /// Name of layer `index`.
    pub fn layer_name(&self, index: usize) -> &'static str {
        self.layer_names().get(index).copied().unwrap_or("?")
    }

    /// The layer whose output the head pools (see [`Backbone::head_input`]).
    pub fn head_input(&self) -> usize {
        self.backbone.head_input(self.head.kind())
    }

    /// Check that `layer` can be explained: it exists and feeds the head.
    pub fn explainable_layer(&self, name: &str) -> Result<usize, ModelError> {
        let index = self.layer(name)?;
        if index > self.head_input() {
            return Err(ModelError::LayerAfterHead {
                layer: name.to_string(),
                head_input: self.layer_name(self.head_input()).to_string(),
                head: self.head.kind(),
            });
        }
        Ok(index)
    }

    /// Check an input size: five 2x2 pools need height and width divisible by 32.
    pub fn check_input_size(height: usize, width: usize) -> Result<(), ModelError> {
        let side_ok = |s: usize| s > 0 && s <= MAX_INPUT_SIDE && s.is_multiple_of(32);
        if !side_ok(height) || !side_ok(width) {
            return Err(ModelError::InputSize { height, width });
        }
        Ok(())
    }

    /// Activations of layer `index` for a normalised image batch [N, 3, H, W].
    pub fn activations(&self, images: Tensor<4>, index: usize) -> Tensor<4> {
        self.backbone.run(images, 0, index)
    }

    /// Logits [N, n] from the activations of layer `index` (which must be at or before
    /// [`head_input`](Self::head_input)).
    pub fn logits_from(&self, index: usize, activations: Tensor<4>) -> Tensor<2> {
        let head_input = self.head_input();
        let features = if index < head_input {
            self.backbone.run(activations, index + 1, head_input)
        } else {
            activations
        };
        self.head.forward(features)
    }

    /// Logits [N, n] from the input of layer `start` (the output of layer `start − 1`; the
    /// normalised images for 0): what a fine-tuning run trains on its cached cut.
    pub fn logits_from_input(&self, start: usize, x: Tensor<4>) -> Tensor<2> {
        let head_input = self.head_input();
        let features = if start <= head_input {
            self.backbone.run(x, start, head_input)
        } else {
            x
        };
        self.head.forward(features)
    }

    /// Whether explanations should run in float64: a ResNet's Grad-CAM at an inner layer
    /// amplifies float32 rounding (a ReLU input within rounding of 0 sends the gradient another
    /// way), so `train explain` casts it and its input to float64 (burn's ops; the CPU fast path is
    /// float32 only). VGG16 and EfficientNet-Lite0 stay float32.
    pub fn wants_float64(&self) -> bool {
        matches!(self.backbone, Backbone::ResNet(_))
    }

    /// Logits [N, n] for a normalised image batch [N, 3, H, W].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let head_input = self.head_input();
        self.logits_from(head_input, self.activations(images, head_input))
    }
}

/// The device named on a command line or in a config: `cpu` (burn's `flex` backend) or,
/// when built with the `cuda` feature, `cuda` / `cuda:N`.
pub fn device_from_name(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index = s
                .strip_prefix("cuda:")
                .map(|i| {
                    i.parse::<usize>()
                        .map_err(|e| format!("bad device `{s}`: {e}"))
                })
                .transpose()?
                .unwrap_or(0);
            Ok(Device::cuda(index))
        }
        other => Err(format!(
            "unknown device `{other}` (expected cpu{})",
            if cfg!(feature = "cuda") {
                ", cuda or cuda:N"
            } else {
                "; rebuild with `--features cuda` for cuda"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(backbone: &Backbone) -> Vec<Vec<f32>> {
        let convs: Vec<&burn::nn::conv::Conv2d> = match backbone {
            Backbone::Vgg16(v) => v.convs.iter().collect(),
            Backbone::EfficientNetLite0(e) => std::iter::once(&e.stem.conv)
                .chain(e.blocks.iter().map(|b| &b.project.conv))
                .chain(std::iter::once(&e.head.conv))
                .collect(),
            Backbone::ResNet(r) => std::iter::once(&r.conv1.conv)
                .chain(r.blocks.iter().map(|b| &b.conv1.conv))
                .collect(),
        };
        convs
            .iter()
            .map(|c| {
                c.weight
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn blocks_top_first_and_reinitialize_one_layer() {
        let device = Device::default();
        let mut vgg = Backbone::Vgg16(Vgg16::random(8, &device));
        let blocks = vgg.blocks();
        let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["block5", "block4", "block3", "block2", "block1"]);
        assert_eq!(blocks[0].1, vec![14, 15, 16, 17]); // block5_conv1..3 and block5_pool
        let before = weights(&vgg);
        vgg.reinitialize(16); // block5_conv3 = the 13th conv
        vgg.reinitialize(17); // a pool: nothing to do
        let after = weights(&vgg);
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            assert_eq!(b == a, i != 12, "conv {i}");
        }

        let mut effnet = Backbone::EfficientNetLite0(EfficientNetLite0::random(&device));
        let names: Vec<String> = effnet.blocks().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 18);
        assert_eq!((names[0].as_str(), names[17].as_str()), ("head", "stem"));
        let before = weights(&effnet);
        effnet.reinitialize(0);
        let after = weights(&effnet);
        assert_ne!(before[0], after[0]);
        assert_eq!(before[1..], after[1..]);
    }

    #[test]
    fn vgg_fast_path_matches_burn_and_keeps_autodiff() {
        let device = Device::flex();
        let vgg = Vgg16::random(8, &device);
        let x = Tensor::<4>::random(
            [2, 3, 64, 96],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let last = VGG16_LAYERS.len() - 1;
        for (start, end) in [(0, last), (0, 16), (4, 9), (14, 16)] {
            let input = if start == 0 {
                x.clone()
            } else {
                vgg.run_burn(x.clone(), 0, start - 1)
            };
            let fast = vgg
                .run_fast(input.clone(), start, end)
                .expect("flex tensors read back")
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            let reference = vgg
                .run_burn(input, start, end)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            let scale = reference.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
            let err = fast
                .iter()
                .zip(&reference)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(err < 1e-5, "layers {start}..={end}: error {err}");
        }
        // Under autodiff `run` takes burn's ops, so gradients reach the input.
        let leaf = x.clone().autodiff().require_grad();
        let out = vgg.run(leaf.clone(), 0, 16).sum();
        let grads = out.backward();
        let grad = leaf.grad(&grads).expect("a gradient for the input");
        assert_eq!(grad.dims(), [2, 3, 64, 96]);
        // A tracked tensor that is not a leaf (is_require_grad() is false for it) too.
        let leaf = x.autodiff().require_grad();
        let out = vgg.run(leaf.clone() * 1.0, 0, 16).sum();
        let grads = out.backward();
        assert!(
            leaf.grad(&grads).is_some(),
            "gradient lost through a non-leaf input"
        );
    }
}
