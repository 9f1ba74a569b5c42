//! Reading named tensors from weight files: PyTorch `.pth` (zip and legacy pickle) and
//! `.safetensors`.
//!
//! Loading never executes code. PyTorch files are parsed by `pytorch-reader`, which
//! interprets pickle opcodes without calling anything; on top of that, [`WeightFile::open`]
//! refuses any pickle that names a Python global outside the allow-list a state dict needs
//! (`torch.*`, `collections.OrderedDict`), as `torch.load(weights_only=True)` does, so a file
//! carrying a payload such as `os.system` is rejected with an error that names it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pytorch_reader::{DType as PtDType, PickleValue, PytorchReader};
use safetensors::{Dtype as StDtype, SafeTensors};

/// An error while reading a weight file. Every variant names the file; those about one
/// tensor name the tensor too.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be opened or read.
    #[error("cannot read weight file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The file is not a weight file this reader understands, or is corrupt/truncated.
    #[error("{path} is not a readable weight file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The pickle names a Python global that a plain state dict never needs.
    #[error(
        "refusing to load {path}: its pickle references `{global}`, which a state dict never \
         needs (possible code-execution payload); nothing was executed"
    )]
    UnsafePickle {
        /// The file.
        path: PathBuf,
        /// The offending Python global, e.g. `posix.system`.
        global: String,
    },
    /// A tensor the model needs is not in the file.
    #[error("{path} has no tensor `{key}` (the file holds {available} tensors{hint})")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The missing tensor.
        key: String,
        /// How many tensors the file holds.
        available: usize,
        /// A short list of keys that exist, to help spot a prefix mismatch.
        hint: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{key}` in {path} has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        key: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has an element type that is not a float.
    #[error("tensor `{key}` in {path} has element type {dtype}, expected a float type")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        key: String,
        /// The element type found.
        dtype: String,
    },
}

/// A weight file opened for reading tensors by name.
pub struct WeightFile {
    path: PathBuf,
    source: Source,
}

enum Source {
    Pytorch(HashMap<String, pytorch_reader::Tensor>),
    Safetensors(Vec<u8>),
}

/// Python globals a state-dict pickle may reference.
fn allowed_global(name: &str) -> bool {
    name.starts_with("torch.") || name == "collections.OrderedDict"
}

impl WeightFile {
    /// Open `path`, detecting the format from its first bytes (zip or legacy pickle: PyTorch;
    /// otherwise safetensors).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightError> {
        let path = path.as_ref().to_path_buf();
        let io = |cause| WeightError::Io {
            path: path.clone(),
            cause,
        };
        let mut head = [0u8; 9];
        let mut file = File::open(&path).map_err(io)?;
        let read = file.read(&mut head).map_err(io)?;
        // safetensors: u64 header length, then the JSON header's `{`. PyTorch: a zip archive
        // (`PK`) or a pickle (PROTO opcode 0x80).
        let is_safetensors = read == 9 && head[8] == b'{';
        let source = if !is_safetensors && read >= 2 && (head[..2] == *b"PK" || head[0] == 0x80) {
            Source::Pytorch(open_pytorch(&path)?)
        } else {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io)?;
            // Validate the header and every tensor's extent now, so a truncated file fails here.
            SafeTensors::deserialize(&bytes).map_err(|e| WeightError::Format {
                path: path.clone(),
                reason: if is_safetensors {
                    format!("safetensors: {e} (truncated or corrupt?)")
                } else {
                    "neither a PyTorch file (zip or pickle) nor safetensors".to_string()
                },
            })?;
            Source::Safetensors(bytes)
        };
        Ok(Self { path, source })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of all tensors in the file, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &self.source {
            Source::Pytorch(map) => map.keys().cloned().collect(),
            Source::Safetensors(bytes) => SafeTensors::deserialize(bytes)
                .map(|st| st.names().into_iter().cloned().collect())
                .unwrap_or_default(),
        };
        keys.sort();
        keys
    }

    /// Whether the file holds a tensor named `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.keys().iter().any(|k| k == key)
    }

    /// The shape of tensor `key`.
    pub fn shape(&self, key: &str) -> Result<Vec<usize>, WeightError> {
        match &self.source {
            Source::Pytorch(map) => map
                .get(key)
                .map(|t| t.shape().to_vec())
                .ok_or_else(|| self.missing(key)),
            Source::Safetensors(bytes) => SafeTensors::deserialize(bytes)
                .ok()
                .and_then(|st| st.tensor(key).ok().map(|v| v.shape().to_vec()))
                .ok_or_else(|| self.missing(key)),
        }
    }

    /// The tensor `key` as f32 values (row-major), checking that its shape is `expected`
    /// before reading any data, so memory is bounded by what the caller expects.
    /// f16, bf16 and f64 tensors are converted.
    pub fn tensor(&self, key: &str, expected: &[usize]) -> Result<Vec<f32>, WeightError> {
        let (dtype, bytes) = self.raw(key, expected)?;
        let values = match dtype {
            FloatType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            FloatType::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            FloatType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            FloatType::Bf16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        Ok(values)
    }

    /// Tensor `key`'s element type and bytes, once its shape is checked to be `expected`.
    /// The shape is checked before any data is read: a PyTorch view (a stride-0 "expand") can
    /// declare far more elements than its file holds, and reading it materialises them.
    fn raw(&self, key: &str, expected: &[usize]) -> Result<(FloatType, Vec<u8>), WeightError> {
        let dtype_error = |dtype: String| WeightError::Dtype {
            path: self.path.clone(),
            key: key.to_string(),
            dtype,
        };
        let check_shape = |found: &[usize]| {
            if found == expected {
                Ok(())
            } else {
                Err(WeightError::Shape {
                    path: self.path.clone(),
                    key: key.to_string(),
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                })
            }
        };
        match &self.source {
            Source::Pytorch(map) => {
                let t = map.get(key).ok_or_else(|| self.missing(key))?;
                check_shape(t.shape())?;
                let dtype = match t.dtype() {
                    PtDType::F32 => FloatType::F32,
                    PtDType::F64 => FloatType::F64,
                    PtDType::F16 => FloatType::F16,
                    PtDType::BF16 => FloatType::Bf16,
                    other => return Err(dtype_error(format!("{other:?}"))),
                };
                let bytes = t.read().map_err(|e| WeightError::Format {
                    path: self.path.clone(),
                    reason: format!("tensor `{key}`: {e}"),
                })?;
                Ok((dtype, bytes))
            }
            Source::Safetensors(bytes) => {
                let st = SafeTensors::deserialize(bytes).map_err(|e| WeightError::Format {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
                let view = st.tensor(key).map_err(|_| self.missing(key))?;
                check_shape(view.shape())?;
                let dtype = match view.dtype() {
                    StDtype::F32 => FloatType::F32,
                    StDtype::F64 => FloatType::F64,
                    StDtype::F16 => FloatType::F16,
                    StDtype::BF16 => FloatType::Bf16,
                    other => return Err(dtype_error(format!("{other:?}"))),
                };
                Ok((dtype, view.data().to_vec()))
            }
        }
    }

    fn missing(&self, key: &str) -> WeightError {
        let keys = self.keys();
        let mut hint: Vec<&str> = keys.iter().take(4).map(String::as_str).collect();
        if keys.len() > 4 {
            hint.push("...");
        }
        WeightError::Missing {
            path: self.path.clone(),
            key: key.to_string(),
            available: keys.len(),
            hint: if keys.is_empty() {
                String::new()
            } else {
                format!(": {}", hint.join(", "))
            },
        }
    }
}

#[derive(Clone, Copy)]
enum FloatType {
    F32,
    F64,
    F16,
    Bf16,
}

fn open_pytorch(path: &Path) -> Result<HashMap<String, pytorch_reader::Tensor>, WeightError> {
    let format_error = |e: pytorch_reader::PytorchError| {
        let reason = e.to_string();
        // A pickle whose root is a call (`os.system(...)`) rather than a dict.
        if let Some(found) = reason
            .rsplit("found ")
            .next()
            .filter(|_| reason.contains("root"))
        {
            let global = found.trim().to_string();
            if !allowed_global(&global) && global.contains('.') {
                return WeightError::UnsafePickle {
                    path: path.to_path_buf(),
                    global,
                };
            }
        }
        WeightError::Format {
            path: path.to_path_buf(),
            reason,
        }
    };
    let value = PytorchReader::read_pickle_data(path, None).map_err(format_error)?;
    if let Some(global) = first_disallowed_global(&value) {
        return Err(WeightError::UnsafePickle {
            path: path.to_path_buf(),
            global,
        });
    }
    let reader = PytorchReader::new(path).map_err(format_error)?;
    Ok(reader.into_tensors())
}

/// The first Python object in the pickle that is neither plain data nor on the allow-list.
fn first_disallowed_global(value: &PickleValue) -> Option<String> {
    match value {
        PickleValue::Unsupported(name) if !allowed_global(name) => Some(name.clone()),
        PickleValue::List(items) => items.iter().find_map(first_disallowed_global),
        PickleValue::Dict(map) => map.values().find_map(first_disallowed_global),
        _ => None,
    }
}
