//! `train explain --backbone resnet18|resnet50` against torchvision + pytorch-grad-cam 1.5.7:
//! fixtures made by `scripts/make_resnet_fixture.py` (ResNets with torchvision's keys, every
//! width divided by 8, random weights with non-trivial BatchNorm statistics, a K-class fc, photos
//! at a non-square size; maps stored as float16), in `tests/fixtures/resnet{18,50}-w8/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ok;
use model::WeightFile;

mod common;

fn fixture(name: &str) -> PathBuf {
    common::repo()
        .join("crates/train/tests/fixtures")
        .join(name)
}

fn explain(dir: &Path, backbone: &str, weights: &str, extra: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["explain", "--backbone", backbone, "--head", "gap-linear"])
        .arg("--weights")
        .arg(dir.join(weights))
        .arg("--head-weights")
        .arg(dir.join("head.safetensors"))
        .arg("--input")
        .arg(dir.join("expected.safetensors"))
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .output()
        .expect("run train")
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The fixed class the fixture's `_class` maps explain.
fn fixed_class(dir: &Path) -> usize {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    meta["fixed_class"].as_u64().unwrap() as usize
}

/// Every method × layer × target of the fixture, and the logits, within 2e-3 of PyTorch.
fn check_fixture(name: &str, backbone: &str, weight_files: &[&str]) {
    let dir = fixture(name);
    let expected = WeightFile::open(dir.join("expected.safetensors")).unwrap();
    let fixed = fixed_class(&dir).to_string();
    let cases = [
        ("gradcam", "layer4", "gradcam_layer4"),
        ("gradcam++", "layer4", "gradcampp_layer4"),
        ("layercam", "layer4", "layercam_layer4"),
        ("hirescam", "layer4", "hirescam_layer4"),
        ("gradcam", "layer3", "gradcam_layer3"),
        // At layer4 a GAP → linear head makes the gradient uniform, so HiResCAM equals Grad-CAM
        // there; at layer3 they differ.
        ("hirescam", "layer3", "hirescam_layer3"),
    ];
    for (method, layer, key) in cases {
        for (target, suffix) in [("predicted", ""), (fixed.as_str(), "_class")] {
            let out = tempfile::tempdir().unwrap();
            let args = ["--method", method, "--layer", layer, "--target", target];
            ok(&explain(&dir, backbone, weight_files[0], &args, out.path()));
            let ours = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
            let key = format!("{key}{suffix}");
            let shape = expected.shape(&key).unwrap();
            let err = max_difference(
                &ours.tensor("maps", &shape).unwrap(),
                &expected.tensor(&key, &shape).unwrap(),
            );
            assert!(
                err < 2e-3,
                "{name} {key}: maps differ from pytorch-grad-cam by {err}"
            );
            if key == "gradcam_layer4" {
                let shape = expected.shape("logits").unwrap();
                let want = expected.tensor("logits", &shape).unwrap();
                let got = ours.tensor("logits", &shape).unwrap();
                let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                let err = max_difference(&got, &want) / scale;
                assert!(err < 1e-4, "{name}: logits differ by {err} (relative)");
            }
        }
    }
    // The other weight formats load to the same network.
    let reference = tempfile::tempdir().unwrap();
    ok(&explain(
        &dir,
        backbone,
        weight_files[0],
        &[],
        reference.path(),
    ));
    let reference = WeightFile::open(reference.path().join("maps.safetensors")).unwrap();
    let shape = reference.shape("maps").unwrap();
    for file in &weight_files[1..] {
        let out = tempfile::tempdir().unwrap();
        ok(&explain(&dir, backbone, file, &[], out.path()));
        let ours = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
        let err = max_difference(
            &ours.tensor("maps", &shape).unwrap(),
            &reference.tensor("maps", &shape).unwrap(),
        );
        assert!(err < 1e-6, "{name}: {file} gives other maps ({err})");
    }
}

#[test]
fn resnet18_matches_pytorch_grad_cam() {
    check_fixture(
        "resnet18-w8",
        "resnet18",
        &["resnet.safetensors", "resnet.pth", "resnet-legacy.pth"],
    );
}

#[test]
fn resnet50_matches_pytorch_grad_cam() {
    check_fixture("resnet50-w8", "resnet50", &["resnet.safetensors"]);
}

#[test]
fn resnet_bad_inputs_are_clear_errors() {
    let dir = fixture("resnet18-w8");
    let run = |backbone: &str, extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let output = explain(&dir, backbone, "resnet.safetensors", extra, out.path());
        assert!(!output.status.success(), "{backbone} {extra:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // A ResNet-18 file is not a ResNet-50 (its layer1.0.conv1 is 3x3, not 1x1) nor a ResNet-34.
    let err = run("resnet50", &[]);
    assert!(err.contains("layer1.0.conv1.weight"), "{err}");
    let err = run("resnet34", &[]);
    assert!(err.contains("layer1.2.conv1.weight"), "{err}");
    // Layers are named; a stage beyond layer4 or a block that does not exist is refused with
    // the list of names.
    for layer in ["layer5", "layer4.2", "fc"] {
        let err = run("resnet18", &["--layer", layer]);
        assert!(
            err.contains("unknown layer") && err.contains("layer4.1"),
            "{err}"
        );
    }
    // A class the 3-logit head does not have, and a name without names to match it.
    let err = run("resnet18", &["--target", "3"]);
    assert!(err.contains("class 3 does not exist"), "{err}");
    let err = run("resnet18", &["--target", "zebra"]);
    assert!(err.contains("--classes"), "{err}");
    let err = run("resnet18", &["--classes", "cat,dog", "--target", "cat"]);
    assert!(err.contains("2 names for a head with 3 classes"), "{err}");
    // Guided backpropagation works on the built-in ResNet? No: its ReLUs after the residual
    // sums are not walked layer by layer; it is refused, not answered wrongly.
    let err = run("resnet18", &["--method", "guided-backprop"]);
    assert!(err.contains("guided"), "{err}");
}

#[test]
fn class_names_name_the_target_and_the_table() {
    let dir = fixture("resnet18-w8");
    let out = tempfile::tempdir().unwrap();
    let stdout = ok(&explain(
        &dir,
        "resnet18",
        "resnet.safetensors",
        &["--classes", "cat,dog,fox", "--target", "fox"],
        out.path(),
    ));
    // The table names the predicted and the explained class.
    assert!(stdout.contains("fox (gradcam)"), "{stdout}");
    let by_index = tempfile::tempdir().unwrap();
    ok(&explain(
        &dir,
        "resnet18",
        "resnet.safetensors",
        &["--target", "2"],
        by_index.path(),
    ));
    let a = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
    let b = WeightFile::open(by_index.path().join("maps.safetensors")).unwrap();
    let shape = a.shape("maps").unwrap();
    assert_eq!(
        a.tensor("maps", &shape).unwrap(),
        b.tensor("maps", &shape).unwrap()
    );
}

/// A run with a ResNet backbone: frozen (head only), then fine-tuning `layer4` (its convs train
/// with their BatchNorm frozen beside them); the exported backbone keeps torchvision's keys,
/// changes only layer4's conv weights, and `train explain` reads it with the run's head.
#[test]
fn resnet_runs_train_fine_tune_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixture("resnet18-w8").join("resnet.safetensors");
    let config = |name: &str, extra: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        let text = format!(
            r#"[run]
name = "{name}"
runs_dir = "{runs}"
seed = 0

[data]
synthetic = {{ seed = 1, train = 48, val = 16, size = 64 }}
image_size = 64

[model]
backbone = "resnet18"
weights = "{weights}"
head = "gap-linear"
{extra}

[train]
epochs = 2
batch_size = 16
learning_rate = 1e-2

[[callbacks]]
kind = "cam"

[[callbacks]]
kind = "gradcam"
layer = "layer3"
"#,
            runs = dir.path().join("runs").display(),
            weights = weights.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    for (name, extra) in [("frozen", ""), ("layer4", "train_from = \"layer4\"")] {
        let out = common::train(&["--config", config(name, extra).to_str().unwrap()]);
        let stdout = ok(&out);
        assert!(stdout.contains("epoch   2/2"), "{stdout}");
    }
    let runs = common::run_dirs(&dir.path().join("runs"));
    assert_eq!(runs.len(), 2, "{runs:?}");
    let tuned = runs
        .iter()
        .find(|r| r.to_string_lossy().contains("layer4"))
        .unwrap();
    let metrics = std::fs::read_to_string(tuned.join("metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("epoch,train_loss,train_accuracy,train_accuracy_cat"),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2
    );

    // The exported backbone: every original tensor, layer4's conv weights changed, the rest not.
    let original = WeightFile::open(&weights).unwrap();
    let exported = WeightFile::open(tuned.join("backbone.safetensors")).unwrap();
    let (mut changed, mut same) = (0, 0);
    for key in original.keys() {
        if key.starts_with("fc.") || key.ends_with("num_batches_tracked") {
            continue;
        }
        let shape = original.shape(&key).unwrap();
        let a = original.tensor(&key, &shape).unwrap();
        let b = exported.tensor(&key, &shape).unwrap();
        if a == b {
            assert!(
                !(key.starts_with("layer4.") && key.contains("conv")),
                "{key} did not train"
            );
            same += 1;
        } else {
            assert!(
                key.starts_with("layer4.") && key.ends_with("weight") && !key.contains(".bn"),
                "{key} changed"
            );
            changed += 1;
        }
    }
    assert!(
        changed >= 4 && same > changed,
        "changed {changed}, same {same}"
    );

    // explain reads the fine-tuned backbone with the run's head, its classes by name.
    let out = tempfile::tempdir().unwrap();
    let stdout = ok(&Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "explain",
            "--backbone",
            "resnet18",
            "--head",
            "gap-linear",
            "--size",
            "64",
        ])
        .arg("--weights")
        .arg(tuned.join("backbone.safetensors"))
        .arg("--head-weights")
        .arg(tuned.join("head.safetensors"))
        .arg("--input")
        .arg(common::shared_dir().join("data/catdog/val/dog/dog.4001.jpg"))
        .args(["--target", "dog", "--out-dir"])
        .arg(out.path())
        .output()
        .unwrap());
    assert!(stdout.contains("dog (gradcam)"), "{stdout}");
}

/// Every map method (and eigen_smooth, aug_smooth) explains a ResNet in `train explain`'s
/// float64, at a stage and at a block, with maps in [0, 1].
#[test]
fn every_method_explains_a_resnet() {
    let dir = fixture("resnet18-w8");
    let methods = [
        "cam",
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
    ];
    let runs = methods
        .iter()
        .map(|m| vec!["--method", m, "--layer", "layer4"])
        .chain([
            vec![
                "--method",
                "gradcam",
                "--layer",
                "layer3.1",
                "--eigen-smooth",
            ],
            vec!["--method", "gradcam", "--layer", "conv1", "--aug-smooth"],
            vec!["--method", "ablationcam", "--layer", "maxpool"],
        ]);
    for args in runs {
        let out = tempfile::tempdir().unwrap();
        ok(&explain(
            &dir,
            "resnet18",
            "resnet.safetensors",
            &args,
            out.path(),
        ));
        let maps = WeightFile::open(out.path().join("maps.safetensors")).unwrap();
        let shape = maps.shape("maps").unwrap();
        let values = maps.tensor("maps", &shape).unwrap();
        assert!(
            values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{args:?}: a map value outside [0, 1]"
        );
    }
}
