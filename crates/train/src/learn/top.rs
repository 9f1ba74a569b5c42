//! Fine-tuning the top of the backbone: the layers from the cut (`[model] train_from`) up, and
//! the head, trained on the cached input of the cut ([`CutActivations`]) under burn's autodiff,
//! with burn's Adam and two learning rates (head, backbone). Below the cut nothing runs.

use anyhow::Result;
use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use model::{Backbone, Classifier, Head, HeadKind};

use crate::features::cut::CutActivations;
use crate::learn::epoch::{
    check_gradients, correct, loss, predictions, shuffled, train_epoch, Score,
};
use crate::tensors::to_vec;
use model::rng::SplitMix64;

/// Rows per forward pass when evaluating.
const EVAL_BATCH: usize = 32;

/// The top of the network being trained, with its optimizer.
pub struct TopTraining {
    /// Backbone and head on the autodiff device; only layers `cut..` and the head track
    /// gradients.
    model: Classifier,
    /// The first trained layer.
    cut: usize,
    optimizer: ModuleOptimizer,
    rates: ModuleLearningRate,
    /// Parameter tensors that must get a gradient every step.
    trainable: usize,
    /// The plain device (training runs on its autodiff twin).
    device: Device,
}

/// Counts parameter tensors that track gradients.
struct CountTrainable(usize);

impl ModuleVisitor for CountTrainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.0 += 1;
        }
    }
}

impl TopTraining {
    /// `backbone` as [`Backbone::load_trainable`] made it (layers `cut..` trainable) and a fresh
    /// head (PyTorch's `nn.Linear` initialisation from `seed`, as a head-only run's).
    pub fn new(
        backbone: Backbone,
        kind: HeadKind,
        classes: usize,
        cut: usize,
        (head_rate, backbone_rate): (f64, f64),
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x4ead_0000);
        let channels = backbone.channels(backbone.head_input(kind));
        let head = Head::seeded(kind, channels, classes, || rng.next_f64(), device);
        // Ids from paths: the optimizer's saved state (keyed by id) fits a resumed process.
        let model = model::ids_from_paths(Classifier { backbone, head }).train();
        let rates = ModuleLrScheduler::new(head_rate)
            .with_group(
                ParamGroup::ids_from_module(model.backbone.clone()),
                backbone_rate,
            )
            .step();
        let mut count = CountTrainable(0);
        model.visit(&mut count);
        Self {
            model,
            cut,
            optimizer: AdamConfig::new().with_epsilon(1e-8).init(),
            rates,
            trainable: count.0,
            device: device.clone(),
        }
    }

    /// The model as trained so far, without autodiff (inference, callbacks, export).
    pub fn model(&self) -> Classifier {
        self.model.valid()
    }

    /// The first trained layer.
    pub fn cut(&self) -> usize {
        self.cut
    }

    /// Parameter tensors being trained (each gets a gradient every step).
    pub fn trainable_tensors(&self) -> usize {
        self.trainable
    }

    /// One epoch over the activations `x` (normally the cut's; any layer at or below the cut
    /// works) with `labels`, in the order a head-only run would use for (seed, epoch).
    pub fn train_epoch(
        &mut self,
        x: &CutActivations,
        labels: &[usize],
        batch_size: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<Score> {
        let device = self.device.clone().autodiff();
        let (cut, trainable) = (x.cut, self.trainable);
        let (optimizer, rates) = (&mut self.optimizer, &self.rates);
        let (model, score) = train_epoch(
            self.model.clone(),
            &shuffled(labels.len(), seed, epoch),
            batch_size,
            |model: &Classifier, batch| {
                let input = x.batch(batch, &device)?;
                let y = batch.iter().map(|&i| labels[i]).collect();
                // From the input of the rows' layer: the cut in a run; layer 0 (the images)
                // when a test trains through the frozen layers too.
                Ok((model.logits_from_input(cut, input), y))
            },
            |model, loss| {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                check_gradients(grads.len(), trainable, "fine-tuning")?;
                Ok(optimizer.step(rates.clone(), model, grads))
            },
        )?;
        self.model = model;
        Ok(score)
    }

    /// Loss and accuracy on cut activations without training.
    pub fn evaluate(&self, x: &CutActivations, labels: &[usize]) -> Result<Score> {
        let model = self.model();
        let device = self.device.clone();
        let rows: Vec<usize> = (0..labels.len()).collect();
        let (mut loss_sum, mut right) = (0.0f64, 0usize);
        let mut confusion = crate::learn::epoch::Confusion::default();
        for batch in rows.chunks(EVAL_BATCH) {
            let logits = model.logits_from_input(x.cut, x.batch(batch, &device)?);
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            loss_sum += to_vec(loss(logits.clone(), &y))?[0] as f64 * batch.len() as f64;
            let predicted = predictions(logits)?;
            right += correct(&predicted, &y);
            confusion.add(&predicted, &y);
        }
        let n = labels.len().max(1) as f64;
        Ok(Score {
            loss: loss_sum / n,
            accuracy: right as f64 / n,
            confusion,
        })
    }

    /// The trained model's and the optimizer's state as burnpack bytes.
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        crate::learn::checkpoint::serialise(&self.model, &self.optimizer)
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, model: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        self.model = crate::learn::checkpoint::restore(
            self.model.clone(),
            &mut self.optimizer,
            self.trainable,
            model,
            optimizer,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Vgg16, WeightFile};

    /// Every parameter tensor of the backbone, in order, on the host.
    fn backbone_values(model: &Classifier) -> Vec<Vec<f32>> {
        struct Values(Vec<Vec<f32>>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(to_vec(param.val()).unwrap());
            }
        }
        let mut values = Values(Vec::new());
        model.backbone.visit(&mut values);
        values.0
    }

    /// Seeded normal-ish images (reproducible: the device's generator is not).
    fn images(n: usize, size: usize, device: &Device) -> (Tensor<4>, Vec<usize>) {
        let mut rng = SplitMix64::new(42);
        let values: Vec<f32> = (0..n * 3 * size * size)
            .map(|_| ((0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0) as f32 * 1.7)
            .collect();
        let x = Tensor::from_data(
            burn::tensor::TensorData::new(values, [n, 3, size, size]),
            device,
        );
        (x, (0..n).map(|i| i % 2).collect())
    }

    /// A random VGG16 (width 8) weight file.
    fn vgg_file(dir: &std::path::Path, device: &Device) -> std::path::PathBuf {
        let path = dir.join("vgg.safetensors");
        // The shapes of VGG16 at width 8; the values seeded (He-normal-like, zero biases), so
        // every run of a test sees the same network (the device's generator is not seeded).
        let shapes = Vgg16::random(8, device);
        let mut rng = SplitMix64::new(7);
        let mut tensors = Vec::new();
        for index in 0..model::VGG16_LAYERS.len() {
            for (key, data) in shapes.layer_weights(index) {
                let shape = data.shape().to_vec();
                let fan_in: usize = shape[1..].iter().product();
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                let values = (0..shape.iter().product::<usize>())
                    .map(|_| match shape.len() {
                        // Sum of 4 uniforms: mean 2, variance 1/3.
                        4 => {
                            ((0..4).map(|_| rng.next_f64()).sum::<f64>() - 2.0) * 3f64.sqrt() * std
                        }
                        _ => 0.0,
                    } as f32)
                    .collect();
                tensors.push((key, shape, values));
            }
        }
        crate::tensors::write_safetensors(&path, &tensors, Default::default()).unwrap();
        path
    }

    /// VGG16 from `path`, trainable from `block5_conv1` (index 14).
    fn vgg(path: &std::path::Path, device: &Device) -> (Backbone, usize) {
        let file = WeightFile::open(path).unwrap();
        let cut = 14;
        let backbone =
            Backbone::load_trainable(model::BackboneKind::Vgg16, &file, Some(cut), device).unwrap();
        (backbone, cut)
    }

    #[test]
    fn gradients_reach_the_trained_layers_and_not_the_frozen_ones() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let (backbone, cut) = vgg(&vgg_file(dir.path(), &device), &device);
        let mut t = TopTraining::new(
            backbone,
            HeadKind::GapLinear,
            1,
            cut,
            (1e-2, 1e-3),
            3,
            &device,
        );
        // block5's three convs (weight + bias) and the head's linear (weight + bias).
        assert_eq!(t.trainable_tensors(), 8);
        let before = backbone_values(&t.model());
        let (x, y) = images(8, 64, &device);
        let input = t.model().backbone.run(x, 0, cut - 1);
        let rows = CutActivations::from_tensor(input, cut).unwrap();
        t.train_epoch(&rows, &y, 4, 0, 1).unwrap();
        let after = backbone_values(&t.model());
        // 13 convs × (weight, bias); the last three convs are block5's.
        assert_eq!(before.len(), 26);
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            assert_eq!(
                b != a,
                i >= 20,
                "tensor {i} (conv {}) changed: {}",
                i / 2,
                b != a
            );
        }
    }

    /// The gradient of the loss on `rows` for every trained parameter tensor, in order.
    fn gradients(t: &TopTraining, rows: &CutActivations, y: &[usize]) -> Vec<Vec<f32>> {
        struct Grads<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor for Grads<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1.push(to_vec(g).unwrap());
                }
            }
        }
        let all: Vec<usize> = (0..y.len()).collect();
        let input = rows.batch(&all, &t.device.clone().autodiff()).unwrap();
        let loss = loss(t.model.logits_from_input(rows.cut, input), y);
        let grads = GradientsParams::from_grads(loss.backward(), &t.model);
        let mut visitor = Grads(&grads, Vec::new());
        t.model.visit(&mut visitor);
        visitor.1
    }

    #[test]
    fn training_on_the_cached_cut_equals_training_through_the_whole_backbone() {
        let device = Device::flex();
        let (x, y) = images(12, 64, &device);
        let dir = tempfile::tempdir().unwrap();
        let file = vgg_file(dir.path(), &device);
        let (backbone, cut) = vgg(&file, &device);
        let t = TopTraining::new(
            backbone,
            HeadKind::GapLinear,
            1,
            cut,
            (1e-2, 1e-3),
            5,
            &device,
        );
        // The same rounding for both paths: the f16 images are the input of the whole backbone,
        // and the cut is computed from them (then stored in f16 too).
        let images_f16 = CutActivations::from_tensor(x, 0).unwrap();
        let all: Vec<usize> = (0..y.len()).collect();
        let x16 = images_f16.batch(&all, &device).unwrap();
        let cut_rows =
            CutActivations::from_tensor(t.model().backbone.run(x16, 0, cut - 1), cut).unwrap();
        let through_cut = gradients(&t, &cut_rows, &y);
        let through_everything = gradients(&t, &images_f16, &y);
        assert_eq!(
            through_cut.len(),
            8,
            "block5 (3 convs) + head, weight and bias each"
        );
        assert_eq!(through_everything.len(), 8);
        // Equal up to the f16 rounding of the stored cut (and Winograd vs direct convs below
        // it): ‖a − b‖ / ‖b‖ is ~1e-4 on this seeded network; a wrong cut or a frozen layer in
        // the graph gives O(1).
        for (i, (a, b)) in through_cut.iter().zip(&through_everything).enumerate() {
            let norm = b.iter().map(|v| v * v).sum::<f32>().sqrt();
            let diff = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q) * (p - q))
                .sum::<f32>()
                .sqrt();
            eprintln!("gradient {i}: relative L2 difference {}", diff / norm);
            assert!(norm > 1e-9, "tensor {i}: no gradient");
            assert!(
                diff / norm < 1e-3,
                "tensor {i}: relative L2 difference {}",
                diff / norm
            );
        }
        // And one epoch of training from either path ends at nearly the same loss.
        let train = |rows: &CutActivations| {
            let (backbone, _) = vgg(&file, &device);
            let mut t = TopTraining::new(
                backbone,
                HeadKind::GapLinear,
                1,
                cut,
                (1e-2, 1e-3),
                5,
                &device,
            );
            t.train_epoch(rows, &y, 4, 0, 1).unwrap();
            t.evaluate(&cut_rows, &y).unwrap().loss
        };
        let (a, b) = (train(&cut_rows), train(&images_f16));
        assert!((a - b).abs() < 2e-2 * (1.0 + b), "loss {a} vs {b}");
    }

    #[test]
    fn efficientnet_trains_raw_conv_weights_with_batchnorm_frozen() {
        let shared = std::env::var_os("SHARED_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
            });
        let path = shared.join("weights/efficientnet-lite0-57934424.pth");
        assert!(path.is_file(), "SHARED DATA MISSING: {}", path.display());
        let device = Device::flex();
        let file = WeightFile::open(&path).unwrap();
        let kind = model::BackboneKind::EfficientNetLite0;
        let cut = 14; // block14
        let folded = Backbone::load(kind, &file, &device).unwrap();
        let backbone = Backbone::load_trainable(kind, &file, Some(cut), &device).unwrap();
        // Unfolded layers compute what the folded ones do.
        let (x, y) = images(2, 64, &device);
        let a = to_vec(folded.run(x.clone(), 0, 17)).unwrap();
        let b = to_vec(backbone.run(x.clone(), 0, 17)).unwrap();
        let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()))
            / scale;
        assert!(err < 1e-4, "unfolded vs folded: {err}");
        let mut t = TopTraining::new(
            backbone,
            HeadKind::GapLinear,
            1,
            cut,
            (1e-3, 1e-4),
            0,
            &device,
        );
        // block14, block15 (expand, depthwise, project each), block16 (same), head conv: 10
        // conv weights, no BN constant, no folded bias; + the linear head's 2.
        assert_eq!(t.trainable_tensors(), 12);
        let input = folded.run(x, 0, cut - 1);
        let rows = CutActivations::from_tensor(input, cut).unwrap();
        t.train_epoch(&rows, &y, 2, 0, 1).unwrap();
        // The exported weights are raw conv weights under the file's keys; BN stays as loaded.
        let trained = t.model().backbone.trained_weights(cut);
        let keys: Vec<&str> = trained.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), 10, "{keys:?}");
        assert!(keys.contains(&"_blocks.13._expand_conv.weight"));
        assert!(keys.contains(&"_conv_head.weight"));
        let (key, data) = &trained[0];
        let shape = data.shape().to_vec();
        let original = file.tensor(key, &shape).unwrap();
        let now = data.clone().convert::<f32>().try_to_vec::<f32>().unwrap();
        let moved = original
            .iter()
            .zip(&now)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        // One Adam step at lr 1e-4 moves each weight by at most ~1e-4 per step.
        assert!(moved > 0.0 && moved < 5e-4, "{key} moved by {moved}");
    }
}
