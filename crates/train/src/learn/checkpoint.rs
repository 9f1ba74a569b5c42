//! The checkpoint that lets a run resume exactly: the trained weights, the optimizer's state,
//! the callbacks' state and the epoch, in one safetensors file written atomically.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer, OptimizerRecord};
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

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
        crate::run::files::write_atomic(path, &bytes)
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

/// The checkpoint blob name of callback `callback`'s state entry `key`.
pub fn callback_blob(callback: &str, key: &str) -> String {
    format!("callback/{callback}/{key}")
}
