//! What a run trains — the head alone on pooled features, or the top of the backbone with the
//! head on the cut's activations — behind one interface for the loop, and the checkpoint that
//! lets a run resume exactly: the trained weights, the optimizer's state, the callbacks' state
//! and the epoch, in one safetensors file written atomically.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use model::{Classifier, WeightFile};

use crate::head_training::{HeadTraining, Score};
use crate::sets::{LabelledFeatures, Rows};
use crate::tensors::NamedTensor;
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

/// A trained module's and its optimizer's state as burnpack bytes: (module, optimizer).
pub fn serialise<M: Module>(module: &M, optimizer: &ModuleOptimizer) -> Result<(Vec<u8>, Vec<u8>)> {
    let module = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the trained weights: {e}"))?;
    let optimizer = optimizer
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer: {e}"))?;
    Ok((module.to_vec(), optimizer.to_vec()))
}

/// `module` with the weights of a [`serialise`]d state, and `optimizer` with its state;
/// `trainable` is the number of parameter tensors the optimizer updates.
pub fn restore<M: Module>(
    module: M,
    optimizer: &mut ModuleOptimizer,
    trainable: usize,
    module_bytes: Vec<u8>,
    optimizer_bytes: Vec<u8>,
) -> Result<M> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(module_bytes))
        .map_err(|e| anyhow::anyhow!("the trained weights: {e}"))?;
    let module = module
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("the trained weights: {e}"))?;
    let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(optimizer_bytes))
        .map_err(|e| anyhow::anyhow!("the optimizer: {e}"))?;
    // Adam keeps two moments per parameter; a record that misses any would silently restart
    // that parameter's moments.
    let expected = 2 * trainable;
    if !record.is_empty() && record.len() != expected {
        bail!(
            "the optimizer's state has {} tensors, expected {expected}",
            record.len()
        );
    }
    let empty = std::mem::replace(optimizer, AdamConfig::new().init());
    *optimizer = empty.load_record(record);
    Ok(module)
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

/// The tensors of a backbone weight file that the backbone reads, as (key, shape, values):
/// everything but the ImageNet classifier (VGG16's is 120 M values) and integer bookkeeping
/// (e.g. BatchNorm's num_batches_tracked). Read once; [`export_backbone`] writes them back.
pub fn backbone_tensors(file: &WeightFile) -> Result<Vec<NamedTensor>> {
    let mut tensors = Vec::new();
    for key in file.keys() {
        if key.starts_with("classifier.") || key.starts_with("_fc.") {
            continue;
        }
        let shape = file.shape(&key)?;
        if let Ok(values) = file.tensor(&key, &shape) {
            tensors.push((key, shape, values));
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

/// The checkpoint blob name of callback `callback`'s state entry `key`.
pub fn callback_blob(callback: &str, key: &str) -> String {
    format!("callback/{callback}/{key}")
}
