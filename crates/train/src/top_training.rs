//! Fine-tuning the top of the backbone: the layers from the cut (`[model] train_from`) up, and
//! the head, trained on the cached input of the cut ([`CutActivations`]) under burn's autodiff,
//! with burn's Adam and two learning rates (head, backbone). Below the cut nothing runs.

use anyhow::{bail, Result};
use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use model::{Backbone, Classifier, Head, HeadKind};

use crate::cut_cache::CutActivations;
use crate::head_training::{loss, predictions, Score};
use crate::rng::SplitMix64;
use crate::tensors::to_vec;

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

    /// One epoch over the cut activations `x` with `labels`, in the order a head-only run
    /// would use for (seed, epoch).
    pub fn train_epoch(
        &mut self,
        x: &CutActivations,
        labels: &[usize],
        batch_size: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<Score> {
        let n = labels.len();
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix64::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(epoch as u64))
            .shuffle(&mut order);
        let device = self.device.clone().autodiff();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in order.chunks(batch_size) {
            let input = x.batch(batch, &device)?;
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            let logits = self.model.logits_from_input(self.cut, input);
            let batch_loss = loss(logits.clone(), &y);
            let grads = GradientsParams::from_grads(batch_loss.backward(), &self.model);
            if grads.len() != self.trainable {
                bail!(
                    "fine-tuning: gradients for {} of the {} trained parameter tensors",
                    grads.len(),
                    self.trainable
                );
            }
            loss_sum += to_vec(batch_loss.without_autodiff())?[0] as f64 * batch.len() as f64;
            let predicted = predictions(logits.without_autodiff())?;
            correct += predicted.iter().zip(&y).filter(|(p, t)| p == t).count();
            self.model = self
                .optimizer
                .step(self.rates.clone(), self.model.clone(), grads);
        }
        Ok(Score {
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }

    /// Loss and accuracy on cut activations without training.
    pub fn evaluate(&self, x: &CutActivations, labels: &[usize]) -> Result<Score> {
        let model = self.model();
        let device = self.device.clone();
        let rows: Vec<usize> = (0..labels.len()).collect();
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in rows.chunks(EVAL_BATCH) {
            let logits = model.logits_from_input(self.cut, x.batch(batch, &device)?);
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            loss_sum += to_vec(loss(logits.clone(), &y))?[0] as f64 * batch.len() as f64;
            let predicted = predictions(logits)?;
            correct += predicted.iter().zip(&y).filter(|(p, t)| p == t).count();
        }
        let n = labels.len().max(1) as f64;
        Ok(Score {
            loss: loss_sum / n,
            accuracy: correct as f64 / n,
        })
    }

    /// The trained model's and the optimizer's state as burnpack bytes.
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        let model = self
            .model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the model: {e}"))?;
        let optimizer = self
            .optimizer
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer: {e}"))?;
        Ok((model.to_vec(), optimizer.to_vec()))
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, model: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        use burn::optim::OptimizerRecord;
        use burn::store::ModuleRecord;
        use burn::tensor::Bytes;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model))
            .map_err(|e| anyhow::anyhow!("the model: {e}"))?;
        self.model = self
            .model
            .clone()
            .try_load_record(record)
            .map_err(|e| anyhow::anyhow!("the model: {e}"))?;
        let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(optimizer))
            .map_err(|e| anyhow::anyhow!("the optimizer: {e}"))?;
        let optimizer = std::mem::replace(&mut self.optimizer, AdamConfig::new().init());
        self.optimizer = optimizer.load_record(record);
        Ok(())
    }
}
