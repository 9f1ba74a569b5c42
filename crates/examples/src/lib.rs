//! What the two examples share: a small CNN of "your own" (not a project backbone) that
//! implements [`model::Explainable`], the offline synthetic cat/dog set as tensors, and the
//! `--out DIR` argument.
//!
//! - `examples/own_model.rs`: the CNN trained in its own burn loop, CAM and Grad-CAM attached
//!   through `callbacks::run_callbacks`.
//! - `examples/burn_learner.rs`: the same callbacks inside burn-train's `Learner`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use callbacks::scores::faithfulness::planes;
use image::RgbImage;
use model::{global_average_pool, Explainable};

/// The class names, in label order.
pub const CLASSES: [&str; 2] = ["cat", "dog"];

/// A three-block CNN: `block1`, `block2` (each conv 3x3, ReLU, 2x2 max pool), `block3` (conv
/// 3x3 and ReLU), global average pooling and a linear layer to one logit per class: a CAM
/// architecture, so CAM explains `block3` and Grad-CAM any block.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// 3 → 16 channels.
    pub conv1: Conv2d,
    /// 16 → 32 channels.
    pub conv2: Conv2d,
    /// 32 → 64 channels (the layer CAM explains).
    pub conv3: Conv2d,
    /// 64 → 2 logits.
    pub fc: Linear,
}

impl SmallCnn {
    /// A freshly initialised network on `device` (an autodiff device to train it).
    pub fn new(device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(3, 16),
            conv2: conv(16, 32),
            conv3: conv(32, 64),
            fc: LinearConfig::new(64, CLASSES.len()).init(device),
        }
    }

    /// Block `index` (0, 1, 2) on its input.
    fn block(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        let pool = |x| max_pool2d(x, MaxPoolOptions::new([2, 2]));
        match index {
            0 => pool(relu(self.conv1.forward(x))),
            1 => pool(relu(self.conv2.forward(x))),
            _ => relu(self.conv3.forward(x)),
        }
    }

    /// Cross-entropy of the logits of `images` against `labels` [N], with the logits.
    pub fn loss(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> (Tensor<1>, Tensor<2>) {
        let logits = Explainable::forward(self, images);
        let [n, classes] = logits.dims();
        let one_hot = labels.clone().one_hot(classes).float();
        let loss = (log_softmax(logits.clone(), 1) * one_hot).sum().neg() / n as f32;
        (loss.reshape([1]), logits)
    }
}

/// What the explanation engine needs: the layer names, the forward pass split at a layer, and
/// (optional) the linear head's weights for CAM.
impl Explainable for SmallCnn {
    fn layer_names(&self) -> Vec<String> {
        vec!["block1".into(), "block2".into(), "block3".into()]
    }

    fn activations(&self, images: Tensor<4>, layer: usize) -> Tensor<4> {
        (0..=layer.min(2)).fold(images, |x, i| self.block(i, x))
    }

    fn logits_from(&self, layer: usize, activations: Tensor<4>) -> Tensor<2> {
        let features = (layer + 1..3).fold(activations, |x, i| self.block(i, x));
        self.fc.forward(global_average_pool(features))
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.logits_from(2, self.activations(images, 2))
    }

    fn cam_weights(&self, layer: usize) -> Option<Tensor<2>> {
        // burn's Linear weight is [in, out] = [C, classes]: CAM's class weights.
        (layer == 2).then(|| self.fc.weight.val())
    }
}

/// Labelled photos of the synthetic set (seed 1): `count` images from index `first`, `size` px.
pub struct Photos {
    /// The pictures.
    pub images: Vec<RgbImage>,
    /// 0 = cat, 1 = dog.
    pub labels: Vec<usize>,
    /// Names, for the image tags (`cat_00401`).
    pub names: Vec<String>,
}

impl Photos {
    /// Images `first..first + count` of the synthetic set.
    pub fn synthetic(first: usize, count: usize, size: usize) -> Self {
        let items: Vec<_> = (first..first + count)
            .map(|i| (i, train::data::synth::generate(1, i, size)))
            .collect();
        Self {
            names: items
                .iter()
                .map(|(i, s)| format!("{}_{i:05}", CLASSES[s.label]))
                .collect(),
            labels: items.iter().map(|(_, s)| s.label).collect(),
            images: items.into_iter().map(|(_, s)| s.image).collect(),
        }
    }

    /// Images `rows` as a normalised batch [N, 3, H, W] (ImageNet mean and std, the trait's
    /// default normalisation) and their labels, on `device`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let (w, h) = self.images[0].dimensions();
        let mut values: Vec<f32> = rows.iter().flat_map(|&r| planes(&self.images[r])).collect();
        model::imagenet_normalize(&mut values, (w * h) as usize);
        let images = Tensor::from_data(
            TensorData::new(values, [rows.len(), 3, h as usize, w as usize]),
            device,
        );
        let labels: Vec<i64> = rows.iter().map(|&r| self.labels[r] as i64).collect();
        let labels = Tensor::from_data(TensorData::new(labels, [rows.len()]), device);
        (images, labels)
    }
}

/// `--out DIR` from the command line (`cargo run --release --example NAME -- --out DIR`).
pub fn out_dir() -> Result<PathBuf> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--out" => Ok(PathBuf::from(dir)),
        _ => bail!("usage: cargo run --release --example NAME -- --out DIR"),
    }
}

/// The share of `logits` [N, n] whose arg-max is `labels`.
pub fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> f32 {
    let n = labels.dims()[0].max(1);
    let predicted = logits.argmax(1).reshape([labels.dims()[0]]);
    let right: i64 = predicted.equal(labels).int().sum().into_scalar();
    right as f32 / n as f32
}

/// What burn-train's `Learner` needs of the model and the data (`examples/burn_learner.rs`):
/// `TrainStep` and `InferenceStep` (a model crate of your own implements them next to the
/// model), a batch type and its batcher.
pub mod learner {
    use std::sync::Arc;

    use burn::data::dataloader::batcher::Batcher;
    use burn::tensor::{Device, Int, Tensor};
    use burn_train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

    use crate::{Photos, SmallCnn};

    /// A batch: normalised images and their labels.
    #[derive(Clone, Debug)]
    pub struct SynthBatch {
        /// Normalised images [N, 3, H, W].
        pub images: Tensor<4>,
        /// Labels [N].
        pub labels: Tensor<1, Int>,
    }

    /// Batches rows of the synthetic set (the dataset's items are row indices).
    #[derive(Clone)]
    pub struct SynthBatcher(pub Arc<Photos>);

    impl Batcher<usize, SynthBatch> for SynthBatcher {
        fn batch(&self, rows: Vec<usize>, device: &Device) -> SynthBatch {
            let (images, labels) = self.0.batch(&rows, device);
            SynthBatch { images, labels }
        }
    }

    fn classify(model: &SmallCnn, batch: SynthBatch) -> ClassificationOutput {
        let (loss, output) = model.loss(batch.images, batch.labels.clone());
        ClassificationOutput {
            loss,
            output,
            targets: batch.labels,
        }
    }

    impl TrainStep for SmallCnn {
        type Input = SynthBatch;
        type Output = ClassificationOutput;
        fn step(&self, batch: SynthBatch) -> TrainOutput<ClassificationOutput> {
            let item = classify(self, batch);
            TrainOutput::new(self, item.loss.backward(), item)
        }
    }

    impl InferenceStep for SmallCnn {
        type Input = SynthBatch;
        type Output = ClassificationOutput;
        fn step(&self, batch: SynthBatch) -> ClassificationOutput {
            classify(self, batch)
        }
    }
}
