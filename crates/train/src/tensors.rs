//! Moving tensors to the host and into safetensors files (the cache, checkpoints, heads, maps,
//! pretrained weights all use these functions): f32, or f16 for the pooled-feature cache.

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

/// Round to the nearest f16 and back: what an f16 cache stores, so a run reading the cache sees
/// exactly the values a run that filled it trained on.
pub fn round_to_f16(values: &mut [f32]) {
    for v in values {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// Values as little-endian f16 bytes (each rounded to the nearest f16): the f16 cache format.
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}

/// Little-endian f16 bytes widened to f32 values (the inverse of [`f16_bytes`]).
pub fn f16_values(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
}

/// The string metadata of a safetensors file (`None` when it is not one): reads only the header.
pub fn read_metadata(path: &Path) -> Option<HashMap<String, String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut size = [0u8; 8];
    file.read_exact(&mut size).ok()?;
    let len = u64::from_le_bytes(size);
    // A header is JSON of at most a few MB; anything larger is not one of ours.
    if len > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let metadata = json.get("__metadata__")?.as_object()?;
    Some(
        metadata
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    )
}

/// Read a safetensors file written by [`write_safetensors`] (f32) or
/// [`write_safetensors_f16`] (f16, widened to f32); any other dtype is an error.
pub fn read_safetensors(path: &Path) -> Result<F32File> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&data)
        .with_context(|| format!("{}", path.display()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&data)
        .with_context(|| format!("{}", path.display()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let values = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F16 => f16_values(view.data()).collect(),
            other => anyhow::bail!(
                "{}: tensor `{name}` is {other:?}, expected F32 or F16",
                path.display()
            ),
        };
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
    write_as(path, tensors, metadata, safetensors::Dtype::F32)
}

/// [`write_safetensors`], storing the values as f16 (half the bytes; values are rounded).
pub fn write_safetensors_f16(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
) -> Result<u64> {
    write_as(path, tensors, metadata, safetensors::Dtype::F16)
}

fn write_as(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: HashMap<String, String>,
    dtype: safetensors::Dtype,
) -> Result<u64> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            safetensors::Dtype::F16 => f16_bytes(v),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let mut views = Vec::new();
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(dtype, shape.clone(), data)
            .with_context(|| format!("tensor `{name}`"))?;
        views.push((name.clone(), view));
    }
    let metadata = (!metadata.is_empty()).then_some(metadata);
    let serialized = safetensors::serialize(views, &metadata)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::run::files::write_atomic(path, &serialized)?;
    Ok(serialized.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_files_hold_exactly_the_rounded_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut values = vec![0.1f32, 1.0 / 3.0, 1234.567, -2.5e-3, 0.0];
        let original = values.clone();
        round_to_f16(&mut values);
        assert_ne!(values, original);
        for (r, o) in values.iter().zip(&original) {
            assert!((r - o).abs() <= o.abs() * 1e-3, "{r} vs {o}");
        }
        let path = dir.path().join("x.safetensors");
        let bytes = write_safetensors_f16(
            &path,
            &[("x".into(), vec![5], original.clone())],
            HashMap::new(),
        )
        .unwrap();
        let back = read_safetensors(&path).unwrap();
        assert_eq!(
            back.tensors["x"].1, values,
            "the file holds the rounded values"
        );
        assert_eq!(back.bytes, bytes);
        // Half the payload of the f32 file.
        let f32_bytes = write_safetensors(
            &dir.path().join("y.safetensors"),
            &[("x".into(), vec![5], original)],
            HashMap::new(),
        )
        .unwrap();
        assert!(bytes < f32_bytes);
    }
}
