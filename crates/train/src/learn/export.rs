//! The trained weights as files `train explain` reads: the head in PyTorch layout, and the
//! fine-tuned backbone in its weight file's own key naming.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use model::{Classifier, Head, WeightError, WeightFile};

use crate::tensors::{to_vec, NamedTensor};

/// Export the head in PyTorch layout (what `train explain --head-weights` reads), with the
/// class names in label order as the file's `classes` metadata (comma-separated).
pub fn export_head(path: &Path, head: &Head, classes: &[String]) -> Result<()> {
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
    let metadata = HashMap::from([("classes".to_string(), classes.join(","))]);
    crate::tensors::write_safetensors(path, &tensors, metadata).map(|_| ())
}

/// The tensors of a backbone weight file that the backbone reads, as (key, shape, values):
/// everything but the ImageNet classifier (VGG16's is 120 M values) and integer bookkeeping
/// (e.g. BatchNorm's num_batches_tracked). Read once; [`export_backbone`] writes them back.
pub fn backbone_tensors(file: &WeightFile) -> Result<Vec<NamedTensor>> {
    let mut tensors = Vec::new();
    for key in file.keys() {
        if key.starts_with("classifier.") || key.starts_with("_fc.") || key.starts_with("fc.") {
            continue;
        }
        let shape = file.shape(&key)?;
        match file.tensor(&key, &shape) {
            Ok(values) => tensors.push((key, shape, values)),
            // Integer bookkeeping (BatchNorm's num_batches_tracked) is not a weight.
            Err(WeightError::Dtype { .. }) => continue,
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("reading backbone tensor `{key}` to export the fine-tuned weights")
                })
            }
        }
    }
    Ok(tensors)
}

/// Write the fine-tuned backbone as a weight file in its own key naming: the original file's
/// backbone tensors ([`backbone_tensors`]) with the trained layers' weights replaced — what
/// `train explain --weights` and `[model] weights` load.
pub fn export_backbone(
    path: &Path,
    original: &[NamedTensor],
    model: &Classifier,
    from: usize,
) -> Result<()> {
    let mut trained: HashMap<String, burn::tensor::TensorData> =
        model.backbone.trained_weights(from).into_iter().collect();
    let mut tensors = Vec::with_capacity(original.len());
    for (key, shape, values) in original {
        let values = match trained.remove(key) {
            Some(data) => {
                if data.shape().to_vec() != *shape {
                    bail!(
                        "{key}: trained shape {:?}, file shape {shape:?}",
                        data.shape()
                    );
                }
                data.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{key}: {e:?}"))?
            }
            None => values.clone(),
        };
        tensors.push((key.clone(), shape.clone(), values));
    }
    if let Some(key) = trained.keys().next() {
        bail!("trained weight `{key}` is not in the original weight file");
    }
    crate::tensors::write_safetensors(path, &tensors, HashMap::new()).map(|_| ())
}
