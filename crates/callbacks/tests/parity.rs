//! Numerical parity with PyTorch/torchvision/pytorch-grad-cam (fixtures in ../shared).

mod common;

use burn::tensor::activation::relu;
use callbacks::render::{jet_lut, overlay, OverlayStyle};
use callbacks::{explain, Explanation, Method, Target};
use common::{
    assert_normalised_maps, max_abs_error, relative_error, to_vec, worst_image, Fixture, FIXTURES,
};
use image::RgbImage;
use model::HeadKind;

const REL_TOL: f32 = 1e-4;
const MAP_TOL: f32 = 2e-3;

#[test]
fn backbone_activations_match_torchvision() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let model = fx.classifier(HeadKind::GapLinear);
        let input = fx.tensor::<4>("input");
        for layer in ["block4_conv3", "block5_conv3", "block5_pool"] {
            let index = model.layer(layer).unwrap();
            let ours = model.activations(input.clone(), index);
            let err = relative_error(ours, fx.tensor::<4>(layer));
            println!("{name} {layer}: relative error {err:.2e}");
            assert!(err < REL_TOL, "{name} {layer}: relative error {err}");
        }
    }
}

#[test]
fn logits_match_both_heads() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let input = fx.tensor::<4>("input");
        for (kind, key) in [
            (HeadKind::GapLinear, "cam_model_logit"),
            (HeadKind::GapDense, "dense_model_logit"),
        ] {
            let logits = fx.classifier(kind).forward(input.clone());
            let err = relative_error(logits, fx.tensor::<2>(key));
            println!("{name} {key}: relative error {err:.2e}");
            assert!(err < REL_TOL, "{name} {key}: relative error {err}");
        }
    }
}

/// What a row of [`METHOD_PARITY`] compares with the fixture.
#[derive(Debug, Clone, Copy)]
enum Compare {
    /// The normalised maps [N, H, W]: max |ours − reference|.
    Maps,
    /// The raw map [N, h, w] before ReLU: max |ours − reference| / max |reference|.
    Raw,
    /// The raw map after ReLU (the reference's `gradcam_raw` is), relative as `Raw`.
    ReluRaw,
    /// ∂y/∂A at the layer [N, C, h, w], relative as `Raw`.
    Gradients,
}

/// Parity with pytorch-grad-cam, one row per check: (method, the model it explains, key in
/// expected.safetensors, what is compared, tolerance). All at block5_conv3 for the predicted
/// class; the fixture explains CAM on the CAM model (gap-linear head) and the gradient methods
/// on the Grad-CAM model (gap-dense head).
const METHOD_PARITY: [(Method, HeadKind, &str, Compare, f32); 9] = [
    (
        Method::Cam,
        HeadKind::GapLinear,
        "cam_raw",
        Compare::Raw,
        REL_TOL,
    ),
    (
        Method::Cam,
        HeadKind::GapLinear,
        "cam",
        Compare::Maps,
        MAP_TOL,
    ),
    (
        Method::GradCam,
        HeadKind::GapDense,
        "gradcam_grads",
        Compare::Gradients,
        REL_TOL,
    ),
    (
        Method::GradCam,
        HeadKind::GapDense,
        "gradcam_raw",
        Compare::ReluRaw,
        REL_TOL,
    ),
    (
        Method::GradCam,
        HeadKind::GapDense,
        "gradcam",
        Compare::Maps,
        MAP_TOL,
    ),
    (
        Method::GradCamPlusPlus,
        HeadKind::GapDense,
        "gradcampp",
        Compare::Maps,
        MAP_TOL,
    ),
    (
        Method::LayerCam,
        HeadKind::GapDense,
        "layercam",
        Compare::Maps,
        MAP_TOL,
    ),
    (
        Method::HiResCam,
        HeadKind::GapDense,
        "hirescam",
        Compare::Maps,
        MAP_TOL,
    ),
    (
        Method::XGradCam,
        HeadKind::GapDense,
        "xgradcam",
        Compare::Maps,
        MAP_TOL,
    ),
];

#[test]
fn every_method_matches_pytorch_grad_cam() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let images = fx.image_names();
        let models =
            [HeadKind::GapLinear, HeadKind::GapDense].map(|kind| (kind, fx.classifier(kind)));
        // One explanation per (method, head), shared by that method's rows.
        let mut explained: Vec<(Method, HeadKind, Explanation)> = Vec::new();
        for (method, head, key, compare, tolerance) in METHOD_PARITY {
            if !explained.iter().any(|(m, h, _)| (*m, *h) == (method, head)) {
                let (_, model) = models.iter().find(|(kind, _)| *kind == head).unwrap();
                let out = explain(
                    model,
                    fx.tensor("input"),
                    "block5_conv3",
                    method,
                    Target::Predicted,
                )
                .unwrap();
                explained.push((method, head, out));
            }
            let (_, _, out) = explained
                .iter()
                .find(|(m, h, _)| (*m, *h) == (method, head))
                .unwrap();
            let (image, err) = match compare {
                Compare::Maps => worst_image(out.maps.clone(), fx.tensor::<3>(key), false),
                Compare::Raw => worst_image(out.raw.clone(), fx.tensor::<3>(key), true),
                Compare::ReluRaw => worst_image(relu(out.raw.clone()), fx.tensor::<3>(key), true),
                Compare::Gradients => {
                    let grads = out.gradients.clone();
                    let grads = grads.unwrap_or_else(|| panic!("{method} computes no gradients"));
                    worst_image(grads, fx.tensor::<4>(key), true)
                }
            };
            println!(
                "{name} {method} {key}: {compare:?} error {err:.2e} (worst image {})",
                images[image]
            );
            assert!(
                err < tolerance,
                "{name}: {method} differs from pytorch-grad-cam's `{key}` ({compare:?}) on image \
                 {image} ({}): max error {err:.2e}, tolerance {tolerance:.0e}",
                images[image]
            );
        }
    }
}

/// Every gradient method away from block5_conv3, at block4_conv3 of the width/8 model: each
/// map is normalised and its maximum is 1 (a lost gradient gives a blank map, which fails).
#[test]
fn gradient_methods_at_block4_conv3_give_normalised_maps() {
    let fx = Fixture::open("vgg16-w8-parity");
    let model = fx.classifier(HeadKind::GapDense);
    let methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| m.implementation().needs_gradients())
        .collect();
    assert_eq!(methods.len(), 7, "{methods:?}");
    for method in methods {
        let out = explain(
            &model,
            fx.tensor("input"),
            "block4_conv3",
            method,
            Target::Predicted,
        )
        .unwrap();
        assert_eq!(out.maps.dims(), [2, 160, 224]);
        assert_normalised_maps(out.maps, &format!("{method} at block4_conv3"));
    }
}

/// For a GAP→linear head, Grad-CAM at the pooled layer is proportional to CAM.
#[test]
fn gradcam_on_gap_linear_equals_cam() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let model = fx.classifier(HeadKind::GapLinear);
        let run = |method| {
            explain(
                &model,
                fx.tensor("input"),
                "block5_conv3",
                method,
                Target::Predicted,
            )
            .unwrap()
        };
        let (cam, gradcam) = (run(Method::Cam), run(Method::GradCam));
        let err = max_abs_error(gradcam.maps.clone(), cam.maps.clone());
        let ref_err = max_abs_error(gradcam.maps, fx.tensor::<3>("gradcam_on_cam_model"));
        println!("{name}: |gradcam - cam| {err:.2e}, vs reference {ref_err:.2e}");
        assert!(err < 1e-4, "{name}: Grad-CAM differs from CAM by {err}");
        assert!(ref_err < MAP_TOL, "{name}: gradcam_on_cam_model {ref_err}");
    }
}

#[test]
fn jet_lut_is_opencvs() {
    let fx = Fixture::open("vgg16-w8-parity");
    let (_, expected) = fx.bytes("jet_lut_rgb");
    let ours: Vec<u8> = jet_lut().iter().flatten().copied().collect();
    assert_eq!(ours, expected);
}

#[test]
fn jet_overlay_matches_reference() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let (shape, photos) = fx.bytes("input_rgb_u8");
        let (_, expected) = fx.bytes("gradcam_overlay_u8");
        let [n, h, w] = [shape[0], shape[1], shape[2]];
        let model = fx.classifier(HeadKind::GapDense);
        let ours = explain(
            &model,
            fx.tensor("input"),
            "block5_conv3",
            Method::GradCam,
            Target::Predicted,
        )
        .unwrap();
        let (our_maps, ref_maps) = (to_vec(ours.maps), to_vec(fx.tensor::<3>("gradcam")));
        let plane = h * w;
        let (mut worst_ref, mut worst_ours, mut off_by_more) = (0u8, 0u8, 0usize);
        for i in 0..n {
            let photo = RgbImage::from_raw(
                w as u32,
                h as u32,
                photos[i * plane * 3..(i + 1) * plane * 3].to_vec(),
            )
            .unwrap();
            let expected = &expected[i * plane * 3..(i + 1) * plane * 3];
            let style = OverlayStyle::default();
            // Rendering alone: the reference map through our overlay.
            let rendered = overlay(&ref_maps[i * plane..(i + 1) * plane], &photo, &style);
            for (a, b) in rendered.as_raw().iter().zip(expected) {
                worst_ref = worst_ref.max(a.abs_diff(*b));
            }
            // End to end: our map through our overlay.
            let rendered = overlay(&our_maps[i * plane..(i + 1) * plane], &photo, &style);
            for (a, b) in rendered.as_raw().iter().zip(expected) {
                let d = a.abs_diff(*b);
                worst_ours = worst_ours.max(d);
                off_by_more += usize::from(d > 1);
            }
        }
        let share = off_by_more as f64 / (n * plane * 3) as f64;
        println!("{name} overlay: reference map worst {worst_ref}, ours worst {worst_ours}, {share:.2e} of channels off by >1");
        assert!(
            worst_ref <= 1,
            "{name}: overlay off by {worst_ref} grey levels"
        );
        // A map within 2e-3 can cross a LUT step (4 levels of jet = 2 in the blend) on a few pixels.
        assert!(
            worst_ours <= 3 && share < 1e-3,
            "{name}: end-to-end overlay off: worst {worst_ours}, share {share}"
        );
    }
}

#[test]
fn cat_and_dog_get_their_own_class() {
    // The seed blog always explained "dog"; a single-logit head must explain each image's
    // predicted class: +logit for dog, −logit for cat.
    let fx = Fixture::open("vgg16-w8-parity");
    let model = fx.classifier(HeadKind::GapLinear);
    let out = explain(
        &model,
        fx.tensor("input"),
        "block5_conv3",
        Method::Cam,
        Target::Predicted,
    )
    .unwrap();
    let logits = to_vec(out.logits);
    let classes: Vec<i64> = out
        .classes
        .into_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    for (logit, class) in logits.iter().zip(&classes) {
        assert_eq!(*class, i64::from(*logit >= 0.0));
    }
    // Explaining the other class flips the raw map's sign.
    let dog = explain(
        &model,
        fx.tensor("input"),
        "block5_conv3",
        Method::Cam,
        Target::Class(1),
    )
    .unwrap();
    let cat = explain(
        &model,
        fx.tensor("input"),
        "block5_conv3",
        Method::Cam,
        Target::Class(0),
    )
    .unwrap();
    let err = max_abs_error(dog.raw, -cat.raw);
    assert!(err < 1e-6);
}

/// A two-class softmax head with logits (−z, z) decides and explains exactly as the sigmoid
/// head with logit z: the one-hot and ±1 target paths agree.
#[test]
fn softmax_head_agrees_with_sigmoid_head() {
    use burn::module::Param;
    use burn::tensor::Tensor;
    let fx = Fixture::open("vgg16-w8-parity");
    let sigmoid = fx.classifier(HeadKind::GapLinear);
    let mut softmax = fx.classifier(HeadKind::GapLinear);
    let w = sigmoid.head.fc1.weight.val();
    let b = sigmoid.head.fc1.bias.as_ref().unwrap().val();
    softmax.head.fc1.weight = Param::from_tensor(Tensor::cat(vec![-w.clone(), w], 1));
    softmax.head.fc1.bias = Some(Param::from_tensor(Tensor::cat(vec![-b.clone(), b], 0)));
    for method in [Method::Cam, Method::GradCam, Method::GradCamPlusPlus] {
        for target in [Target::Predicted, Target::Class(0), Target::Class(1)] {
            let a = explain(&sigmoid, fx.tensor("input"), "block5_conv3", method, target).unwrap();
            let b = explain(&softmax, fx.tensor("input"), "block5_conv3", method, target).unwrap();
            assert_eq!(
                to_vec(a.classes.float()),
                to_vec(b.classes.float()),
                "{method} {target:?}"
            );
            // z vs (−z, z): the class score differs by a factor 1 (same weights), so maps agree.
            let err = max_abs_error(a.maps, b.maps);
            assert!(err < 1e-5, "{method} {target:?}: {err}");
        }
    }
    assert_eq!(softmax.head.num_classes(), 2);
}

#[test]
fn bad_targets_and_empty_batches_are_errors() {
    use callbacks::ExplainError;
    let fx = Fixture::open("vgg16-w8-parity");
    let model = fx.classifier(HeadKind::GapDense);
    let input = fx.tensor::<4>("input");
    let err = explain(
        &model,
        input.clone(),
        "block5_conv3",
        Method::GradCam,
        Target::Class(2),
    );
    assert!(matches!(
        err,
        Err(ExplainError::BadClass {
            class: 2,
            classes: 2
        })
    ));
    let empty = burn::tensor::Tensor::<4>::zeros([0, 3, 160, 224], &fx.device);
    let err = explain(
        &model,
        empty,
        "block5_conv3",
        Method::GradCam,
        Target::Predicted,
    );
    assert!(matches!(err, Err(ExplainError::Empty)));
    let odd = input.narrow(2, 0, 100);
    let err = explain(
        &model,
        odd,
        "block5_conv3",
        Method::GradCam,
        Target::Predicted,
    );
    assert!(matches!(err, Err(ExplainError::Model(_))));
}
