//! The second wave of methods (Score-CAM, Ablation-CAM, GradCAM-ElementWise, EigenCAM,
//! EigenGradCAM, eigen_smooth, aug_smooth, Grad-CAM below the pooled layer, the random
//! baseline) against pytorch-grad-cam 1.5.7 on `../shared/fixtures/vgg16-w8-methods`, and
//! their behaviour on cases the fixture does not cover.

mod common;

use burn::tensor::Tensor;
use callbacks::{explain_with, Method, Options, Target};
use common::{to_vec, Fixture};
use model::HeadKind;

const MAP_TOL: f32 = 2e-3;
const FIXTURE: &str = "vgg16-w8-methods";

/// Per image, max |ours − reference| over the map.
fn per_image_errors(ours: Tensor<3>, reference: Tensor<3>) -> Vec<f32> {
    let [n, h, w] = reference.dims();
    assert_eq!(ours.dims(), [n, h, w]);
    let (a, b) = (to_vec(ours), to_vec(reference));
    a.chunks(h * w)
        .zip(b.chunks(h * w))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
        })
        .collect()
}

/// (method, layer, options, reference keys: one, or the two SVD signs of which each image
/// must match one).
fn parity_cases() -> Vec<(Method, &'static str, Options, Vec<&'static str>)> {
    let plain = Options::default();
    let eigen = Options {
        eigen_smooth: true,
        ..plain
    };
    let aug = Options {
        aug_smooth: true,
        ..plain
    };
    vec![
        (Method::GradCam, "block5_conv3", plain, vec!["gradcam"]),
        (
            Method::GradCam,
            "block4_conv3",
            plain,
            vec!["gradcam_block4_conv3"],
        ),
        (
            Method::GradCamElementWise,
            "block5_conv3",
            plain,
            vec!["gradcamelementwise"],
        ),
        (Method::ScoreCam, "block5_conv3", plain, vec!["scorecam"]),
        (
            Method::AblationCam,
            "block5_conv3",
            plain,
            vec!["ablationcam"],
        ),
        (
            Method::EigenCam,
            "block5_conv3",
            plain,
            vec!["eigencam_pos", "eigencam_neg"],
        ),
        (
            Method::EigenGradCam,
            "block5_conv3",
            plain,
            vec!["eigengradcam_pos", "eigengradcam_neg"],
        ),
        (
            Method::GradCam,
            "block5_conv3",
            eigen,
            vec!["gradcam_eigen_smooth_pos", "gradcam_eigen_smooth_neg"],
        ),
        (
            Method::GradCam,
            "block5_conv3",
            aug,
            vec!["gradcam_aug_smooth"],
        ),
    ]
}

#[test]
fn every_new_method_matches_pytorch_grad_cam() {
    let fx = Fixture::open(FIXTURE);
    let input = fx.tensor::<4>("input");
    let model = fx.classifier(HeadKind::GapDense);
    let mut failures = Vec::new();
    for (method, layer, options, keys) in parity_cases() {
        let out = explain_with(&model, input.clone(), layer, method, options).expect("explain");
        let errors: Vec<Vec<f32>> = keys
            .iter()
            .map(|key| per_image_errors(out.maps.clone(), fx.tensor::<3>(key)))
            .collect();
        // Each image against the closer reference (the SVD's sign is arbitrary).
        let worst = (0..errors[0].len())
            .map(|i| errors.iter().map(|e| e[i]).fold(f32::MAX, f32::min))
            .fold(0.0f32, f32::max);
        println!("{method} at {layer} {options:?} vs {keys:?}: max error {worst:.2e} ({errors:?})");
        if !(worst <= MAP_TOL) {
            failures.push(format!("{method} {keys:?}: {worst}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
