//! The engine on EfficientNet-Lite0 with its real ImageNet weights: both heads, every method, at
//! the head and at block outputs (each map normalised, maximum 1: never blank); and the
//! Grad-CAM ∝ CAM invariant at `head`.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use callbacks::{explain, Method, Target};
use common::{assert_normalised_maps, max_abs_error, shared_dir};
use model::{Backbone, Classifier, EfficientNetLite0, Head, HeadKind, WeightFile};

fn model(kind: HeadKind) -> (Classifier, Tensor<4>) {
    let device = Device::flex();
    let weights =
        WeightFile::open(shared_dir().join("weights/efficientnet-lite0-57934424.pth")).unwrap();
    let backbone = Backbone::EfficientNetLite0(EfficientNetLite0::load(&weights, &device).unwrap());
    device.seed(3);
    let head = Head::new(kind, 1280, 1, &device);
    let expected =
        WeightFile::open(shared_dir().join("fixtures/effnet-lite0-parity/expected.safetensors"))
            .unwrap();
    let input = Tensor::from_data(
        TensorData::new(
            expected.tensor("input", &[4, 3, 224, 224]).unwrap(),
            [4, 3, 224, 224],
        ),
        &device,
    );
    (Classifier { backbone, head }, input)
}

#[test]
fn every_method_at_head_and_blocks_on_both_heads() {
    for kind in [HeadKind::GapLinear, HeadKind::GapDense] {
        let (model, input) = model(kind);
        let input = input.narrow(0, 0, 2);
        for layer in ["head", "block16", "block8"] {
            for method in Method::ALL {
                if method == Method::Cam && (kind == HeadKind::GapDense || layer != "head") {
                    assert!(
                        explain(&model, input.clone(), layer, method, Target::Predicted).is_err()
                    );
                    continue;
                }
                // Score-CAM runs the whole network once per channel (1280 at `head`): one
                // image, at block8 only.
                if method == Method::ScoreCam && layer != "block8" {
                    continue;
                }
                let n = if method == Method::ScoreCam { 1 } else { 2 };
                let images = input.clone().narrow(0, 0, n);
                let out = explain(&model, images, layer, method, Target::Predicted).unwrap();
                assert_eq!(out.maps.dims(), [n, 224, 224]);
                assert_normalised_maps(out.maps, &format!("{kind} {layer} {method}"));
            }
        }
    }
}

#[test]
fn gradcam_equals_cam_at_the_pooled_layer() {
    let (model, input) = model(HeadKind::GapLinear);
    let cam = explain(
        &model,
        input.clone(),
        "head",
        Method::Cam,
        Target::Predicted,
    )
    .unwrap();
    let gradcam = explain(&model, input, "head", Method::GradCam, Target::Predicted).unwrap();
    let err = max_abs_error(cam.maps, gradcam.maps);
    assert!(err < 1e-4, "Grad-CAM differs from CAM by {err}");
}
