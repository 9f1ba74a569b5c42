//! The sharded backbone pass (`train features --shard K/N`): shards filling one cache side by
//! side (one of them twice at once) leave `train` nothing to compute and the same metrics as a
//! run without shards, for a frozen backbone and for a fine-tuning cut; a shard killed mid-pass
//! leaves no entry that a later run must throw away; bad shards and cache dirs are clear errors.
//! The same on a real Slurm cluster: scripts/check-slurm.sh (CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{metrics_without_timing, ok, repo, run_dirs, small_config, SmallRun};

const CALLBACKS: &str = r#"
[[callbacks]]
kind = "cam"
layer = "block5_conv3"
num_images = 4

[[callbacks]]
kind = "gradcam"
layer = "block5_conv3"
num_images = 4
"#;

/// The test's config with its runs under `runs` (`train_from`: fine-tune from that layer).
fn config(dir: &Path, name: &str, runs: &Path, train_from: Option<&str>) -> PathBuf {
    let path = small_config(
        dir,
        SmallRun {
            name,
            runs,
            data_seed: 3,
            train: 120,
            seed: 5,
            epochs: 2,
            callbacks: CALLBACKS,
        },
    );
    if let Some(layer) = train_from {
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "head = \"gap-linear\"",
            &format!("head = \"gap-linear\"\ntrain_from = \"{layer}\""),
        );
        std::fs::write(&path, text).unwrap();
    }
    path
}

/// `train` with `args`, outside any scheduler (no Slurm or Kubernetes variables).
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command.args(args).current_dir(repo());
    for name in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "JOB_COMPLETIONS",
    ] {
        command.env_remove(name);
    }
    command
}

fn shard(config: &Path, shard: &str) -> Child {
    command(&[
        "features",
        "--config",
        config.to_str().unwrap(),
        "--shard",
        shard,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// The end-of-run summary of a run's stdout.
fn stdout_of_summary(stdout: &str) -> &str {
    &stdout[stdout.find("\nsummary: ").expect("a summary")..]
}

/// `(computed, cached)` from the line `features: X computed, Y cached`.
fn tally(stdout: &str) -> (usize, usize) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("features: "))
        .unwrap_or_else(|| panic!("no `features:` line in\n{stdout}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The cache's entries (not the synthetic set, not temporary files); none before it exists.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Photos of our own (not the generated set) for a config's `[data]`: 120 + 16 synthetic
/// images, the first validation cat unreadable (a callback would explain it if it could be
/// read), and an eval set `again` (the validation images again, boxes too) that localization
/// reaches past the validation set's 15 readable images. Returns the `[data]` lines.
fn own_photos(dir: &Path) -> String {
    let data = common::synth_data(dir, 120, 16);
    for class in ["cat", "dog"] {
        for photo in std::fs::read_dir(data.join("val").join(class)).unwrap() {
            let photo = photo.unwrap().path();
            // Boxes are looked up by file name: the copies need names of their own.
            let name = format!("again_{}", photo.file_name().unwrap().to_string_lossy());
            let to = data.join("again").join(class).join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&photo, to).unwrap();
        }
    }
    let mut cats: Vec<PathBuf> = std::fs::read_dir(data.join("val/cat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cats.sort();
    std::fs::write(&cats[0], b"not a photo").unwrap();
    let boxes_path = data.join("boxes.json");
    let mut boxes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&boxes_path).unwrap()).unwrap();
    let images = boxes["images"].as_array_mut().unwrap();
    let again: Vec<serde_json::Value> = images
        .iter()
        .filter(|e| e["file"].as_str().unwrap().starts_with("val/"))
        .map(|e| {
            let mut e = e.clone();
            let file = e["file"].as_str().unwrap().replacen("val/", "again/", 1);
            let (dir, name) = file.rsplit_once('/').unwrap();
            e["file"] = format!("{dir}/again_{name}").into();
            e
        })
        .collect();
    assert!(!again.is_empty());
    images.extend(again);
    // A photo with a box must be readable (its box is checked against it before the run): the
    // unreadable one has none.
    let unreadable = format!("val/cat/{}", cats[0].file_name().unwrap().to_string_lossy());
    images.retain(|e| e["file"].as_str() != Some(unreadable.as_str()));
    std::fs::write(&boxes_path, boxes.to_string()).unwrap();
    format!(
        "train_dir = \"{0}/train\"\nval_dir = \"{0}/val\"\nboxes = \"{0}/boxes.json\"",
        data.display()
    )
}

/// The config at `path` reading the photos of [`own_photos`] (`data_lines`), with the eval set
/// `again`, scoring localization on 24 images.
fn with_photos(path: &Path, data_lines: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("synthetic = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let eval = format!(
        "\n[[data.eval]]\nname = \"again\"\ndir = \"{}\"\n\n[model]",
        Path::new(data_lines.split('"').nth(1).unwrap())
            .parent()
            .unwrap()
            .join("again")
            .display()
    );
    let text = format!("{}{}{}", &text[..start], data_lines, &text[end..])
        .replacen("\n[model]", &eval, 1)
        .replace("num_images = 4", "num_images = 4\nlocalization_images = 24");
    std::fs::write(path, text).unwrap();
}

fn sharded_run_equals_a_single_run(train_from: Option<&str>, photos: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (single_runs, sharded_runs) = (tmp.path().join("single"), tmp.path().join("sharded"));
    let single = config(tmp.path(), "single", &single_runs, train_from);
    let sharded = config(tmp.path(), "sharded", &sharded_runs, train_from);
    if photos {
        let data_lines = own_photos(tmp.path());
        with_photos(&single, &data_lines);
        with_photos(&sharded, &data_lines);
    }
    ok(&command(&["--config", single.to_str().unwrap()])
        .output()
        .unwrap());

    // Four shards at once, and shard 1 twice at the same time.
    let children: Vec<Child> = ["0/4", "1/4", "2/4", "3/4", "1/4"]
        .iter()
        .map(|s| shard(&sharded, s))
        .collect();
    let mut computed = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = ok(&child.wait_with_output().unwrap());
        if i < 4 {
            assert!(out.contains(&format!("shard {i}/4 done")), "{out}");
            computed += tally(&out).0;
        }
    }
    let cache = sharded_runs.join(".cache");
    assert!(computed > 0);
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "temporary files left: {names:?}"
    );

    let out = ok(&command(&["--config", sharded.to_str().unwrap()])
        .output()
        .unwrap());
    let (zero, cached) = tally(&out);
    assert_eq!(
        zero, 0,
        "the run computed features after all shards:\n{out}"
    );
    assert!(cached >= 136, "train, val and the maps: {cached}");
    if photos {
        let summary = stdout_of_summary(&out);
        assert!(summary.contains("skipped files: 1"), "{summary}");
    }
    let (a, b) = (&run_dirs(&single_runs)[0], &run_dirs(&sharded_runs)[0]);
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));

    // A damaged chunk: a warning, recomputed, the same metrics. Cut short (a pooled chunk),
    // or overwritten in place at its full length (a cut's chunk: only the checksum tells).
    let prefix = if train_from.is_none() {
        "pooled-"
    } else {
        "cut-"
    };
    if !photos {
        let victim = entries(&cache)
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap();
        let mut bytes = std::fs::read(&victim).unwrap();
        let len = bytes.len();
        match train_from {
            None => bytes.truncate(len - 10),
            Some(_) => bytes[len - 100..len - 90].copy_from_slice(&[0x3c; 10]),
        }
        std::fs::write(&victim, &bytes).unwrap();
        let output = command(&["--config", sharded.to_str().unwrap()])
            .output()
            .unwrap();
        let (stdout, stderr) = (ok(&output), String::from_utf8_lossy(&output.stderr));
        assert!(
            stderr.contains("ignoring the feature cache") && stderr.contains("recomputing"),
            "{stderr}"
        );
        let (recomputed, _) = tally(&stdout);
        assert!((1..=8).contains(&recomputed), "one chunk: {recomputed}");
        let again = &run_dirs(&sharded_runs)[1];
        assert_eq!(metrics_without_timing(a), metrics_without_timing(again));
    }
}

#[test]
fn shards_of_a_frozen_backbone_leave_train_nothing_to_compute() {
    sharded_run_equals_a_single_run(None, false);
}

#[test]
fn shards_of_a_fine_tuning_cut_leave_train_nothing_to_compute() {
    sharded_run_equals_a_single_run(Some("block5_conv1"), false);
}

/// With an unreadable validation photo among those a callback would explain, and an eval set
/// with boxes that localization reaches: the shards choose the callbacks' images as the run does.
#[test]
fn shards_choose_the_callbacks_images_as_the_run_does() {
    sharded_run_equals_a_single_run(None, true);
}

/// Kill a shard once it has written a few chunks: every entry it left is whole (a later pass
/// warns about none and computes only the rest), and nothing it half-wrote has an entry's name.
#[test]
fn a_shard_killed_mid_pass_leaves_only_whole_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = small_config(
        tmp.path(),
        SmallRun {
            name: "killed",
            runs: &runs,
            data_seed: 4,
            train: 1_200,
            seed: 1,
            epochs: 1,
            callbacks: "",
        },
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "head = \"gap-linear\"",
        "head = \"gap-linear\"\ntrain_from = \"block4_conv1\"",
    );
    std::fs::write(&path, text).unwrap();
    let cache = runs.join(".cache");
    let mut child = shard(&path, "0/1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while entries(&cache).len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no chunk written");
        assert!(child.try_wait().unwrap().is_none(), "the pass ended first");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = entries(&cache).len();
    let output = command(&["features", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (ok(&output), String::from_utf8_lossy(&output.stderr));
    assert!(!stderr.contains("ignoring the feature cache"), "{stderr}");
    let (computed, cached) = tally(&stdout);
    assert!(
        cached >= left * 8 && computed > 0,
        "{left} entries: {stdout}"
    );
    assert_eq!(computed + cached, 1_216, "train and val, once each");
}

fn failure(args: &[&str]) -> String {
    let output: Output = command(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_shards_and_unusable_caches_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let good = config(tmp.path(), "good", &runs, None);
    let good = good.to_str().unwrap();
    for (shard, says) in [
        ("4/4", "K must be below 4"),
        ("7/4", "K must be below 4"),
        ("0/0", "the shard count must be at least 1"),
        ("1", "expected K/N"),
        ("a/b", "expected K/N"),
        ("auto", "not inside a Slurm job array"),
    ] {
        let error = failure(&["features", "--config", good, "--shard", shard]);
        assert!(error.contains(says), "--shard {shard}: {error}");
    }
    let output = command(&["features", "--config", good, "--shard", "auto"])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("SLURM_ARRAY_TASK_COUNT is not set"),
        "{error}"
    );
    assert!(!runs.exists(), "nothing was written");

    // A runs dir whose cache cannot be a directory (tests run as root, who can write anywhere
    // permissions allow: a path under a plain file is unwritable for anyone).
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let unwritable = config(tmp.path(), "unwritable", &file.join("runs"), None);
    for args in [
        vec!["features", "--config", unwritable.to_str().unwrap()],
        vec!["--config", unwritable.to_str().unwrap()],
    ] {
        let error = failure(&args);
        assert!(
            error.contains("plain-file/runs/.cache") && error.contains("not writable"),
            "{args:?}: {error}"
        );
    }
    let uncached = config(tmp.path(), "uncached", &runs, None);
    let text = std::fs::read_to_string(&uncached)
        .unwrap()
        .replace("image_size = 64", "image_size = 64\ncache = false");
    std::fs::write(&uncached, text).unwrap();
    let error = failure(&["features", "--config", uncached.to_str().unwrap()]);
    assert!(error.contains("cache = false"), "{error}");
}
