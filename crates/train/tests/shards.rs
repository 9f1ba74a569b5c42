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

fn sharded_run_equals_a_single_run(train_from: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let (single_runs, sharded_runs) = (tmp.path().join("single"), tmp.path().join("sharded"));
    let single = config(tmp.path(), "single", &single_runs, train_from);
    let sharded = config(tmp.path(), "sharded", &sharded_runs, train_from);
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
            assert!(out.contains(&format!("(shard {i}/4")), "{out}");
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
    let (a, b) = (&run_dirs(&single_runs)[0], &run_dirs(&sharded_runs)[0]);
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));

    if train_from.is_none() {
        // A damaged chunk: a warning, recomputed, the same metrics.
        let victim = entries(&cache)
            .into_iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("pooled-")
            })
            .unwrap();
        let bytes = std::fs::read(&victim).unwrap();
        std::fs::write(&victim, &bytes[..bytes.len() - 10]).unwrap();
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
    sharded_run_equals_a_single_run(None);
}

#[test]
fn shards_of_a_fine_tuning_cut_leave_train_nothing_to_compute() {
    sharded_run_equals_a_single_run(Some("block5_conv1"));
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
