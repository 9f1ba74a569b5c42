//! `train explain` end to end, on real photos from ../shared and the PyTorch fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ok, shared_dir};
use model::WeightFile;

mod common;

fn fixture(name: &str) -> PathBuf {
    shared_dir().join("fixtures/vgg16-w8-parity").join(name)
}

fn explain(extra: &[&str], head: &str, out: &Path) -> Output {
    let head_file = if head == "gap-linear" {
        "cam_head.safetensors"
    } else {
        "dense_head.safetensors"
    };
    let weights = fixture("vgg16_features_legacy.pth");
    explain_files(&weights, head, &fixture(head_file), extra, out)
}

/// `train explain` with these backbone and head weight files.
fn explain_files(
    weights: &Path,
    head: &str,
    head_weights: &Path,
    extra: &[&str],
    out: &Path,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("explain")
        .arg("--weights")
        .arg(weights)
        .args(["--head", head])
        .arg("--head-weights")
        .arg(head_weights)
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .output()
        .expect("run train")
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got success");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn shape(dir: &Path, key: &str) -> Vec<usize> {
    WeightFile::open(dir.join("maps.safetensors"))
        .unwrap()
        .shape(key)
        .unwrap()
}

#[test]
fn explains_a_real_photo_at_any_size() {
    let photo = shared_dir().join("data/catdog/val/dog/dog.4001.jpg");
    let photo = photo.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let stdout = ok(&explain(
        &["--input", photo, "--method", "gradcam"],
        "gap-dense",
        out.path(),
    ));
    assert!(stdout.contains("dog.4001"), "{stdout}");
    let png = image::open(out.path().join("dog.4001.png")).unwrap();
    assert_eq!((png.width(), png.height()), (224, 224));
    assert_eq!(shape(out.path(), "maps"), [1, 224, 224]);
    assert_eq!(shape(out.path(), "raw"), [1, 14, 14]);
    assert_eq!(shape(out.path(), "logits"), [1, 1]);

    let out = tempfile::tempdir().unwrap();
    ok(&explain(
        &["--input", photo, "--method", "cam", "--size", "192x256"],
        "gap-linear",
        out.path(),
    ));
    let png = image::open(out.path().join("dog.4001.png")).unwrap();
    assert_eq!((png.width(), png.height()), (256, 192));
    assert_eq!(shape(out.path(), "maps"), [1, 192, 256]);
    assert_eq!(shape(out.path(), "raw"), [1, 12, 16]);
}

#[test]
fn tensor_input_reproduces_pytorch() {
    let out = tempfile::tempdir().unwrap();
    let input = fixture("expected.safetensors");
    ok(&explain(
        &[
            "--input",
            input.to_str().unwrap(),
            "--method",
            "gradcam",
            "--batch-size",
            "1",
        ],
        "gap-dense",
        out.path(),
    ));
    let expected = WeightFile::open(&input).unwrap();
    let ours = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
    let shape = expected.shape("gradcam").unwrap();
    let (a, b) = (
        ours.tensor("maps", &shape).unwrap(),
        expected.tensor("gradcam", &shape).unwrap(),
    );
    let err = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err < 2e-3, "maps differ from pytorch-grad-cam by {err}");
    assert!(out.path().join("image_001.png").is_file());
}

#[test]
fn a_corrupt_photo_in_a_directory_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cat = shared_dir().join("data/catdog/val/cat/cat.4001.jpg");
    std::fs::copy(&cat, dir.path().join("good.jpg")).unwrap();
    let bytes = std::fs::read(&cat).unwrap();
    std::fs::write(dir.path().join("truncated.jpg"), &bytes[..200]).unwrap();
    std::fs::write(dir.path().join("empty.png"), b"").unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = explain(
        &["--input", dir.path().to_str().unwrap()],
        "gap-dense",
        out.path(),
    );
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipping") && stderr.contains("empty.png"),
        "{stderr}"
    );
    assert!(out.path().join("good.png").is_file());
    assert_eq!(shape(out.path(), "maps")[0], 1);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = tempfile::tempdir().unwrap();
    let photo = shared_dir().join("data/catdog/val/cat/cat.4001.jpg");
    let photo = photo.to_str().unwrap();
    let cases: [(&[&str], &str, &str); 7] = [
        (
            &["--input", "/no/such/photo.jpg"],
            "gap-dense",
            "no such file",
        ),
        (
            &["--input", photo, "--size", "100"],
            "gap-dense",
            "multiples of 32",
        ),
        (
            &["--input", photo, "--method", "cam"],
            "gap-dense",
            "CAM needs a gap-linear head",
        ),
        (
            &["--input", photo, "--layer", "block9_conv1"],
            "gap-dense",
            "unknown layer `block9_conv1`",
        ),
        (
            &["--input", photo, "--layer", "block5_pool"],
            "gap-linear",
            "comes after `block5_conv3`",
        ),
        (
            &["--input", photo, "--method", "guided-magic"],
            "gap-dense",
            "unknown method `guided-magic` (expected one of cam, gradcam",
        ),
        (
            &[
                "--input",
                photo,
                "--method",
                "guided-backprop",
                "--aug-smooth",
            ],
            "gap-dense",
            "apply to map methods, not guided-backprop",
        ),
    ];
    for (args, head, message) in cases {
        let stderr = failure(&explain(args, head, out.path()));
        assert!(
            stderr.contains(message),
            "{args:?}: expected `{message}` in:\n{stderr}"
        );
    }
    // A head file of the other architecture: the error names the missing tensor.
    let output = explain_files(
        &fixture("vgg16_features.pth"),
        "gap-linear",
        &fixture("dense_head.safetensors"),
        &["--input", photo],
        out.path(),
    );
    let stderr = failure(&output);
    assert!(
        stderr.contains("--head-weights") && stderr.contains("no tensor `weight`"),
        "{stderr}"
    );
    // A weights file that is not there: the error names the script that fetches it.
    let output = explain_files(
        Path::new("data/weights/vgg16-397923af.pth"),
        "gap-linear",
        &fixture("cam_head.safetensors"),
        &["--input", photo],
        out.path(),
    );
    let stderr = failure(&output);
    assert!(
        stderr.contains("no such file (get it with `scripts/fetch-weights.sh vgg16`)"),
        "{stderr}"
    );
}

#[test]
fn guided_methods_write_three_channel_gradients_beside_the_photo() {
    let photo = shared_dir().join("data/catdog/val/dog/dog.4001.jpg");
    for method in ["guided-backprop", "guided-gradcam"] {
        let out = tempfile::tempdir().unwrap();
        // No --layer: the default is the backbone's last convolution.
        ok(&explain(
            &["--input", photo.to_str().unwrap(), "--method", method],
            "gap-dense",
            out.path(),
        ));
        assert_eq!(shape(out.path(), "maps"), [1, 3, 224, 224], "{method}");
        let values = WeightFile::open(out.path().join("maps.safetensors"))
            .unwrap()
            .tensor("maps", &[1, 3, 224, 224])
            .unwrap();
        assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|v| *v != 0.0));
        let picture = image::open(out.path().join("dog.4001.png")).unwrap();
        assert_eq!((picture.width(), picture.height()), (448, 224), "{method}");
    }
}

#[test]
fn every_layer_and_method_runs() {
    let photo = shared_dir().join("data/catdog/oxford_loc/cat");
    let first = std::fs::read_dir(&photo)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for layer in ["block3_conv3", "block4_pool", "block5_conv3"] {
        for method in [
            "gradcam",
            "gradcam++",
            "layercam",
            "hirescam",
            "xgradcam",
            "gradcam-elementwise",
            "eigencam",
            "eigengradcam",
            "scorecam",
            "ablationcam",
            "random",
        ] {
            let out = tempfile::tempdir().unwrap();
            ok(&explain(
                &[
                    "--input",
                    first.to_str().unwrap(),
                    "--layer",
                    layer,
                    "--method",
                    method,
                    "--colormap",
                    "turbo",
                ],
                "gap-dense",
                out.path(),
            ));
            let maps = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
            let values = maps.tensor("maps", &[1, 224, 224]).unwrap();
            assert!(
                values
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{layer} {method}"
            );
        }
    }
}

/// A fine-tuning run's exported `backbone.safetensors` + `head.safetensors` explain a photo the
/// way the run drew it at its last epoch; the original backbone does not.
#[test]
fn a_fine_tuned_runs_exported_weights_reproduce_its_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let config = common::small_config(
        tmp.path(),
        common::SmallRun {
            name: "tuned",
            runs: &runs,
            data_seed: 3,
            train: 64,
            seed: 2,
            epochs: 3,
            callbacks: "\n[[callbacks]]\nkind = \"cam\"\nnum_images = 2\n",
        },
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "head = \"gap-linear\"\n",
        "head = \"gap-linear\"\ntrain_from = \"block5_conv1\"\n",
    );
    std::fs::write(&config, text).unwrap();
    ok(&common::train(&["--config", config.to_str().unwrap()]));
    let run = common::run_dirs(&runs).remove(0);
    let logged = run.join("images/cam/epoch-003");
    let name = std::fs::read_dir(&logged)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "png") && !p.ends_with("grid.png"))
        .expect("a logged overlay");
    let stem = name.file_stem().unwrap().to_string_lossy().into_owned();
    let photo = walk(&runs.join(".cache"))
        .into_iter()
        .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == stem))
        .expect("the logged photo");
    let logged = image::open(&name).unwrap().to_rgb8();

    // Mean absolute difference (0–255) of `train explain`'s overlay and the run's, below the
    // run's caption band (the run's overlays name the true and predicted class at the top).
    let difference = |weights: &Path| {
        let out = tmp.path().join(format!(
            "out-{}",
            weights.file_stem().unwrap().to_string_lossy()
        ));
        ok(&Command::new(env!("CARGO_BIN_EXE_train"))
            .current_dir(common::repo())
            .arg("explain")
            .arg("--weights")
            .arg(weights)
            .arg("--head-weights")
            .arg(run.join("head.safetensors"))
            .args(["--method", "cam", "--layer", "block5_conv3", "--size", "64"])
            .arg("--input")
            .arg(&photo)
            .arg("--out-dir")
            .arg(&out)
            .output()
            .unwrap());
        let explained = image::open(out.join(format!("{stem}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(explained.dimensions(), logged.dimensions());
        let skip = (callbacks::render::CAPTION_BAND * explained.width() * 3) as usize;
        let sum: u64 = explained.as_raw()[skip..]
            .iter()
            .zip(&logged.as_raw()[skip..])
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        sum as f64 / (explained.as_raw().len() - skip) as f64
    };
    let tuned = difference(&run.join("backbone.safetensors"));
    let original = difference(&common::repo().join("data/weights/vgg16-w8-synthetic.safetensors"));
    println!(
        "mean |explain − run| per channel: fine-tuned backbone {tuned:.3}, original {original:.3}"
    );
    // The run's maps come from the f16 cut, explain's from the photo: a level or less apart.
    assert!(tuned < 1.0, "fine-tuned backbone: {tuned}");
    assert!(
        original > 2.0 * tuned.max(0.05),
        "original backbone: {original} vs {tuned}"
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `--boxes`: photos in sub-folders, matched by file name; one without an entry is skipped and
/// counted; the report has every score for the method and the centre baseline.
#[test]
fn boxes_score_the_maps_beside_the_centre_baseline() {
    let photos = tempfile::tempdir().unwrap();
    for (folder, file) in [("cat", "cat.4001.jpg"), ("dog", "dog.4001.jpg")] {
        std::fs::create_dir_all(photos.path().join(folder)).unwrap();
        let from = shared_dir().join("data/catdog/val").join(folder).join(file);
        std::fs::copy(from, photos.path().join(folder).join(file)).unwrap();
    }
    let (w, h) = image::image_dimensions(photos.path().join("cat/cat.4001.jpg")).unwrap();
    let (w, h) = (w as f32, h as f32);
    let boxes = photos.path().join("boxes.json");
    std::fs::write(
        &boxes,
        format!(
            r#"{{"images": [{{"file": "cat/cat.4001.jpg",
                "head_box_xyxy": [{}, {}, {}, {}],
                "body_polygon_xy": [{}, {}, {}, {}, {}, {}]}}]}}"#,
            w * 0.25,
            h * 0.25,
            w * 0.75,
            h * 0.75,
            w * 0.1,
            h * 0.1,
            w * 0.9,
            h * 0.1,
            w * 0.5,
            h * 0.9
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = explain(
        &[
            "--input",
            photos.path().to_str().unwrap(),
            "--boxes",
            boxes.to_str().unwrap(),
            "--baselines",
        ],
        "gap-dense",
        out.path(),
    );
    ok(&output);
    assert!(
        out.path().join("cat_cat.4001.png").exists(),
        "sub-folder photos are named folder_stem"
    );
    let text = std::fs::read_to_string(out.path().join("localization.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["photos_without_entry"], 1, "{text}");
    for key in ["gradcam", "baseline_centre", "baseline_uniform"] {
        let scores = &report[key];
        assert_eq!(scores["images"], 1, "{text}");
        for score in [
            "pointing_game",
            "pointing_game_15px",
            "energy_in_box",
            "maxboxacc_v2",
            "pxap",
        ] {
            let v = scores[score].as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=1.0).contains(&v), "{key} {score}: {text}");
        }
        assert_eq!(scores["maxboxacc"].as_object().unwrap().len(), 3, "{text}");
    }
    // The centre of the photo is in the head box: the centre baseline points at it.
    assert_eq!(report["baseline_centre"]["pointing_game"], 1.0, "{text}");
    // A constant map points nowhere; its PxAP is the share of outline pixels (the prior).
    assert_eq!(report["baseline_uniform"]["pointing_game"], 0.0, "{text}");
    let pxap = report["baseline_uniform"]["pxap"].as_f64().unwrap();
    assert!(
        (0.25..0.5).contains(&pxap),
        "triangle of 0.8 x 0.8 / 2 = 0.32 of the photo: {text}"
    );
    // --baselines only adds to --boxes.
    let stderr = failure(&explain(
        &["--input", photos.path().to_str().unwrap(), "--baselines"],
        "gap-dense",
        out.path(),
    ));
    assert!(stderr.contains("--boxes"), "{stderr}");
    // Gradients cannot be scored as maps.
    let stderr = failure(&explain(
        &[
            "--input",
            photos.path().to_str().unwrap(),
            "--boxes",
            boxes.to_str().unwrap(),
            "--method",
            "guided-backprop",
        ],
        "gap-dense",
        out.path(),
    ));
    assert!(stderr.contains("--boxes scores maps"), "{stderr}");
    // An outline far outside its photo is refused before any map or overlay is written.
    let far = boxes.with_file_name("far.json");
    let text = std::fs::read_to_string(&boxes).unwrap();
    let at = text.find("\"body_polygon_xy\": [").unwrap() + "\"body_polygon_xy\": [".len();
    std::fs::write(&far, format!("{}1e30, 0, {}", &text[..at], &text[at..])).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let stderr = failure(&explain(
        &[
            "--input",
            photos.path().to_str().unwrap(),
            "--boxes",
            far.to_str().unwrap(),
        ],
        "gap-dense",
        fresh.path(),
    ));
    assert!(
        stderr.contains("outside") && stderr.contains("cat.4001.jpg"),
        "{stderr}"
    );
    assert!(
        !fresh.path().join("cat_cat.4001.png").exists(),
        "an overlay was written"
    );
}

/// Two photos with one file name cannot be told apart by a boxes file; an output directory
/// inside the input is not explained again.
#[test]
fn boxes_refuse_shared_file_names_and_the_output_dir_is_not_an_input() {
    let photos = tempfile::tempdir().unwrap();
    let photo = shared_dir().join("data/catdog/val/cat/cat.4001.jpg");
    for folder in ["cat", "dog"] {
        std::fs::create_dir_all(photos.path().join(folder)).unwrap();
        std::fs::copy(&photo, photos.path().join(folder).join("x.jpg")).unwrap();
    }
    let boxes = photos.path().join("boxes.json");
    std::fs::write(
        &boxes,
        r#"{"images": [{"file": "x.jpg", "head_box_xyxy": [1, 1, 50, 50]}]}"#,
    )
    .unwrap();
    let input = photos.path().to_str().unwrap();
    let out = photos.path().join("explained");
    let stderr = failure(&explain(
        &["--input", input, "--boxes", boxes.to_str().unwrap()],
        "gap-dense",
        &out,
    ));
    assert!(stderr.contains("share the file name `x.jpg`"), "{stderr}");
    // Without --boxes both are explained, as cat_x and dog_x; a second run into the same
    // output directory (inside the input) explains the same two photos, not the overlays.
    for _ in 0..2 {
        ok(&explain(&["--input", input], "gap-dense", &out));
        assert_eq!(shape(&out, "maps"), [2, 224, 224]);
    }
    assert!(out.join("cat_x.png").exists() && out.join("dog_x.png").exists());
}
