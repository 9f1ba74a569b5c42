//! The run's labelled sets as training sees them: pooled backbone features of every readable
//! image (only the head trains) or the activations at the cut (the top of the backbone trains,
//! streamed from disk), with the labels and samples behind the rows.

use anyhow::{bail, Result};
use burn::tensor::Tensor;

use crate::config::Config;
use crate::data::{self, Dataset, Sample};
use crate::features::cut::CutActivations;
use crate::features::{Extractor, PooledFeatures};

/// What training reads of a set, one row per readable image.
// One value per set / per run: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Rows {
    /// Pooled features [N, C] at the head's layer (only the head trains).
    Pooled(Tensor<2>),
    /// The input of the first trained layer, on disk.
    Cut(CutActivations),
}

/// Where training starts: the head's pooled input, or the input of backbone layer `cut`.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// Only the head trains: pooled features of this layer.
    Pooled(&'a str),
    /// Layers `cut..` train.
    Cut(usize),
}

/// One set's rows with labels.
pub struct LabelledFeatures {
    /// The rows of the readable images.
    pub x: Rows,
    /// Their labels.
    pub y: Vec<usize>,
    /// Their samples (unreadable images are left out).
    pub samples: Vec<Sample>,
    /// What extracting them cost and found (timings, cache, skipped files).
    pub extracted: PooledFeatures,
}

impl LabelledFeatures {
    /// The rows of `set` from `start` (from the cache when possible).
    pub fn extract(extractor: &Extractor, set: &Dataset, what: &str, start: Start) -> Result<Self> {
        let (x, extracted) = match start {
            Start::Pooled(layer) => {
                let pooled = extractor.pooled(set, what)?;
                (Rows::Pooled(pooled.by_layer[layer].clone()), pooled)
            }
            Start::Cut(cut) => {
                let (rows, extracted) = extractor.cut(set, what, cut)?;
                (Rows::Cut(rows), extracted)
            }
        };
        let samples: Vec<Sample> = extracted
            .kept
            .iter()
            .map(|&i| set.samples[i].clone())
            .collect();
        Ok(Self {
            x,
            y: samples.iter().map(|s| s.label).collect(),
            samples,
            extracted,
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
    /// Extract the training and validation sets and the `[[data.eval]]` sets `evals` (name,
    /// scanned set; see [`scan_eval_sets`]) from `start`.
    pub fn extract(
        extractor: &Extractor,
        train: &Dataset,
        val: &Dataset,
        evals: &[(String, Dataset)],
        start: Start,
    ) -> Result<Self> {
        let train_features = LabelledFeatures::extract(extractor, train, "train", start)?;
        let val_features = LabelledFeatures::extract(extractor, val, "val", start)?;
        let mut eval_sets = Vec::new();
        for (name, set) in evals {
            eval_sets.push(EvalSet {
                name: name.clone(),
                features: LabelledFeatures::extract(extractor, set, name, start)?,
            });
        }
        Ok(Self {
            train: train_features,
            val: val_features,
            evals: eval_sets,
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

/// Scan `config`'s `[[data.eval]]` sets (name, set); each must have the training classes.
pub fn scan_eval_sets(config: &Config, train: &Dataset) -> Result<Vec<(String, Dataset)>> {
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
        evals.push((e.name.clone(), set));
    }
    Ok(evals)
}
