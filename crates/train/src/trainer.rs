//! Training the head on pooled features: mini-batches in a seeded order, binary cross-entropy
//! on the logit (one output) or cross-entropy (several), and Adam with PyTorch's semantics
//! (β = 0.9, 0.999, ε = 1e-8) whose state is plain tensors, so a checkpoint holds all of it.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use model::dense_forward;

use crate::rng::SplitMix64;
use crate::tensors::to_vec;

/// One linear layer's parameters: weight [in, out] (burn layout) and bias [out].
pub type Layer = (Tensor<2>, Tensor<1>);

/// Adam's moments for one layer.
#[derive(Clone)]
struct Moments {
    m: Layer,
    v: Layer,
}

/// The head being trained, with its optimiser state.
pub struct HeadTrainer {
    /// The head's layers (first first).
    pub layers: Vec<Layer>,
    moments: Vec<Moments>,
    /// Adam steps taken.
    pub step: u64,
    learning_rate: f64,
}

/// Loss and accuracy over a pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Mean loss.
    pub loss: f64,
    /// Share of correct predictions.
    pub accuracy: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

fn zeros_like(layer: &Layer) -> Layer {
    (layer.0.zeros_like(), layer.1.zeros_like())
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

impl HeadTrainer {
    /// A fresh head: PyTorch's `nn.Linear` initialisation U(−1/√in, 1/√in), from `seed`.
    pub fn new(dims: &[usize], learning_rate: f64, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x4ead_0000);
        let layers: Vec<Layer> = dims
            .windows(2)
            .map(|d| {
                let (d_in, d_out) = (d[0], d[1]);
                let bound = 1.0 / (d_in as f64).sqrt();
                let mut uniform = |count: usize| -> Vec<f32> {
                    (0..count)
                        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                        .collect()
                };
                let w = uniform(d_in * d_out);
                let b = uniform(d_out);
                (
                    Tensor::from_data(TensorData::new(w, [d_in, d_out]), device),
                    Tensor::from_data(TensorData::new(b, [d_out]), device),
                )
            })
            .collect();
        let moments = layers
            .iter()
            .map(|l| Moments {
                m: zeros_like(l),
                v: zeros_like(l),
            })
            .collect();
        Self {
            layers,
            moments,
            step: 0,
            learning_rate,
        }
    }

    /// Logits for pooled features [N, C].
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        dense_forward(features, &self.layers)
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
            let leaves: Vec<Layer> = self
                .layers
                .iter()
                .map(|(w, b)| {
                    (
                        w.clone().autodiff().require_grad(),
                        b.clone().autodiff().require_grad(),
                    )
                })
                .collect();
            let logits = dense_forward(x, &leaves);
            let batch_loss = loss(logits.clone(), &y);
            let grads = batch_loss.backward();
            loss_sum += to_vec(batch_loss.without_autodiff())?[0] as f64 * batch.len() as f64;
            let predicted = predictions(logits.without_autodiff())?;
            correct += predicted.iter().zip(&y).filter(|(p, t)| p == t).count();
            let mut gradients = Vec::with_capacity(leaves.len());
            for (w, b) in &leaves {
                let gw = w.grad(&grads).context("no gradient for a head weight")?;
                let gb = b.grad(&grads).context("no gradient for a head bias")?;
                gradients.push((gw, gb));
            }
            self.adam_step(gradients);
        }
        Ok(Score {
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
        })
    }

    fn adam_step(&mut self, gradients: Vec<Layer>) {
        self.step += 1;
        let t = self.step as i32;
        let correction1 = 1.0 - BETA1.powi(t);
        let correction2 = 1.0 - BETA2.powi(t);
        let lr = self.learning_rate;
        for ((layer, moments), (gw, gb)) in
            self.layers.iter_mut().zip(&mut self.moments).zip(gradients)
        {
            macro_rules! update {
                ($p:expr, $m:expr, $v:expr, $g:expr) => {{
                    $m = $m.clone() * BETA1 + $g.clone() * (1.0 - BETA1);
                    $v = $v.clone() * BETA2 + $g.clone() * $g * (1.0 - BETA2);
                    let denom = ($v.clone() / correction2).sqrt() + ADAM_EPS;
                    $p = $p.clone() - $m.clone() / denom * (lr / correction1);
                }};
            }
            update!(layer.0, moments.m.0, moments.v.0, gw);
            update!(layer.1, moments.m.1, moments.v.1, gb);
        }
    }

    /// Loss and accuracy on `features` without training.
    pub fn evaluate(&self, features: &Tensor<2>, labels: &[usize]) -> Result<Score> {
        let logits = self.logits(features.clone());
        let l = to_vec(loss(logits.clone(), labels))?[0] as f64;
        let predicted = predictions(logits)?;
        let correct = predicted.iter().zip(labels).filter(|(p, t)| p == t).count();
        Ok(Score {
            loss: l,
            accuracy: correct as f64 / labels.len().max(1) as f64,
        })
    }

    /// Every tensor of the state, by name (layers and Adam moments; burn layout).
    pub fn state(&self) -> Vec<(String, Tensor<2>)> {
        let mut out = Vec::new();
        for (i, ((w, b), m)) in self.layers.iter().zip(&self.moments).enumerate() {
            for (prefix, (tw, tb)) in [
                ("", (w, b)),
                ("adam.m.", (&m.m.0, &m.m.1)),
                ("adam.v.", (&m.v.0, &m.v.1)),
            ] {
                out.push((format!("{prefix}fc{}.weight", i + 1), tw.clone()));
                out.push((
                    format!("{prefix}fc{}.bias", i + 1),
                    tb.clone().unsqueeze_dim(0),
                ));
            }
        }
        out
    }

    /// Restore [`state`](Self::state) (as 2-D tensors by name) and the step count.
    pub fn restore(&mut self, mut tensors: HashMap<String, Tensor<2>>, step: u64) -> Result<()> {
        let mut take = |name: String, like: &Tensor<2>| -> Result<Tensor<2>> {
            let t = tensors
                .remove(&name)
                .with_context(|| format!("checkpoint lacks `{name}`"))?;
            if t.dims() != like.dims() {
                bail!(
                    "checkpoint tensor `{name}` has shape {:?}, expected {:?}",
                    t.dims(),
                    like.dims()
                );
            }
            Ok(t)
        };
        for (i, (layer, m)) in self.layers.iter_mut().zip(&mut self.moments).enumerate() {
            for (prefix, target) in [("", layer), ("adam.m.", &mut m.m), ("adam.v.", &mut m.v)] {
                target.0 = take(format!("{prefix}fc{}.weight", i + 1), &target.0)?;
                let bias = take(
                    format!("{prefix}fc{}.bias", i + 1),
                    &target.1.clone().unsqueeze_dim(0),
                )?;
                target.1 = bias.squeeze_dim(0);
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut head = HeadTrainer::new(&[c, 1], 0.05, 3, &device);
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
}
