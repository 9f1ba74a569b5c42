//! The run's labelled sets as the head sees them: pooled backbone features of every readable
//! image, with the labels and samples behind the rows.

use anyhow::{bail, Result};
use burn::tensor::Tensor;

use crate::config::Config;
use crate::data::{self, Dataset, Sample};
use crate::features::{Extractor, PooledFeatures};

/// One set's pooled features at the head's layer.
pub struct LabelledFeatures {
    /// Features [N, C] of the readable images.
    pub x: Tensor<2>,
    /// Their labels.
    pub y: Vec<usize>,
    /// Their samples (unreadable images are left out).
    pub samples: Vec<Sample>,
    /// What extracting them cost and found (timings, cache, skipped files).
    pub pooled: PooledFeatures,
}

impl LabelledFeatures {
    /// Pooled features of `set` at `layer` (from the cache when possible).
    pub fn extract(extractor: &Extractor, set: &Dataset, what: &str, layer: &str) -> Result<Self> {
        let pooled = extractor.pooled(set, what)?;
        let samples: Vec<Sample> = pooled
            .kept
            .iter()
            .map(|&i| set.samples[i].clone())
            .collect();
        Ok(Self {
            x: pooled.by_layer[layer].clone(),
            y: samples.iter().map(|s| s.label).collect(),
            samples,
            pooled,
        })
    }
}

/// A `[[data.eval]]` set, scored every epoch like the validation set.
pub struct EvalSet {
    /// Its name (tags `accuracy/<name>`, columns `<name>_accuracy`).
    pub name: String,
    /// Its features.
    pub features: LabelledFeatures,
}

/// Every labelled set of a run.
pub struct FeatureSets {
    /// The training set.
    pub train: LabelledFeatures,
    /// The validation set.
    pub val: LabelledFeatures,
    /// More evaluation sets.
    pub evals: Vec<EvalSet>,
}

impl FeatureSets {
    /// Extract every set of `config` at `layer`; eval sets must have the training classes.
    pub fn extract(
        extractor: &Extractor,
        config: &Config,
        train: &Dataset,
        val: &Dataset,
        layer: &str,
    ) -> Result<Self> {
        let train_features = LabelledFeatures::extract(extractor, train, "train", layer)?;
        let val_features = LabelledFeatures::extract(extractor, val, "val", layer)?;
        let mut evals = Vec::new();
        for e in &config.data.eval {
            let set = data::scan(&e.dir, &format!("[[data.eval]] {}", e.name))?;
            if set.classes != train.classes {
                bail!(
                    "[[data.eval]] {}: classes {:?} differ from training classes {:?}",
                    e.name,
                    set.classes,
                    train.classes
                );
            }
            evals.push(EvalSet {
                name: e.name.clone(),
                features: LabelledFeatures::extract(extractor, &set, &e.name, layer)?,
            });
        }
        Ok(Self {
            train: train_features,
            val: val_features,
            evals,
        })
    }

    /// Every set with its name, training set first.
    pub fn named(&self) -> Vec<(&str, &LabelledFeatures)> {
        [("train", &self.train), ("val", &self.val)]
            .into_iter()
            .chain(self.evals.iter().map(|e| (e.name.as_str(), &e.features)))
            .collect()
    }
}
