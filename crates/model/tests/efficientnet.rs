//! EfficientNet-Lite0 parity with PyTorch (../shared/fixtures/effnet-lite0-parity), on the real
//! ImageNet weights (../shared/weights/efficientnet-lite0-57934424.pth, legacy pickle).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use model::{global_average_pool, EfficientNetLite0, WeightFile};

fn shared() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("weights/efficientnet-lite0-57934424.pth")
            .is_file(),
        "SHARED DATA MISSING: {} has no weights/efficientnet-lite0-57934424.pth. Set SHARED_DIR.",
        dir.display()
    );
    dir
}

fn tensor<const D: usize>(file: &WeightFile, key: &str, device: &Device) -> Tensor<D> {
    let shape = file.shape(key).unwrap();
    Tensor::from_data(
        TensorData::new(file.tensor(key, &shape).unwrap(), shape),
        device,
    )
}

fn relative_error<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let a: Vec<f32> = a.into_data().convert::<f32>().try_to_vec().unwrap();
    let b: Vec<f32> = b.into_data().convert::<f32>().try_to_vec().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn features_and_logits_match_pytorch() {
    let device = Device::flex();
    let weights =
        WeightFile::open(shared().join("weights/efficientnet-lite0-57934424.pth")).unwrap();
    let net = EfficientNetLite0::load(&weights, &device).unwrap();
    let expected =
        WeightFile::open(shared().join("fixtures/effnet-lite0-parity/expected.safetensors"))
            .unwrap();
    let input: Tensor<4> = tensor(&expected, "input", &device);
    let features = net.run(input, 0, 17);
    assert_eq!(features.dims(), [4, 1280, 7, 7]);
    let err = relative_error(features.clone(), tensor(&expected, "features", &device));
    println!("features: relative error {err:.2e}");
    assert!(err < 1e-4, "features: {err}");
    // The ImageNet classifier `_fc` on the pooled features.
    let w: Tensor<2> = tensor(&weights, "_fc.weight", &device);
    let b: Tensor<1> = tensor(&weights, "_fc.bias", &device);
    let logits = global_average_pool(features).matmul(w.transpose()) + b.unsqueeze_dim(0);
    let err = relative_error(logits.clone(), tensor(&expected, "logits", &device));
    println!("logits: relative error {err:.2e}");
    assert!(err < 1e-4, "logits: {err}");
    // Top-1 ImageNet classes as recorded with PyTorch: 287, 266, 285, 166.
    let top1: Vec<i64> = logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    assert_eq!(top1, [287, 266, 285, 166]);
}

/// The kernels (channels-last) and burn's own conv2d (channels-first) compute the same network:
/// every layer's output, from the stem and from a middle block. (On flex they agree to the
/// bit: both sum in the same order; a 0.1 % bias error in the depthwise kernel fails this.)
#[test]
fn kernels_and_burn_ops_agree_on_every_layer() {
    let device = Device::flex();
    let net = EfficientNetLite0::random(&device);
    let x = Tensor::<4>::random(
        [2, 3, 96, 80],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    for end in [0, 1, 4, 9, 13, 16, 17] {
        let ours = net.run(x.clone(), 0, end);
        let burn_ops = net.run_with_burn_ops(x.clone(), 0, end);
        let values: Vec<f32> = ours
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        let inside = values.iter().filter(|v| **v > 0.0 && **v < 6.0).count();
        let err = relative_error(ours, burn_ops);
        // Not a vacuous comparison: ReLU6 is not saturated (random weights could do that).
        assert!(
            inside * 5 > values.len(),
            "layers 0..={end}: only {inside} of {} values inside (0, 6)",
            values.len()
        );
        assert!(err < 1e-4, "layers 0..={end}: relative error {err}");
    }
    let mid = net.run(x.clone(), 0, 8);
    let err = relative_error(
        net.run(mid.clone(), 9, 17),
        net.run_with_burn_ops(mid, 9, 17),
    );
    assert!(err < 1e-4, "layers 9..=17: relative error {err}");
}
