//! Moving tensors to the host and into f32 safetensors files (the cache, checkpoints, heads,
//! maps, pretrained weights all use these two functions).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Tensor;

/// A named f32 tensor on the host: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A tensor's values, row-major, on the host.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| anyhow::anyhow!("cannot read tensor: {e:?}"))
}

/// An f32 safetensors file read back: tensors by name, string metadata, size in bytes.
pub struct F32File {
    /// (shape, values) by name.
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// The header's metadata.
    pub metadata: HashMap<String, String>,
    /// The file's size.
    pub bytes: u64,
}

/// Read a safetensors file written by [`write_safetensors`]; any non-f32 tensor is an error.
pub fn read_safetensors(path: &Path) -> Result<F32File> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&data)
        .with_context(|| format!("{}", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&data)
        .with_context(|| format!("{}", path.display()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            anyhow::bail!(
                "{}: tensor `{name}` is {:?}, expected F32",
                path.display(),
                view.dtype()
            );
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(F32File {
        tensors,
        metadata,
        bytes: data.len() as u64,
    })
}

/// Write f32 tensors (with string metadata) to a safetensors file atomically, creating the
/// parent directory. Returns the file's size in bytes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
) -> Result<u64> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .with_context(|| format!("tensor `{name}`"))?;
        views.push((name.clone(), view));
    }
    let metadata = (!metadata.is_empty()).then_some(metadata);
    let serialized = safetensors::serialize(views, &metadata)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::run::write_atomic(path, &serialized)?;
    Ok(serialized.len() as u64)
}
