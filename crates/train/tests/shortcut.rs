//! The synthetic cue (`[data] synthetic.cue`, `train synth --cue`): a run on a tiny cued set logs
//! accuracy on the eval sets `cue` and `clean` and `<method>/energy_in_cue_box` at every drawing
//! (step 0 included), and bad cue settings are clear errors. The quickstart-sized figures are
//! checked by scripts/check-shortcut.sh.

use std::path::Path;

use common::{ok, run_dirs, train};

mod common;

fn config(dir: &Path, cue: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("cue.toml");
    let text = format!(
        r#"[run]
name = "cue"
runs_dir = "{runs}"
seed = 2

[data]
synthetic = {{ seed = 4, train = 24, val = 8, size = 64, cue = {cue} }}
image_size = 64
{extra}
[model]
backbone = "vgg16"
weights = "data/weights/vgg16-w8-synthetic.safetensors"
head = "gap-linear"
train_from = "block5_conv1"

[train]
epochs = 2
batch_size = 8
learning_rate = 1e-2

[[callbacks]]
kind = "cam"
num_images = 4
"#,
        runs = dir.join("runs").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_cued_run_logs_cue_and_clean_accuracy_and_the_energy_on_the_cue() {
    let tmp = tempfile::tempdir().unwrap();
    let path = config(tmp.path(), "{ size = 16, animal_agrees = 0.75 }", "");
    ok(&train(&["--config", path.to_str().unwrap()]));
    let run = run_dirs(&tmp.path().join("runs")).remove(0);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in [
        "cue_accuracy",
        "clean_accuracy",
        "cam_energy_in_cue_box",
        "baseline_centre_energy_in_cue_box",
    ] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    let at = header
        .iter()
        .position(|c| *c == "cam_energy_in_cue_box")
        .unwrap();
    let values: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 3, "step 0 and 2 epochs: {values:?}");
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "{values:?}");
    // The generated set: the eval sets' images, and a cue box per train and val image.
    let cache = tmp.path().join("runs/.cache");
    let set = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().contains("-cue16-"))
        .expect("the cued set in the cache");
    let boxes = std::fs::read_to_string(set.join("boxes.json")).unwrap();
    assert_eq!(boxes.matches("cue_box_xyxy").count(), 24 + 8);
    for split in ["cue", "clean"] {
        let files: usize = ["cat", "dog"]
            .iter()
            .map(|c| std::fs::read_dir(set.join(split).join(c)).unwrap().count())
            .sum();
        assert_eq!(files, 8, "{split}");
    }
    // TensorBoard: the eval sets' accuracy and the cue's energy, with its baseline charted.
    let tags: std::collections::BTreeSet<String> = tensorboard::read::event_files(&run)
        .unwrap()
        .iter()
        .flat_map(|f| tensorboard::read::read_event_file(f).unwrap().events)
        .filter_map(|e| match e.what {
            Some(tensorboard::proto::EventWhat::Summary(s)) => Some(s.value),
            _ => None,
        })
        .flatten()
        .map(|v| v.tag)
        .collect();
    for tag in [
        "accuracy/cue",
        "accuracy/clean",
        "cam/energy_in_cue_box",
        "baseline_centre/energy_in_cue_box",
        "custom_scalars__config__",
    ] {
        assert!(tags.contains(tag), "{tag} not logged");
    }
}

#[test]
fn bad_cue_settings_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let eval_cue = format!(
        "\n[[data.eval]]\nname = \"clean\"\ndir = \"{}\"\n",
        tmp.path().display()
    );
    for (cue, extra, needle) in [
        ("{ size = 40 }", "", "half the image"),
        ("{ size = 1 }", "", "synthetic.cue size"),
        (
            "{ mark_agrees = 1.5 }",
            "",
            "mark_agrees: 1.5 is not a share",
        ),
        ("{ animal_agrees = -0.1 }", "", "animal_agrees"),
        ("{ colour = 3 }", "", "unknown field"),
        ("{}", eval_cue.as_str(), "adds the eval sets"),
    ] {
        let path = config(tmp.path(), cue, extra);
        let out = train(&["--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cue} {extra} was accepted");
        assert!(
            stderr.contains(needle),
            "{cue}: expected `{needle}` in {stderr}"
        );
    }
    // `train synth --cue`: the same checks.
    let out = train(&[
        "synth",
        "--out",
        tmp.path().join("s").to_str().unwrap(),
        "--size",
        "64",
        "--cue",
        "40",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("half the image"),
        "{stderr}"
    );
    let out = train(&[
        "synth",
        "--out",
        tmp.path().join("s").to_str().unwrap(),
        "--train",
        "4",
        "--val",
        "2",
        "--size",
        "64",
        "--cue",
        "0",
    ]);
    ok(&out);
    assert!(tmp.path().join("s/clean/cat").is_dir());
}
