//! The disk fails under a run: files that cannot grow (a full disk, simulated with
//! RLIMIT_FSIZE, so writes fail with EFBIG as with ENOSPC), the run directory deleted mid-run,
//! a runs_dir that cannot be a directory, and read-only directories (before the run and
//! mid-run; as root, the run is started as user `nobody` through `setpriv`, since root ignores
//! permissions). Each: a clear error naming the file, exit ≠ 0, no panic, and a checkpoint that
//! still resumes once the disk is back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metrics_without_timing as metrics, ok, train};

mod common;

fn config(dir: &Path, runs: &Path) -> PathBuf {
    common::small_config(
        dir,
        common::SmallRun {
            name: "disk",
            runs,
            data_seed: 4,
            train: 48,
            seed: 2,
            epochs: 4,
            callbacks: "\n[[callbacks]]\nkind = \"cam\"\nnum_images = 8\n",
        },
    )
}

fn run_dir(runs: &Path) -> PathBuf {
    common::run_dirs(runs)
        .into_iter()
        .next()
        .expect("a run dir")
}

/// The run dir under `runs` once its first checkpoint is on disk (the run then stalls).
fn wait_for_checkpoint(runs: &Path) -> PathBuf {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        if let Some(run) = common::run_dirs(runs)
            .into_iter()
            .find(|p| p.join("checkpoint.safetensors").is_file())
        {
            return run;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_run_resumes_afterwards() {
    let tmp = tempfile::tempdir().unwrap();
    // Reference, and the size its event file reaches.
    let reference_runs = tmp.path().join("reference");
    ok(&train(&[
        "--config",
        config(tmp.path(), &reference_runs).to_str().unwrap(),
    ]));
    let reference_run = run_dir(&reference_runs);
    let events = tensorboard::read::event_files(&reference_run).unwrap();
    let event_bytes = std::fs::metadata(&events[0]).unwrap().len();
    // Data and cache first, so the limit only bites the run's own files.
    let runs = tmp.path().join("runs");
    let cfg = config(tmp.path(), &runs);
    std::fs::create_dir_all(&runs).unwrap();
    let cache_from = reference_runs.join(".cache");
    let status = Command::new("cp")
        .args([
            "-r",
            cache_from.to_str().unwrap(),
            runs.join(".cache").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // No file may grow past 60 % of the finished event file: the log fills mid-run.
    let limit_kb = (event_bytes * 6 / 10 / 1024).max(1);
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit_kb}; exec \"$0\" --config \"$1\"",
        ))
        .arg(env!("CARGO_BIN_EXE_train"))
        .arg(&cfg)
        .current_dir(common::repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("limit {limit_kb} KB of a {event_bytes}-byte log: {stderr}");
    assert!(!output.status.success(), "a full disk went unnoticed");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    let run = run_dir(&runs);
    assert!(
        stderr.contains(&run.display().to_string()),
        "the error names no file: {stderr}"
    );
    // The disk is back: the run resumes from its intact checkpoint to the reference metrics.
    ok(&train(&["--resume", run.to_str().unwrap()]));
    assert_eq!(metrics(&run), metrics(&reference_run));
}

#[test]
fn a_run_dir_deleted_mid_run_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let cfg = config(tmp.path(), &runs);
    let child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", cfg.to_str().unwrap()])
        .env("TRAIN_TEST_STALL_AFTER_EPOCH", "1:2")
        .current_dir(common::repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the checkpoint of epoch 1, then pull the directory away during the stall.
    let run = wait_for_checkpoint(&runs);
    std::fs::remove_dir_all(&run).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success(), "a deleted run dir went unnoticed");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&run.display().to_string()), "{stderr}");
}

#[test]
fn a_runs_dir_that_is_a_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs-is-a-file");
    std::fs::write(&runs, b"not a directory").unwrap();
    let output = train(&["--config", config(tmp.path(), &runs).to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&runs.display().to_string()), "{stderr}");
}

/// The effective user id of this process (from /proc, to need no libc binding).
fn effective_uid() -> u32 {
    // Uid: real, effective, saved, filesystem.
    common::proc_status_field("/proc/self/status", "Uid").unwrap()[1]
        .parse()
        .unwrap()
}

const NOBODY: u32 = 65534;

/// `train ARGS` as a user that permissions apply to: `nobody` through `setpriv` when the tests
/// run as root, else this user. It runs a copy of the binary in `dir` (see
/// [`unprivileged_dirs`]), from `dir`: `nobody` may not be able to reach the checkout.
fn train_unprivileged(dir: &Path, args: &[&str]) -> Command {
    let binary = dir.join("bin/train");
    let mut command = if effective_uid() == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&binary);
        c
    } else {
        Command::new(&binary)
    };
    command.args(args).current_dir(dir);
    command
}

/// A temp dir that user `nobody` can enter, holding a copy of the `train` binary and of the
/// small backbone's weights (at the relative path the configs name), and a runs dir that
/// `nobody` owns (when root).
fn unprivileged_dirs() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let weights = "data/weights/vgg16-w8-synthetic.safetensors";
    for (from, to) in [
        (
            PathBuf::from(env!("CARGO_BIN_EXE_train")),
            tmp.path().join("bin/train"),
        ),
        (common::repo().join(weights), tmp.path().join(weights)),
    ] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    let runs = tmp.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    if effective_uid() == 0 {
        std::os::unix::fs::chown(&runs, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    (tmp, runs)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_runs_dir_is_a_clear_error() {
    let (tmp, runs) = unprivileged_dirs();
    set_mode(&runs, 0o555);
    let cfg = config(tmp.path(), &runs);
    let output = train_unprivileged(tmp.path(), &["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(
        !output.status.success(),
        "a read-only runs dir went unnoticed"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains(&runs.display().to_string()), "{stderr}");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
}

#[test]
fn a_run_dir_made_read_only_mid_run_is_a_clear_error_and_resumes_afterwards() {
    let (tmp, runs) = unprivileged_dirs();
    let reference_runs = tmp.path().join("reference");
    ok(&train(&[
        "--config",
        config(tmp.path(), &reference_runs).to_str().unwrap(),
    ]));
    let cfg = config(tmp.path(), &runs);
    let child = train_unprivileged(tmp.path(), &["--config", cfg.to_str().unwrap()])
        .env("TRAIN_TEST_STALL_AFTER_EPOCH", "1:2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // After the checkpoint of epoch 1, during the stall: the run dir becomes read-only.
    let run = wait_for_checkpoint(&runs);
    set_mode(&run, 0o555);
    let checkpoint = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(
        !output.status.success(),
        "a read-only run dir went unnoticed"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains(&run.display().to_string()), "{stderr}");
    assert_eq!(
        std::fs::read(run.join("checkpoint.safetensors")).unwrap(),
        checkpoint,
        "the checkpoint changed under a read-only dir"
    );
    // Writable again: the run resumes from epoch 1's checkpoint to the reference metrics.
    set_mode(&run, 0o755);
    let output = train_unprivileged(tmp.path(), &["--resume", run.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&output);
    assert_eq!(metrics(&run), metrics(&run_dir(&reference_runs)));
}
