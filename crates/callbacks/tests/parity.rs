//! Numerical parity with PyTorch/torchvision/pytorch-grad-cam (fixtures in ../shared).

mod common;

use burn::tensor::activation::relu;
use callbacks::render::{jet_lut, overlay, OverlayStyle};
use callbacks::{explain, Method, Target};
use common::{max_abs_error, relative_error, to_vec, Fixture, FIXTURES};
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

#[test]
fn cam_matches_reference() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let model = fx.classifier(HeadKind::GapLinear);
        let out = explain(
            &model,
            fx.tensor("input"),
            "block5_conv3",
            Method::Cam,
            Target::Predicted,
        )
        .unwrap();
        let raw_err = relative_error(out.raw, fx.tensor::<3>("cam_raw"));
        let map_err = max_abs_error(out.maps, fx.tensor::<3>("cam"));
        println!("{name} cam: raw rel {raw_err:.2e}, map abs {map_err:.2e}");
        assert!(raw_err < REL_TOL, "{name} cam_raw: {raw_err}");
        assert!(map_err < MAP_TOL, "{name} cam: {map_err}");
    }
}

#[test]
fn gradcam_gradients_raw_and_map_match_reference() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let model = fx.classifier(HeadKind::GapDense);
        let out = explain(
            &model,
            fx.tensor("input"),
            "block5_conv3",
            Method::GradCam,
            Target::Predicted,
        )
        .unwrap();
        let grads = out.gradients.expect("Grad-CAM computes gradients");
        let grad_err = relative_error(grads, fx.tensor::<4>("gradcam_grads"));
        let raw_err = relative_error(relu(out.raw), fx.tensor::<3>("gradcam_raw"));
        let map_err = max_abs_error(out.maps, fx.tensor::<3>("gradcam"));
        println!("{name} gradcam: grads rel {grad_err:.2e}, raw rel {raw_err:.2e}, map abs {map_err:.2e}");
        assert!(grad_err < REL_TOL, "{name} gradcam_grads: {grad_err}");
        assert!(raw_err < REL_TOL, "{name} gradcam_raw: {raw_err}");
        assert!(map_err < MAP_TOL, "{name} gradcam: {map_err}");
    }
}

#[test]
fn every_gradient_method_matches_pytorch_grad_cam() {
    for name in FIXTURES {
        let fx = Fixture::open(name);
        let model = fx.classifier(HeadKind::GapDense);
        for (method, key) in [
            (Method::GradCamPlusPlus, "gradcampp"),
            (Method::LayerCam, "layercam"),
            (Method::HiResCam, "hirescam"),
            (Method::XGradCam, "xgradcam"),
        ] {
            let out = explain(
                &model,
                fx.tensor("input"),
                "block5_conv3",
                method,
                Target::Predicted,
            )
            .unwrap();
            let err = max_abs_error(out.maps, fx.tensor::<3>(key));
            println!("{name} {method}: map abs error {err:.2e}");
            assert!(err < MAP_TOL, "{name} {method}: {err}");
        }
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
