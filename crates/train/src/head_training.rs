//! Training the head on pooled features: burn's [`Head`] module and burn's Adam (β = 0.9,
//! 0.999, ε = 1e-8, PyTorch's defaults), mini-batches in a seeded order, binary cross-entropy on
//! the logit (one output) or cross-entropy (several). The checkpoint holds the head and the
//! optimizer's state, so a resumed run continues exactly where it stopped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use model::{Head, HeadKind};

use crate::rng::SplitMix64;
use crate::tensors::to_vec;

/// Loss and accuracy over a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Mean loss.
    pub loss: f64,
    /// Share of correct predictions.
    pub accuracy: f64,
}

/// Loss of logits [B, n] against labels: BCE on the logit for n = 1, cross-entropy otherwise.
pub fn loss(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [b, n] = logits.dims();
    let device = logits.device();
    if n == 1 {
        let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        let y = Tensor::<2>::from_data(TensorData::new(y, [b, 1]), &device);
        // max(z, 0) − z·y + log(1 + exp(−|z|)): stable for any z.
        let z = logits;
        (z.clone().clamp_min(0.0) - z.clone() * y + (z.abs().neg().exp() + 1.0).log()).mean()
    } else {
        let y: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..n).map(move |c| if c == l { 1.0 } else { 0.0 }))
            .collect();
        let y = Tensor::<2>::from_data(TensorData::new(y, [b, n]), &device);
        (log_softmax(logits, 1) * y).sum_dim(1).mean().neg()
    }
}

/// Predicted classes of logits [B, n] (read back to the host).
pub fn predictions(logits: Tensor<2>) -> Result<Vec<usize>> {
    let n = logits.dims()[1];
    let values = to_vec(logits)?;
    Ok(values
        .chunks(n)
        .map(|row| callbacks::logger::prediction(row).0)
        .collect())
}

/// The head being trained, with its optimizer.
pub struct HeadTraining {
    /// The head, its parameters tracked by autodiff.
    head: Head,
    optimizer: ModuleOptimizer,
    learning_rate: f64,
}

impl HeadTraining {
    /// A fresh head: PyTorch's `nn.Linear` initialisation U(−1/√in, 1/√in), from `seed`.
    pub fn new(
        kind: HeadKind,
        channels: usize,
        classes: usize,
        learning_rate: f64,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x4ead_0000);
        let head = Head::seeded(
            kind,
            channels,
            classes,
            || rng.next_f64(),
            &device.clone().autodiff(),
        );
        Self {
            head,
            optimizer: AdamConfig::new().with_epsilon(1e-8).init(),
            learning_rate,
        }
    }

    /// Weights and biases: two tensors per linear layer.
    fn parameter_tensors(&self) -> usize {
        match self.head.kind() {
            HeadKind::GapLinear => 2,
            HeadKind::GapDense => 4,
        }
    }

    /// The head as trained so far, without autodiff (for inference and the callbacks).
    pub fn head(&self) -> Head {
        self.head.clone().valid()
    }

    /// One epoch over `features` [N, C] with `labels`, in an order fixed by (seed, epoch).
    pub fn train_epoch(
        &mut self,
        features: &Tensor<2>,
        labels: &[usize],
        batch_size: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<Score> {
        let n = labels.len();
        let device = features.device();
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix64::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(epoch as u64))
            .shuffle(&mut order);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in order.chunks(batch_size) {
            let index: Vec<i32> = batch.iter().map(|&i| i as i32).collect();
            let index = Tensor::<1, Int>::from_data(TensorData::new(index, [batch.len()]), &device);
            let x = features.clone().select(0, index);
            let y: Vec<usize> = batch.iter().map(|&i| labels[i]).collect();
            let logits = self.head.forward_pooled(x);
            let batch_loss = loss(logits.clone(), &y);
            let grads = GradientsParams::from_grads(batch_loss.backward(), &self.head);
            if grads.len() != self.parameter_tensors() {
                bail!(
                    "head training: gradients for {} of the head's {} parameter tensors",
                    grads.len(),
                    self.parameter_tensors()
                );
            }
            loss_sum += to_vec(batch_loss.without_autodiff())?[0] as f64 * batch.len() as f64;
            let predicted = predictions(logits.without_autodiff())?;
            correct += predicted.iter().zip(&y).filter(|(p, t)| p == t).count();
            self.head = self
                .optimizer
                .step(self.learning_rate, self.head.clone(), grads);
        }
        Ok(Score {
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }

    /// Loss and accuracy on `features` without training.
    pub fn evaluate(&self, features: &Tensor<2>, labels: &[usize]) -> Result<Score> {
        let logits = self.head().forward_pooled(features.clone());
        let l = to_vec(loss(logits.clone(), labels))?[0] as f64;
        let predicted = predictions(logits)?;
        let correct = predicted.iter().zip(labels).filter(|(p, t)| p == t).count();
        Ok(Score {
            loss: l,
            accuracy: correct as f64 / labels.len().max(1) as f64,
        })
    }

    /// The head's and the optimizer's state as burnpack bytes: (head, optimizer).
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        crate::training::serialise(&self.head, &self.optimizer)
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, head: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        let trainable = self.parameter_tensors();
        self.head = crate::training::restore(
            self.head.clone(),
            &mut self.optimizer,
            trainable,
            head,
            optimizer,
        )?;
        Ok(())
    }
}

/// Export the head in PyTorch layout (what `train explain --head-weights` reads).
pub fn export_head(path: &Path, head: &Head) -> Result<()> {
    let tensors = head
        .pytorch_tensors()
        .into_iter()
        .map(|(name, t)| {
            let shape = match t.dims() {
                [1, n] if !name.ends_with("weight") => vec![n],
                dims => dims.to_vec(),
            };
            Ok((name, shape, to_vec(t)?))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::tensors::write_safetensors(path, &tensors, HashMap::new()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::Checkpoint;

    #[test]
    fn bce_on_logits_matches_the_formula() {
        let device = Device::flex();
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, -1.0, 0.0, 30.0], [4, 1]),
            &device,
        );
        let got = to_vec(loss(z, &[1, 1, 0, 0])).unwrap()[0] as f64;
        let sp = |x: f64| (1.0 + x.exp()).ln(); // softplus
        let expected = (sp(-2.0) + sp(1.0) + sp(0.0) + 30.0) / 4.0;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn a_linear_head_learns_a_separable_problem() {
        let device = Device::flex();
        let mut rng = SplitMix64::new(1);
        let (n, c) = (64, 8);
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let label = i % 2;
            labels.push(label);
            for j in 0..c {
                let shift = if j == 0 {
                    if label == 1 {
                        2.0
                    } else {
                        -2.0
                    }
                } else {
                    0.0
                };
                x.push((rng.next_f64() - 0.5 + shift) as f32);
            }
        }
        let x = Tensor::<2>::from_data(TensorData::new(x, [n, c]), &device);
        let mut head = HeadTraining::new(HeadKind::GapLinear, c, 1, 0.05, 3, &device);
        let first = head.train_epoch(&x, &labels, 8, 0, 1).unwrap();
        for epoch in 2..=20 {
            head.train_epoch(&x, &labels, 8, 0, epoch).unwrap();
        }
        let last = head.evaluate(&x, &labels).unwrap();
        assert!(
            last.loss < first.loss && last.accuracy == 1.0,
            "{first:?} → {last:?}"
        );
    }

    #[test]
    fn a_restored_checkpoint_continues_exactly() {
        let device = Device::flex();
        let x: Vec<f32> = (0..48)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [12, 4]), &device);
        let labels: Vec<usize> = (0..12).map(|i| i % 2).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        for kind in [HeadKind::GapLinear, HeadKind::GapDense] {
            let new = || HeadTraining::new(kind, 4, 1, 0.01, 5, &device);
            let mut straight = new();
            straight.train_epoch(&x, &labels, 5, 0, 1).unwrap();
            let (model, optimizer) = straight.state().unwrap();
            let saved = Checkpoint {
                epoch: 1,
                model,
                optimizer,
                extra: HashMap::new(),
            };
            saved.write(&path).unwrap();
            straight.train_epoch(&x, &labels, 5, 0, 2).unwrap();
            // Another "process": a fresh head, the checkpoint, the same epoch 2.
            let mut resumed = new();
            let loaded = Checkpoint::read(&path).unwrap();
            assert_eq!(loaded.epoch, 1);
            resumed.restore(loaded.model, loaded.optimizer).unwrap();
            resumed.train_epoch(&x, &labels, 5, 0, 2).unwrap();
            for ((name, a), (_, b)) in straight
                .head()
                .pytorch_tensors()
                .into_iter()
                .zip(resumed.head().pytorch_tensors())
            {
                assert_eq!(to_vec(a).unwrap(), to_vec(b).unwrap(), "{kind} {name}");
            }
            // Without the optimizer's state the step differs (the test can fail).
            let mut fresh_optimizer = new();
            let loaded = Checkpoint::read(&path).unwrap();
            fresh_optimizer
                .restore(loaded.model, loaded.optimizer)
                .unwrap();
            fresh_optimizer.optimizer = AdamConfig::new().with_epsilon(1e-8).init();
            fresh_optimizer.train_epoch(&x, &labels, 5, 0, 2).unwrap();
            let differs =
                |t: HeadTraining| to_vec(t.head().pytorch_tensors()[0].1.clone()).unwrap();
            assert_ne!(differs(straight), differs(fresh_optimizer));
        }
    }
}
