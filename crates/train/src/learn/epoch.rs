//! One training epoch, the same for every trainer (the head on pooled features, the top of the
//! backbone on the cut, `train pretrain` on synthetic images): mini-batches in a given order,
//! forward, loss, backward, optimizer step; the mean loss and accuracy of the pass. The loss
//! (BCE on one logit, cross-entropy on several) and the predictions are here too.

use anyhow::{bail, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

use crate::tensors::to_vec;
use model::rng::SplitMix64;

/// Loss and accuracy over a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Mean loss.
    pub loss: f64,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Counts of (true class, predicted class).
    pub confusion: Confusion,
}

/// A confusion matrix: `counts[true][predicted]`, growing to the largest class seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confusion {
    /// Rows: the true class; columns: the predicted class.
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    /// Count each (label, prediction) pair.
    pub fn add(&mut self, predicted: &[usize], labels: &[usize]) {
        for (&p, &t) in predicted.iter().zip(labels) {
            let n = self.counts.len().max(p + 1).max(t + 1);
            self.counts.resize(n, Vec::new());
            for row in &mut self.counts {
                row.resize(n, 0);
            }
            self.counts[t][p] += 1;
        }
    }

    /// The matrix padded to `classes` × `classes`.
    pub fn padded(&self, classes: usize) -> Vec<Vec<usize>> {
        let n = classes.max(self.counts.len());
        (0..n)
            .map(|t| {
                (0..n)
                    .map(|p| {
                        self.counts
                            .get(t)
                            .and_then(|r| r.get(p))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect()
            })
            .collect()
    }

    /// The share of class `class`'s images predicted as `class` (`None` when it has none).
    pub fn class_accuracy(&self, class: usize) -> Option<f64> {
        let row = self.counts.get(class)?;
        let total: usize = row.iter().sum();
        (total > 0).then(|| row[class] as f64 / total as f64)
    }
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
        .map(|row| callbacks::scores::probabilities::prediction(row).0)
        .collect())
}

/// The order of the rows in epoch `epoch` of a run seeded `seed` (the same for head-only and
/// fine-tuning runs, so their batches match).
pub fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(epoch as u64)).shuffle(&mut order);
    order
}

/// Every trained parameter tensor must get a gradient each step: one that does not would
/// silently stop learning (a broken autodiff graph).
pub fn check_gradients(got: usize, trained: usize, what: &str) -> Result<()> {
    if got != trained {
        bail!("{what}: gradients for {got} of the {trained} trained parameter tensors");
    }
    Ok(())
}

/// How many `predicted` classes equal `labels`.
pub fn correct(predicted: &[usize], labels: &[usize]) -> usize {
    predicted.iter().zip(labels).filter(|(p, t)| p == t).count()
}

/// One pass over `order` in batches of `batch_size`: `forward(model, rows)` gives the rows'
/// logits (tracked by autodiff) and labels, `step(model, loss)` runs the backward pass and the
/// optimizer and returns the updated model. Returns the model and the pass's mean loss (each
/// batch's loss weighted by its size) and accuracy.
pub fn train_epoch<M>(
    mut model: M,
    order: &[usize],
    batch_size: usize,
    mut forward: impl FnMut(&M, &[usize]) -> Result<(Tensor<2>, Vec<usize>)>,
    mut step: impl FnMut(M, Tensor<1>) -> Result<M>,
) -> Result<(M, Score)> {
    let (mut loss_sum, mut right) = (0.0f64, 0usize);
    let mut confusion = Confusion::default();
    for batch in order.chunks(batch_size.max(1)) {
        let (logits, labels) = forward(&model, batch)?;
        let batch_loss = loss(logits.clone(), &labels);
        loss_sum += to_vec(batch_loss.clone().without_autodiff())?[0] as f64 * batch.len() as f64;
        let predicted = predictions(logits.without_autodiff())?;
        right += correct(&predicted, &labels);
        confusion.add(&predicted, &labels);
        model = step(model, batch_loss)?;
    }
    let n = order.len().max(1) as f64;
    Ok((
        model,
        Score {
            loss: loss_sum / n,
            accuracy: right as f64 / n,
            confusion,
        },
    ))
}
