//! Reading the PyTorch reference fixtures in `../shared/fixtures` (see `../shared/README.md`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use model::{Backbone, Classifier, Head, HeadKind, Vgg16, WeightFile};

/// `$SHARED_DIR`, or `../shared` next to the repository. Panics (the test fails) when missing:
/// a parity test that silently passes without its fixtures would prove nothing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("fixtures").is_dir(),
        "FIXTURES MISSING: {} has no fixtures/ directory. Set SHARED_DIR to the shared data \
         directory (see README, Getting started).",
        dir.display()
    );
    dir
}

/// One fixture directory, e.g. `vgg16-w8-parity`.
pub struct Fixture {
    pub dir: PathBuf,
    pub expected: WeightFile,
    pub device: Device,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        Self::at(shared_dir().join("fixtures").join(name))
    }

    /// A fixture kept in this repository (`crates/callbacks/tests/fixtures/<name>`).
    pub fn local(name: &str) -> Self {
        Self::at(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
    }

    fn at(dir: PathBuf) -> Self {
        let name = dir.display().to_string();
        let expected = WeightFile::open(dir.join("expected.safetensors"))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        Self {
            dir,
            expected,
            device: Device::flex(),
        }
    }

    /// A float tensor from expected.safetensors.
    pub fn tensor<const D: usize>(&self, key: &str) -> Tensor<D> {
        let shape = self.expected.shape(key).expect("fixture tensor");
        let values = self.expected.tensor(key, &shape).expect("fixture tensor");
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// A uint8 tensor from expected.safetensors, as bytes.
    pub fn bytes(&self, key: &str) -> (Vec<usize>, Vec<u8>) {
        let data = std::fs::read(self.dir.join("expected.safetensors")).expect("read fixture");
        let st = safetensors::SafeTensors::deserialize(&data).expect("parse fixture");
        let view = st.tensor(key).expect("fixture tensor");
        (view.shape().to_vec(), view.data().to_vec())
    }

    /// The photos' file names, in batch order (`images` in meta.json).
    pub fn image_names(&self) -> Vec<String> {
        let meta = std::fs::read_to_string(self.dir.join("meta.json")).expect("read meta.json");
        // `"images": ["a.jpg", "b.jpg"]`: the quoted strings between `"images"` and `]`.
        let list = meta
            .split("\"images\"")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .expect("meta.json has an images list");
        list.split('"')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    pub fn backbone(&self) -> Vgg16 {
        let file = WeightFile::open(self.dir.join("vgg16_features.safetensors")).expect("weights");
        Vgg16::load(&file, &self.device).expect("load backbone")
    }

    /// The CAM model (gap-linear) or the Grad-CAM model (gap-dense) of the fixture.
    pub fn classifier(&self, kind: HeadKind) -> Classifier {
        let backbone = self.backbone();
        let channels = 512 / backbone.width_divisor();
        let file = match kind {
            HeadKind::GapLinear => "cam_head.safetensors",
            HeadKind::GapDense => "dense_head.safetensors",
        };
        let file = WeightFile::open(self.dir.join(file)).expect("head weights");
        let head = Head::load(&file, kind, channels, &self.device).expect("load head");
        Classifier {
            backbone: Backbone::Vgg16(backbone),
            head,
        }
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

/// max |a − b| / max |b|.
pub fn relative_error<const D: usize>(actual: Tensor<D>, expected: Tensor<D>) -> f32 {
    assert_eq!(actual.dims(), expected.dims(), "shapes differ");
    let (a, b) = (to_vec(actual), to_vec(expected));
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale.max(f32::MIN_POSITIVE)
}

/// max |a − b| over equal-length slices, a NaN counting as an infinite error (f32::max would
/// skip it).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d)
        }
    })
}

/// The image [N, ...] with the largest error and that error: max |a − b| over the image,
/// divided by max |b| over the whole batch when `relative` (so the worst image's error is
/// [`relative_error`], or [`max_abs_error`] when not `relative`, except that a NaN counts
/// as an infinite error here).
pub fn worst_image<const D: usize>(
    actual: Tensor<D>,
    expected: Tensor<D>,
    relative: bool,
) -> (usize, f32) {
    assert_eq!(actual.dims(), expected.dims(), "shapes differ");
    let n = actual.dims()[0];
    let (a, b) = (to_vec(actual), to_vec(expected));
    let scale = if relative {
        b.iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE)
    } else {
        1.0
    };
    let per_image = a.len() / n;
    a.chunks(per_image)
        .zip(b.chunks(per_image))
        .map(|(a, b)| max_abs_diff(a, b) / scale)
        .enumerate()
        .fold(
            (0, 0.0f32),
            |worst, (i, err)| if err > worst.1 { (i, err) } else { worst },
        )
}

/// Normalised maps [N, H, W]: finite, in [0, 1], and each map's maximum is 1 (within 1e-6; the
/// normaliser divides by max + 1e-7). A blank map, what a lost gradient gives, fails.
pub fn assert_normalised_maps(maps: Tensor<3>, what: &str) {
    let [_, h, w] = maps.dims();
    for (i, map) in to_vec(maps).chunks(h * w).enumerate() {
        assert!(
            map.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
            "{what}, image {i}: a value is not finite or outside [0, 1]"
        );
        let max = map.iter().fold(f32::MIN, |m, v| m.max(*v));
        assert!(
            (max - 1.0).abs() <= 1e-6,
            "{what}, image {i}: maximum {max}, expected 1 (a blank map?)"
        );
    }
}

/// max |a − b|.
pub fn max_abs_error<const D: usize>(actual: Tensor<D>, expected: Tensor<D>) -> f32 {
    assert_eq!(actual.dims(), expected.dims(), "shapes differ");
    let (a, b) = (to_vec(actual), to_vec(expected));
    a.iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Both fixtures: real VGG16 shapes (4 images, 224x224) and width/8 (2 images, 160x224).
pub const FIXTURES: [&str; 2] = ["vgg16-w8-parity", "vgg16-parity"];
