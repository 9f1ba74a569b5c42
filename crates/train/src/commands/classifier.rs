//! A trained classifier loaded from a run's files, for the commands that explain one
//! (`train explain`, `train sanity`).

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use model::{BackboneKind, Classifier, HeadKind, WeightFile};

/// A trained classifier from its files: the backbone's weights and the head exported by a run
/// (`head.safetensors`, PyTorch layout). Used by `train explain` and `train sanity`; `keys`
/// names where the two paths came from (flags or config keys), for the error messages.
pub fn load_classifier(
    backbone: BackboneKind,
    weights: &Path,
    head: HeadKind,
    head_weights: &Path,
    keys: [&str; 2],
    device: &Device,
) -> Result<Classifier> {
    let weight_file = WeightFile::open(weights).with_context(|| keys[0].to_string())?;
    let head_file = WeightFile::open(head_weights).with_context(|| keys[1].to_string())?;
    Classifier::load(backbone, &weight_file, head, &head_file, device).with_context(|| {
        format!(
            "{} {} with {} {} ({backbone}, {head} head)",
            keys[0],
            weights.display(),
            keys[1],
            head_weights.display()
        )
    })
}
