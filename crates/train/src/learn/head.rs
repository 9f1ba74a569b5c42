//! Training the head on pooled features: burn's [`Head`] module and burn's Adam (β = 0.9,
//! 0.999, ε = 1e-8, PyTorch's defaults), mini-batches in a seeded order, binary cross-entropy on
//! the logit (one output) or cross-entropy (several). The checkpoint holds the head and the
//! optimizer's state, so a resumed run continues exactly where it stopped.

use anyhow::Result;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use model::{Head, HeadKind};

use crate::learn::epoch::{
    check_gradients, correct, loss, predictions, shuffled, train_epoch, Score,
};
use crate::tensors::to_vec;
use model::rng::SplitMix64;

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
        let device = features.device();
        let trainable = self.parameter_tensors();
        let (optimizer, learning_rate) = (&mut self.optimizer, self.learning_rate);
        let (head, score) = train_epoch(
            self.head.clone(),
            &shuffled(labels.len(), seed, epoch),
            batch_size,
            |head: &Head, batch| {
                let index: Vec<i32> = batch.iter().map(|&i| i as i32).collect();
                let index =
                    Tensor::<1, Int>::from_data(TensorData::new(index, [batch.len()]), &device);
                let x = features.clone().select(0, index);
                let y = batch.iter().map(|&i| labels[i]).collect();
                Ok((head.forward_pooled(x), y))
            },
            |head, loss| {
                let grads = GradientsParams::from_grads(loss.backward(), &head);
                check_gradients(grads.len(), trainable, "head training")?;
                Ok(optimizer.step(learning_rate, head, grads))
            },
        )?;
        self.head = head;
        Ok(score)
    }

    /// Loss and accuracy on `features` without training.
    pub fn evaluate(&self, features: &Tensor<2>, labels: &[usize]) -> Result<Score> {
        let logits = self.head().forward_pooled(features.clone());
        let l = to_vec(loss(logits.clone(), labels))?[0] as f64;
        let predicted = predictions(logits)?;
        let right = correct(&predicted, labels);
        let mut confusion = crate::learn::epoch::Confusion::default();
        confusion.add(&predicted, labels);
        Ok(Score {
            loss: l,
            accuracy: right as f64 / labels.len().max(1) as f64,
            confusion,
        })
    }

    /// The head's and the optimizer's state as burnpack bytes: (head, optimizer).
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        crate::learn::checkpoint::serialise(&self.head, &self.optimizer)
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, head: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        let trainable = self.parameter_tensors();
        self.head = crate::learn::checkpoint::restore(
            self.head.clone(),
            &mut self.optimizer,
            trainable,
            head,
            optimizer,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::checkpoint::Checkpoint;
    use crate::learn::epoch::loss;
    use std::collections::HashMap;

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
