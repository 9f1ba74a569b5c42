//! Training runs end to end on a few real photos from ../shared with the width/8 VGG16 fixture:
//! a CAM run, a Grad-CAM run reusing the feature cache, TensorBoard's reader on both, kill and
//! resume, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, shared_dir, train};

mod common;

fn python() -> PathBuf {
    std::env::var_os("TENSORBOARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
            assert!(
                venv.exists(),
                "PYTHON VENV MISSING: run scripts/setup-venv.sh (or set TENSORBOARD_PYTHON)"
            );
            venv
        })
}

/// A small ImageFolder data set of real photos: `per_class` train and `val_per_class` val images
/// per class, plus one corrupt file in train/cat.
fn small_dataset(root: &Path, per_class: usize, val_per_class: usize) {
    let shared = shared_dir().join("data/catdog");
    for (split, count) in [("train", per_class), ("val", val_per_class)] {
        for class in ["cat", "dog"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let mut files: Vec<_> = std::fs::read_dir(shared.join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files.iter().take(count) {
                std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    std::fs::write(
        root.join("train/cat/corrupt.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
}

fn write_config(
    path: &Path,
    data: &Path,
    runs: &Path,
    name: &str,
    head: &str,
    method: &str,
    epochs: usize,
) {
    let weights = shared_dir().join("fixtures/vgg16-w8-parity/vgg16_features.safetensors");
    let text = format!(
        r#"[run]
name = "{name}"
runs_dir = "{runs}"
seed = 7

[data]
train_dir = "{data}/train"
val_dir = "{data}/val"
image_size = [160, 192]

[model]
backbone = "vgg16"
weights = "{weights}"
head = "{head}"

[train]
epochs = {epochs}
batch_size = 4
learning_rate = 0.01

[[callbacks]]
kind = "{method}"
layer = "block5_conv3"
num_images = 4
"#,
        runs = runs.display(),
        data = data.display(),
        weights = weights.display(),
    );
    std::fs::write(path, text).unwrap();
}

fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn metrics(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(9).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn cam_then_gradcam_runs_share_the_cache_and_tensorboard_reads_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, runs) = (tmp.path().join("data"), tmp.path().join("runs"));
    small_dataset(&data, 6, 3);
    let (cam, gradcam) = (tmp.path().join("cam.toml"), tmp.path().join("gradcam.toml"));
    write_config(&cam, &data, &runs, "cam", "gap-linear", "cam", 3);
    write_config(&gradcam, &data, &runs, "gradcam", "gap-dense", "gradcam", 3);

    let out = train(&["--config", cam.to_str().unwrap()]);
    let first = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipping") && stderr.contains("corrupt.jpg"),
        "{stderr}"
    );
    assert!(first.contains("skipped files: 1"), "{first}");
    let second = ok(&train(&["--config", gradcam.to_str().unwrap()]));
    assert!(
        second.contains("from the cache") && second.contains("backbone 0.0 s"),
        "{second}"
    );

    let dirs = run_dirs(&runs);
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for dir in &dirs {
        let rows = metrics(dir);
        // Each set's loss and accuracy, then its accuracy per class (named by the folders).
        assert_eq!(
            rows[0],
            "epoch,train_loss,train_accuracy,train_accuracy_cat,train_accuracy_dog,val_loss,\
             val_accuracy,val_accuracy_cat,val_accuracy_dog"
        );
        assert_eq!(rows.len(), 4);
        assert!(dir.join("config.toml").is_file() && dir.join("head.safetensors").is_file());
    }
    let cam_dir = dirs
        .iter()
        .find(|d| d.file_name().unwrap().to_string_lossy().starts_with("cam-"))
        .unwrap();
    for epoch in 1..=3 {
        let pngs = cam_dir.join(format!("images/cam/epoch-{epoch:03}"));
        assert!(
            pngs.join("grid.png").is_file() && pngs.join("cat.4001.png").is_file(),
            "{}",
            pngs.display()
        );
    }
    // The exported head explains photos with `train explain`.
    let photo = data.join("val/dog/dog.4001.jpg");
    let weights = shared_dir().join("fixtures/vgg16-w8-parity/vgg16_features.safetensors");
    ok(&train(&[
        "explain",
        "--weights",
        weights.to_str().unwrap(),
        "--head",
        "gap-linear",
        "--head-weights",
        cam_dir.join("head.safetensors").to_str().unwrap(),
        "--method",
        "cam",
        "--input",
        photo.to_str().unwrap(),
        "--out-dir",
        tmp.path().join("explained").to_str().unwrap(),
    ]));

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_tensorboard.py");
    let check = Command::new(python())
        .arg(script)
        .args(["--runs", runs.to_str().unwrap(), "--epochs", "3"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    println!("{report}");
    assert!(
        check.status.success() && report.contains("ALL CHECKS PASSED"),
        "{report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        report.contains("cam: 4 per-image tags") && report.contains("gradcam: 4 per-image tags"),
        "{report}"
    );
}

/// `train --config config` in the background, with a test hook (`env` = `value`) that stalls it.
fn spawn_stalled(config: &Path, env: &str, value: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", config.to_str().unwrap()])
        .env(env, value)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The first run dir under `runs` once `ready` holds for it (`what` names the wait in the
/// failure); fails after 120 s.
fn wait_for_run(runs: &Path, what: &str, ready: impl Fn(&Path) -> bool) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(dir) = run_dirs(runs).first() {
            if ready(dir) {
                return dir.clone();
            }
        }
        assert!(Instant::now() < deadline, "the run never reached {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run dir whose metrics.csv has `lines` lines.
fn metrics_lines(lines: usize) -> impl Fn(&Path) -> bool {
    move |dir| dir.join("metrics.csv").is_file() && metrics(dir).len() == lines
}

#[test]
fn a_killed_run_resumes_to_the_same_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_dataset(&data, 6, 3);
    let (config_a, config_b) = (tmp.path().join("a.toml"), tmp.path().join("b.toml"));
    let (runs_a, runs_b) = (tmp.path().join("runs-a"), tmp.path().join("runs-b"));
    write_config(
        &config_a,
        &data,
        &runs_a,
        "whole",
        "gap-dense",
        "gradcam",
        5,
    );
    write_config(
        &config_b,
        &data,
        &runs_b,
        "killed",
        "gap-dense",
        "gradcam",
        5,
    );
    ok(&train(&["--config", config_a.to_str().unwrap()]));

    let mut child = spawn_stalled(&config_b, "TRAIN_TEST_STALL_AFTER_EPOCH", "2");
    // Wait for the checkpoint of epoch 2, then SIGKILL.
    let run = wait_for_run(&runs_b, "epoch 2", metrics_lines(3));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let resumed = ok(&train(&["--resume", run.to_str().unwrap()]));
    assert!(resumed.contains("resuming after epoch 2"), "{resumed}");
    let whole = run_dirs(&runs_a).remove(0);
    assert_eq!(metrics(&run), metrics(&whole));
    // The event file was continued, not duplicated: each epoch's scalar exactly once.
    let files = tensorboard::read::event_files(&run).unwrap();
    assert_eq!(files.len(), 1);
    let events = tensorboard::read::read_event_file(&files[0])
        .unwrap()
        .events;
    let mut steps: Vec<i64> = events
        .iter()
        .filter(|e| matches!(&e.what, Some(tensorboard::proto::EventWhat::Summary(s)) if s.value.iter().any(|v| v.tag == "loss/val")))
        .map(|e| e.step)
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, [1, 2, 3, 4, 5]);
    // A finished run resumes to nothing.
    assert!(ok(&train(&["--resume", run.to_str().unwrap()])).contains("already complete"));
}

#[test]
fn a_run_killed_after_its_last_checkpoint_finishes_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_dataset(&data, 6, 3);
    let (config, runs) = (tmp.path().join("c.toml"), tmp.path().join("runs"));
    write_config(&config, &data, &runs, "end", "gap-linear", "cam", 2);
    // Stall after the last epoch's checkpoint, before the run's end, and SIGKILL it there.
    let mut child = spawn_stalled(&config, "TRAIN_TEST_STALL_AFTER_EPOCH", "2");
    let run = wait_for_run(&runs, "epoch 2", metrics_lines(3));
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let strips = |run: &Path| {
        let files = tensorboard::read::event_files(run).unwrap();
        files
            .iter()
            .flat_map(|f| tensorboard::read::read_event_file(f).unwrap().events)
            .filter(|e| matches!(&e.what, Some(tensorboard::proto::EventWhat::Summary(s)) if s.value.iter().any(|v| v.tag.contains("/evolution/"))))
            .count()
    };
    assert!(!run.join("finished").exists());
    assert_eq!(strips(&run), 0);
    // The resume does the run's end (evolution strips, HParams session end), not "complete".
    let resumed = ok(&train(&["--resume", run.to_str().unwrap()]));
    assert!(resumed.contains("resuming after epoch 2"), "{resumed}");
    assert!(run.join("finished").exists());
    let once = strips(&run);
    assert!(once > 0, "no evolution strips after the resume");
    assert!(ok(&train(&["--resume", run.to_str().unwrap()])).contains("already complete"));

    // Killed during its end, with some of the end already on disk: the resume cuts the event
    // file back and redoes the end, so each strip is written once.
    std::fs::remove_dir_all(&runs).unwrap();
    let mut child = spawn_stalled(&config, "TRAIN_TEST_STALL_DURING_END", "1");
    let run = wait_for_run(&runs, "its end", |dir| {
        dir.join("finishing").is_file() && strips(dir) == once
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run.join("finished").exists());
    ok(&train(&["--resume", run.to_str().unwrap()]));
    assert!(run.join("finished").exists());
    assert_eq!(strips(&run), once, "strips written twice");
}

#[test]
fn bad_inputs_are_clear_errors_and_write_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_dataset(&data, 2, 1);
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    let expect_error = |edit: &dyn Fn(String) -> String, setup: &dyn Fn(), message: &str| {
        write_config(&config, &data, &runs, "bad", "gap-linear", "cam", 1);
        let text = edit(std::fs::read_to_string(&config).unwrap());
        std::fs::write(&config, text).unwrap();
        setup();
        let out = train(&["--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "expected failure for `{message}`");
        assert!(
            stderr.contains(message),
            "expected `{message}` in:\n{stderr}"
        );
        assert!(
            run_dirs(&runs).is_empty(),
            "a run dir was created for `{message}`"
        );
    };
    let none = || {};
    let data_s = data.display().to_string();
    expect_error(
        &|t| t.replace(&format!("{data_s}/train"), "/no/such/dir"),
        &none,
        "[data] train_dir: /no/such/dir does not exist",
    );
    expect_error(
        &|t| t.replace("seed = 7", "seed = 7\ncolour = \"red\""),
        &none,
        "unknown field `colour`",
    );
    expect_error(
        &|t| t.replace("block5_conv3", "block6_conv1"),
        &none,
        "unknown layer `block6_conv1` (layers: block1_conv1",
    );
    expect_error(
        &|t| t.replace("gap-linear", "gap-dense"),
        &none,
        "CAM needs a gap-linear head",
    );
    expect_error(
        &|t| t.replace("epochs = 1", "epochs = \"many\""),
        &none,
        "invalid type",
    );
    let empty_class = data.join("train/zebra");
    expect_error(
        &|t| t,
        &|| std::fs::create_dir_all(&empty_class).unwrap(),
        "class folder",
    );
    std::fs::remove_dir_all(&empty_class).unwrap();
    let single = tmp.path().join("single");
    std::fs::create_dir_all(single.join("cat")).unwrap();
    std::fs::copy(data.join("val/cat/cat.4001.jpg"), single.join("cat/a.jpg")).unwrap();
    let single_s = single.display().to_string();
    expect_error(
        &|t| t.replace(&format!("{data_s}/train"), &single_s),
        &none,
        "single class",
    );
}

#[test]
fn oxford_head_boxes_and_synthetic_boxes_use_one_format() {
    // The harness reads ../shared's Oxford-IIIT Pet annotations as they are.
    let status = Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "synth", "--train", "4", "--val", "2", "--size", "64", "--out",
        ])
        .arg(tempfile::tempdir().unwrap().path().join("s"))
        .status()
        .unwrap();
    assert!(status.success());
    let oxford = shared_dir().join("data/catdog/annotations/oxford_loc.json");
    let text = std::fs::read_to_string(&oxford).unwrap();
    assert!(text.contains("head_box_xyxy"));
    // A run on the Oxford images with their boxes logs localization scalars.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (split, n) in [("train", 6), ("val", 4)] {
        for class in ["cat", "dog"] {
            let dir = data.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let mut files: Vec<_> =
                std::fs::read_dir(shared_dir().join("data/catdog/oxford_loc").join(class))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
            files.sort();
            let skip = if split == "train" { 0 } else { 6 };
            for f in files.iter().skip(skip).take(n) {
                std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    write_config(&config, &data, &runs, "oxford", "gap-linear", "cam", 2);
    let with_boxes = |boxes: &Path, extra: &str| {
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "image_size = [160, 192]",
            &format!(
                "image_size = [160, 192]\nboxes = \"{}\"{extra}",
                boxes.display()
            ),
        );
        let path = tmp.path().join("with-boxes.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let out = ok(&train(&[
        "--config",
        with_boxes(&oxford, "\nuniform_baseline = true")
            .to_str()
            .unwrap(),
    ]));
    assert!(
        out.contains("cam (last epoch): drift ") && out.contains(", pointing game"),
        "{out}"
    );
    // The baselines are in the summary beside the method.
    assert!(
        out.contains("baseline_centre (last epoch): pointing game ")
            && out.contains("baseline_uniform (last epoch): pointing game 0.000"),
        "{out}"
    );
    assert!(!out.contains("no body_polygon_xy"), "{out}");
    let run = run_dirs(&runs).remove(0);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let scores = "pointing_game,{m}_pointing_game_15px,{m}_energy_in_box,{m}_box_iou,\
                  {m}_maxboxacc_v2,{m}_maxboxacc_0.3,{m}_maxboxacc_0.5,{m}_maxboxacc_0.7,{m}_pxap";
    // The baselines have every score but box IoU (its threshold is each method's own).
    let baseline = |m: &str| {
        scores
            .replace("{m}", m)
            .replace(&format!(",{m}_box_iou"), "")
    };
    let header = format!(
        "epoch,train_loss,train_accuracy,train_accuracy_cat,train_accuracy_dog,val_loss,\
         val_accuracy,val_accuracy_cat,val_accuracy_dog,cam_drift,cam_drift_from_start,\
         cam_{},baseline_centre_{},baseline_uniform_{},train_seconds,head_seconds",
        scores.replace("{m}", "cam"),
        baseline("baseline_centre"),
        baseline("baseline_uniform"),
    );
    assert!(csv.starts_with(&header), "{csv}\nexpected {header}");
    // In TensorBoard each baseline is a tag of the run itself, `<baseline>/<score>`, with the
    // CSV's values (no second run in TensorBoard's run list), and the run's custom scalars
    // layout draws it in the method's chart of that score.
    let table = train::run::metrics::MetricsTable::read(&run.join("metrics.csv")).unwrap();
    let files = tensorboard::read::event_files(&run).unwrap();
    assert_eq!(files.len(), 1);
    let events = tensorboard::read::read_event_file(&files[0])
        .unwrap()
        .events;
    for baseline in ["baseline_centre", "baseline_uniform"] {
        assert!(!run.join(baseline).exists(), "{baseline} written as a run");
    }
    let layout: Vec<u8> = events
        .iter()
        .find_map(|e| match &e.what {
            Some(tensorboard::proto::EventWhat::Summary(s)) => {
                s.value.iter().find_map(|v| match &v.value {
                    Some(tensorboard::proto::SummaryValueKind::Tensor(t))
                        if v.tag == "custom_scalars__config__" =>
                    {
                        t.string_val.first().cloned()
                    }
                    _ => None,
                })
            }
            _ => None,
        })
        .expect("a custom scalars layout");
    for (baseline, score) in [
        ("baseline_centre", "pointing_game"),
        ("baseline_centre", "maxboxacc_v2"),
        ("baseline_uniform", "pxap"),
    ] {
        let tag = format!("{baseline}/{score}");
        let logged: Vec<(i64, f32)> = events
            .iter()
            .filter_map(|e| match &e.what {
                Some(tensorboard::proto::EventWhat::Summary(s)) => s
                    .value
                    .iter()
                    .find(|v| v.tag == tag)
                    .map(|v| (e.step, scalar_value(v))),
                _ => None,
            })
            .collect();
        // The layout charts the method's score with the baseline's (its regular expressions,
        // as bytes of the serialised layout).
        for tag in [format!("^cam/{score}$"), format!("^{baseline}/{score}$")] {
            let bytes = tag.as_bytes();
            assert!(
                layout.windows(bytes.len()).any(|w| w == bytes),
                "{tag} not in the layout"
            );
        }
        let column = format!("{baseline}_{score}");
        let expected: Vec<(i64, f32)> = table
            .rows
            .iter()
            .filter_map(|r| Some((r.epoch as i64, *r.values.get(&column)?)))
            .collect();
        assert_eq!(logged.len(), 3, "steps 0, 1, 2 of {column}: {logged:?}");
        assert!(expected.len() >= 2, "{column}: {expected:?}");
        for row in &expected {
            assert!(logged.contains(row), "{column}: {row:?} not in {logged:?}");
            assert!((0.0..=1.0).contains(&row.1), "{column}");
        }
    }

    // Head boxes alone: the run says so once and logs the head-box scores only.
    let text = std::fs::read_to_string(&oxford).unwrap();
    let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
    for entry in file["images"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("body_polygon_xy");
    }
    let heads_only = tmp.path().join("heads.json");
    std::fs::write(&heads_only, file.to_string()).unwrap();
    let out = ok(&train(&[
        "--config",
        with_boxes(&heads_only, "").to_str().unwrap(),
    ]));
    assert_eq!(
        out.matches("has no body_polygon_xy outlines").count(),
        1,
        "{out}"
    );
    let run = run_dirs(&runs).into_iter().find(|r| r != &run).unwrap();
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with(
            "epoch,train_loss,train_accuracy,train_accuracy_cat,train_accuracy_dog,val_loss,\
         val_accuracy,val_accuracy_cat,val_accuracy_dog,cam_drift,cam_drift_from_start,\
             cam_pointing_game,cam_pointing_game_15px,cam_energy_in_box,cam_box_iou,\
             baseline_centre_pointing_game,baseline_centre_pointing_game_15px,\
             baseline_centre_energy_in_box,train_seconds"
        ),
        "{csv}"
    );
}

/// A summary value's scalar (the simple_value field).
fn scalar_value(v: &tensorboard::proto::SummaryValue) -> f32 {
    match &v.value {
        Some(tensorboard::proto::SummaryValueKind::SimpleValue(x)) => *x,
        other => panic!("{} is not a scalar: {other:?}", v.tag),
    }
}

/// A synthetic run with CAM and Grad-CAM on identical settings prints no note that reads like a
/// warning: its boxes have no outlines by design, and both callbacks score the same photos.
#[test]
fn a_synthetic_run_with_two_callbacks_prints_no_false_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let config = common::small_config(
        tmp.path(),
        common::SmallRun {
            name: "notes",
            runs: &runs,
            data_seed: 1,
            train: 32,
            seed: 0,
            epochs: 1,
            callbacks: "[[callbacks]]\nkind = \"cam\"\nnum_images = 2\n\n\
                        [[callbacks]]\nkind = \"gradcam\"\nnum_images = 2\n",
        },
    );
    let out = ok(&train(&["--config", config.to_str().unwrap()]));
    let run = &common::run_dirs(&runs)[0];
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    for column in ["cam_pointing_game", "gradcam_pointing_game"] {
        assert!(csv.contains(column), "{column} was not scored:\n{csv}");
    }
    for false_note in ["body_polygon_xy", "score different localization sets"] {
        assert!(!out.contains(false_note), "`{false_note}` printed:\n{out}");
    }
}
