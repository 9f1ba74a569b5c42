//! Weight loading: the three formats, and files that must be rejected with a clear error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use model::{Vgg16, WeightError, WeightFile};

fn fixture_dir() -> PathBuf {
    let shared = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = shared.join("fixtures/vgg16-w8-parity");
    assert!(
        dir.is_dir(),
        "FIXTURES MISSING: {} not found. Set SHARED_DIR to the shared data directory.",
        dir.display()
    );
    dir
}

fn conv_values(vgg: &Vgg16) -> Vec<Vec<f32>> {
    vgg.convs
        .iter()
        .map(|c| c.weight.val().into_data().try_to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn all_three_formats_load_the_same_weights() {
    let device = Device::flex();
    let dir = fixture_dir();
    let load = |name: &str| {
        let file = WeightFile::open(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        Vgg16::load(&file, &device).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let reference = load("vgg16_features.safetensors");
    assert_eq!(reference.width_divisor(), 8);
    for name in ["vgg16_features.pth", "vgg16_features_legacy.pth"] {
        assert_eq!(conv_values(&load(name)), conv_values(&reference), "{name}");
    }
}

/// All tensors of the w8 fixture, to build modified files from.
fn fixture_tensors() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let file = WeightFile::open(fixture_dir().join("vgg16_features.safetensors")).unwrap();
    file.keys()
        .into_iter()
        .map(|k| {
            let shape = file.shape(&k).unwrap();
            let values = file.tensor(&k, &shape).unwrap();
            (k, (shape, values))
        })
        .collect()
}

fn write_safetensors(path: &Path, tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>) {
    let bytes: HashMap<String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| (k.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, (shape, _))| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                &bytes[k],
            )
            .unwrap();
            (k.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn load_error(path: &Path) -> WeightError {
    match WeightFile::open(path).and_then(|f| Vgg16::load(&f, &Device::flex())) {
        Ok(_) => panic!("{} loaded but must be rejected", path.display()),
        Err(e) => e,
    }
}

#[test]
fn extra_classifier_keys_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = fixture_tensors();
    tensors.insert("classifier.0.weight".into(), (vec![4, 2], vec![0.5; 8]));
    let path = dir.path().join("with-classifier.safetensors");
    write_safetensors(&path, &tensors);
    let file = WeightFile::open(&path).unwrap();
    assert!(Vgg16::load(&file, &Device::flex()).is_ok());
}

#[test]
fn wrong_shape_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = fixture_tensors();
    tensors.insert(
        "features.28.weight".into(),
        (vec![64, 64, 1, 9], vec![0.0; 64 * 64 * 9]),
    );
    let path = dir.path().join("bad-shape.safetensors");
    write_safetensors(&path, &tensors);
    let err = load_error(&path);
    let message = err.to_string();
    assert!(matches!(err, WeightError::Shape { .. }), "{message}");
    assert!(
        message.contains("features.28.weight") && message.contains("[64, 64, 3, 3]"),
        "{message}"
    );
}

#[test]
fn missing_tensor_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = fixture_tensors();
    tensors.remove("features.28.bias");
    let path = dir.path().join("missing.safetensors");
    write_safetensors(&path, &tensors);
    let message = load_error(&path).to_string();
    assert!(
        message.contains("no tensor `features.28.bias`"),
        "{message}"
    );
}

#[test]
fn truncated_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "vgg16_features.safetensors",
        "vgg16_features.pth",
        "vgg16_features_legacy.pth",
    ] {
        let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
        for keep in [bytes.len() / 2, bytes.len() - 100, 20] {
            let path = dir.path().join(format!("truncated-{keep}-{name}"));
            std::fs::write(&path, &bytes[..keep]).unwrap();
            let err = load_error(&path);
            println!("{name} cut to {keep} bytes: {err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }
}

#[test]
fn empty_and_garbage_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty.pth", &b""[..]),
        ("text.safetensors", &b"hello, not weights"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_error(&path);
        assert!(matches!(err, WeightError::Format { .. }), "{name}: {err}");
    }
    let err = load_error(&dir.path().join("does-not-exist.pth"));
    assert!(matches!(err, WeightError::Io { .. }), "{err}");
}

/// Pickles that would run `os.system("touch <marker>")` if unpickled by Python.
fn payloads(marker: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let cmd = format!("touch {}", marker.display());
    let mut unicode = vec![b'X'];
    unicode.extend((cmd.len() as u32).to_le_bytes());
    unicode.extend(cmd.as_bytes());
    // GLOBAL 'posix system', the command, TUPLE1, REDUCE
    let call = [&b"cposix\nsystem\n"[..], &unicode, b"\x85R"].concat();
    let key = b"X\x11\x00\x00\x00features.0.weight";
    vec![
        // protocol 2, the call at the root, STOP
        ("root", [&b"\x80\x02"[..], &call, b"."].concat()),
        // protocol 2, {"features.0.weight": os.system(...)}: EMPTY_DICT key value SETITEM STOP
        ("in-dict", [&b"\x80\x02}"[..], key, &call, b"s."].concat()),
        // the same through STACK_GLOBAL (protocol 4)
        (
            "stack-global",
            [
                &b"\x80\x04}"[..],
                key,
                b"\x8c\x05posix\x8c\x06system\x93",
                &unicode,
                b"\x85R",
                b"s.",
            ]
            .concat(),
        ),
    ]
}

#[test]
fn code_execution_pickles_are_rejected_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    for (name, bytes) in payloads(&marker) {
        let path = dir.path().join(format!("{name}.pth"));
        std::fs::write(&path, bytes).unwrap();
        let err = load_error(&path);
        println!("{name}: {err}");
        assert!(
            matches!(err, WeightError::UnsafePickle { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("posix.system"), "{name}: {err}");
        assert!(!marker.exists(), "{name}: the payload ran");
    }
}

/// A safetensors header that claims a tensor of terabytes (shape 2^20 x 2^20 f32 = 4 TiB) in a
/// file of a few hundred bytes: rejected from the header, nothing of that size allocated.
#[test]
fn absurd_shapes_in_a_header_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let header = r#"{"features.0.weight":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4398046511104]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let path = dir.path().join("huge.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let err = load_error(&path);
    println!("huge header: {err}");
    assert!(matches!(err, WeightError::Format { .. }), "{err}");
    // A header length field of 2^60 bytes.
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let path = dir.path().join("huge-header.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let err = load_error(&path);
    assert!(matches!(err, WeightError::Format { .. }), "{err}");
}

/// Weights stored as integers are refused, naming the tensor (f64 and f16 are converted).
#[test]
fn wrong_dtypes_are_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = fixture_tensors();
    let bytes: HashMap<String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| {
            let b: Vec<u8> = if k == "features.0.weight" {
                v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
            (k.clone(), b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, (shape, _))| {
            let dtype = if k == "features.0.weight" {
                safetensors::Dtype::I32
            } else {
                safetensors::Dtype::F32
            };
            let view =
                safetensors::tensor::TensorView::new(dtype, shape.clone(), &bytes[k]).unwrap();
            (k.clone(), view)
        })
        .collect();
    let path = dir.path().join("int-weights.safetensors");
    safetensors::serialize_to_file(views, &None, &path).unwrap();
    let err = load_error(&path);
    println!("int weights: {err}");
    assert!(err.to_string().contains("features.0.weight"), "{err}");
}
