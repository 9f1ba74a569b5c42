//! Shared by the integration tests: where ../shared is, and running the `train` binary.
// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run the `train` binary from the repository root.
pub fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run train")
}

/// Its stdout, after asserting it succeeded (printing both streams if not).
pub fn ok(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "train failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `$SHARED_DIR`, or `../shared` next to the repository. Fails loudly when missing.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("fixtures").is_dir() && dir.join("data/catdog").is_dir(),
        "SHARED DATA MISSING: {} lacks fixtures/ or data/catdog/. Set SHARED_DIR.",
        dir.display()
    );
    dir
}

/// A small run: synthetic 64x64 cats and dogs (16 val images) and the committed small backbone,
/// batch 16, learning rate 0.01.
pub struct SmallRun<'a> {
    /// Run name (and the config's file name).
    pub name: &'a str,
    /// Where runs go.
    pub runs: &'a Path,
    /// Seed of the synthetic set.
    pub data_seed: u64,
    /// Training images.
    pub train: usize,
    /// The run's seed.
    pub seed: u64,
    /// Epochs.
    pub epochs: usize,
    /// `[[callbacks]]` blocks, as TOML.
    pub callbacks: &'a str,
}

/// Write `run`'s config into `dir` and return its path.
pub fn small_config(dir: &Path, run: SmallRun) -> PathBuf {
    let path = dir.join(format!("{}.toml", run.name));
    let text = format!(
        r#"[run]
name = "{name}"
runs_dir = "{runs}"
seed = {seed}

[data]
synthetic = {{ seed = {data_seed}, train = {train}, val = 16, size = 64 }}
image_size = 64

[model]
backbone = "vgg16"
weights = "data/weights/vgg16-w8-synthetic.safetensors"
head = "gap-linear"

[train]
epochs = {epochs}
batch_size = 16
learning_rate = 1e-2
{callbacks}"#,
        name = run.name,
        runs = run.runs.display(),
        seed = run.seed,
        data_seed = run.data_seed,
        train = run.train,
        epochs = run.epochs,
        callbacks = run.callbacks,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Run directories (with a config.toml) under `runs`, sorted; none if `runs` does not exist.
pub fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.retain(|p| p.join("config.toml").is_file());
    dirs.sort();
    dirs
}

/// The values of field `key` (e.g. "VmHWM", "Uid") in a /proc status file such as
/// "/proc/self/status"; none if the file or the field cannot be read (a process that ended).
pub fn proc_status_field(status_file: &str, key: &str) -> Option<Vec<String>> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    Some(line.split_whitespace().skip(1).map(String::from).collect())
}

/// Peak resident memory (VmHWM) in KB of the process whose status file is `status_file`.
pub fn peak_rss_kb(status_file: &str) -> Option<f64> {
    proc_status_field(status_file, "VmHWM")?
        .first()?
        .parse()
        .ok()
}

/// Generate a synthetic cats-and-dogs folder (`train synth`, 64x64) at `dir/data`.
pub fn synth_data(dir: &Path, train_images: usize, val_images: usize) -> PathBuf {
    let data = dir.join("data");
    ok(&train(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--train",
        &train_images.to_string(),
        "--val",
        &val_images.to_string(),
        "--size",
        "64",
    ]));
    data
}

/// A run's metrics.csv lines without the timing columns (the last ones, `SECONDS_TAGS`).
pub fn metrics_without_timing(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            fields[..fields.len() - train::run::metrics::SECONDS_TAGS.len()].join(",")
        })
        .collect()
}

/// The test venv's Python (`TENSORBOARD_PYTHON`, or `.venv/bin/python`; scripts/setup-venv.sh
/// installs tensorboard, wandb and mlflow into it). Fails loudly when missing.
pub fn venv_python() -> PathBuf {
    let python = std::env::var_os("TENSORBOARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "PYTHON VENV MISSING: run scripts/setup-venv.sh"
    );
    python
}

/// A small run named `tracked` (64 training images) with CAM and Grad-CAM, then `tail` (more
/// TOML, e.g. `[logging]`); `slow`: Score-CAM at 128 px instead (a network pass per channel per
/// image, ~0.2 s a drawing), so that the run is still training when something follows it.
pub fn tracked_config(dir: &Path, runs: &Path, epochs: usize, slow: bool, tail: &str) -> PathBuf {
    let methods: &[&str] = if slow {
        &["scorecam"]
    } else {
        &["cam", "gradcam"]
    };
    let mut callbacks: String = methods
        .iter()
        .map(|m| {
            format!("\n[[callbacks]]\nkind = \"{m}\"\nlayer = \"block5_conv3\"\nnum_images = 4\n")
        })
        .collect();
    callbacks.push_str(tail);
    let path = small_config(
        dir,
        SmallRun {
            name: "tracked",
            runs,
            data_seed: 2,
            train: 64,
            seed: 3,
            epochs,
            callbacks: &callbacks,
        },
    );
    if slow {
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("size = 64 }", "size = 128 }")
            .replace("image_size = 64", "image_size = 128");
        std::fs::write(&path, text).unwrap();
    }
    path
}
