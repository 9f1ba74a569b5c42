//! What a run trains — the head alone on pooled features, or the top of the backbone with the
//! head on the cut's activations — behind one interface for the loop, and the checkpoint that
//! lets a run resume exactly: the trained weights, the optimizer's state, the callbacks' state
//! and the epoch, in one safetensors file written atomically.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use model::{Classifier, WeightFile};

use crate::head_training::{HeadTraining, Score};
use crate::sets::{LabelledFeatures, Rows};
use crate::top_training::TopTraining;

/// What a run trains.
// One value per set / per run: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Training {
    /// The head, on pooled features of the frozen backbone.
    Head(HeadTraining),
    /// Backbone layers from the cut up, and the head.
    Top(TopTraining),
}

impl Training {
    /// One epoch over `set`.
    pub fn train_epoch(
        &mut self,
        set: &LabelledFeatures,
        batch_size: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<Score> {
        match (self, &set.x) {
            (Training::Head(t), Rows::Pooled(x)) => {
                t.train_epoch(x, &set.y, batch_size, seed, epoch)
            }
            (Training::Top(t), Rows::Cut(x)) => t.train_epoch(x, &set.y, batch_size, seed, epoch),
            _ => bail!("the training set's rows do not fit what this run trains"),
        }
    }

    /// Loss and accuracy on `set` without training.
    pub fn evaluate(&self, set: &LabelledFeatures) -> Result<Score> {
        match (self, &set.x) {
            (Training::Head(t), Rows::Pooled(x)) => t.evaluate(x, &set.y),
            (Training::Top(t), Rows::Cut(x)) => t.evaluate(x, &set.y),
            _ => bail!("a set's rows do not fit what this run trains"),
        }
    }

    /// Put the weights trained so far into `model` (the one the callbacks explain).
    pub fn update(&self, model: &mut Classifier) {
        match self {
            Training::Head(t) => model.head = t.head(),
            Training::Top(t) => *model = t.model(),
        }
    }

    /// The trained weights' and the optimizer's state as bytes.
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        match self {
            Training::Head(t) => t.state(),
            Training::Top(t) => t.state(),
        }
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, model: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        match self {
            Training::Head(t) => t.restore(model, optimizer),
            Training::Top(t) => t.restore(model, optimizer),
        }
    }
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The epoch it was taken after.
    pub epoch: usize,
    /// The trained weights (burnpack bytes).
    pub model: Vec<u8>,
    /// The optimizer's state (burnpack bytes).
    pub optimizer: Vec<u8>,
    /// More named blobs: the callbacks' state (`callback/<name>/<key>`).
    pub extra: HashMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// Write atomically as safetensors: every blob a u8 tensor, the epoch in the metadata.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut blobs: Vec<(&str, &Vec<u8>)> =
            vec![("model", &self.model), ("optimizer", &self.optimizer)];
        blobs.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v)));
        let views = blobs
            .into_iter()
            .map(|(name, bytes)| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::U8,
                    vec![bytes.len()],
                    bytes,
                )
                .map(|view| (name.to_string(), view))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([("epoch".to_string(), self.epoch.to_string())]);
        let bytes = safetensors::serialize(views, &Some(metadata))?;
        crate::files::write_atomic(path, &bytes)
    }

    /// Read a checkpoint [`write`](Self::write) wrote (or an older one, whose weights are
    /// named `head`).
    pub fn read(path: &Path) -> Result<Self> {
        let context = || format!("checkpoint {}", path.display());
        let data = std::fs::read(path).with_context(context)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&data).with_context(context)?;
        let epoch = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("epoch"))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{} lacks `epoch`", context()))?;
        let file = safetensors::SafeTensors::deserialize(&data).with_context(context)?;
        let mut blobs = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != safetensors::Dtype::U8 {
                bail!("{}: `{name}` is not u8", context());
            }
            blobs.insert(name, view.data().to_vec());
        }
        let mut take = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| blobs.remove(*n))
                .with_context(|| format!("{} lacks `{}`", context(), names[0]))
        };
        let model = take(&["model", "head"])?;
        let optimizer = take(&["optimizer"])?;
        Ok(Self {
            epoch,
            model,
            optimizer,
            extra: blobs,
        })
    }
}

/// Write the fine-tuned backbone as a weight file in its own key naming: every tensor of the
/// original file that the backbone reads, with the trained layers' weights replaced — what
/// `train explain --weights` and `[model] weights` load.
pub fn export_backbone(
    path: &Path,
    original: &WeightFile,
    model: &Classifier,
    from: usize,
) -> Result<()> {
    let mut trained: HashMap<String, burn::tensor::TensorData> =
        model.backbone.trained_weights(from).into_iter().collect();
    let mut tensors = Vec::new();
    for key in original.keys() {
        // The ImageNet classifier is not part of the backbone (VGG16's is 120 M values).
        if key.starts_with("classifier.") || key.starts_with("_fc.") {
            continue;
        }
        let shape = original.shape(&key)?;
        let values = match trained.remove(&key) {
            Some(data) => {
                if data.shape().to_vec() != shape {
                    bail!(
                        "{key}: trained shape {:?}, file shape {shape:?}",
                        data.shape()
                    );
                }
                data.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{key}: {e:?}"))?
            }
            // Integer bookkeeping (e.g. BatchNorm's num_batches_tracked) is not read.
            None => match original.tensor(&key, &shape) {
                Ok(values) => values,
                Err(_) => continue,
            },
        };
        tensors.push((key, shape, values));
    }
    if let Some(key) = trained.keys().next() {
        bail!(
            "trained weight `{key}` is not in {}",
            original.path().display()
        );
    }
    crate::tensors::write_safetensors(path, &tensors, HashMap::new()).map(|_| ())
}
