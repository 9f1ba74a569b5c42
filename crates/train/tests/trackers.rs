//! Sending a run to W&B with scripts/wandb_sync.py and the real `wandb` SDK, offline
//! (`WANDB_MODE=offline`: a local run that `wandb sync` would upload): every scalar at every
//! step, an image file per image tag per step, the config and the text (checked by reading the
//! offline run's log back, scripts/check_wandb.py); `--follow` sends steps while the run trains;
//! a missing or malformed run dir is a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ok, repo, run_dirs, tracked_config, venv_python};

/// `scripts/<script> args` in the venv, offline, every W&B file under `home`.
fn script(script: &str, args: &[&Path], home: &Path) -> Command {
    let mut command = Command::new(venv_python());
    command
        .arg(repo().join("scripts").join(script))
        .args(args)
        .current_dir(home)
        .env("WANDB_MODE", "offline")
        .env("WANDB_SILENT", "true")
        .env("WANDB_DIR", home)
        .env("WANDB_CACHE_DIR", home.join("cache"))
        .env("WANDB_DATA_DIR", home.join("data"))
        .env("WANDB_CONFIG_DIR", home.join("config"))
        .env("HOME", home);
    command
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The one offline run under `home`.
fn offline_run(home: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(home.join("wandb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("offline-run-"))
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// The tracked run of the tests, without a tracker in its config.
fn config(dir: &Path, runs: &Path, epochs: usize, slow: bool) -> PathBuf {
    tracked_config(dir, runs, epochs, slow, "")
}

#[test]
fn a_finished_run_goes_to_wandb_offline_with_every_scalar_and_image_step() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = config(tmp.path(), &runs, 3, false);
    ok(&common::train(&["--config", path.to_str().unwrap()]));
    let run = &run_dirs(&runs)[0];
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = succeeded(&script("wandb_sync.py", &[run], &home).output().unwrap());
    assert!(out.contains("(4 steps)"), "steps 0..3: {out}");
    let wandb_run = offline_run(&home);
    let check = succeeded(
        &script("check_wandb.py", &[run, &wandb_run], &home)
            .output()
            .unwrap(),
    );
    assert!(check.contains("; 0 missing"), "{check}");
    // The overlays' captions name the image, its classes and the method.
    let log = std::fs::read_dir(&wandb_run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wandb"))
        .unwrap();
    let bytes = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
    assert!(
        bytes.contains(": true cat, predicted") && bytes.contains("(gradcam)"),
        "captions"
    );
}

/// `--follow` sends the steps of a run while it trains, and the rest when it finishes.
#[test]
fn follow_sends_steps_while_the_run_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = config(tmp.path(), &runs, 30, true);
    // The run stalls 8 s after epoch 2 (the test hook): however fast the machine, steps are
    // sent while it trains.
    let mut training = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", path.to_str().unwrap()])
        .env(train::run::hooks::STALL_ENV, "2:8")
        .current_dir(repo())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        if let Some(run) = run_dirs(&runs).first() {
            break run.clone();
        }
        assert!(Instant::now() < deadline, "no run dir");
        assert!(
            training.try_wait().unwrap().is_none(),
            "the run ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let follow = script(
        "wandb_sync.py",
        &[&run, Path::new("--follow"), Path::new("--poll=0.2")],
        &home,
    )
    .output()
    .unwrap();
    assert!(training.wait().unwrap().success());
    let out = succeeded(&follow);
    assert!(out.contains("(31 steps)"), "{out}");
    assert!(
        out.contains("(run in progress)"),
        "no step was sent while the run trained:\n{out}"
    );
    let check = succeeded(
        &script("check_wandb.py", &[&run, &offline_run(&home)], &home)
            .output()
            .unwrap(),
    );
    assert!(check.contains("; 0 missing"), "{check}");
}

#[test]
fn a_missing_or_malformed_run_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let not_a_run = tmp.path().join("not-a-run");
    std::fs::create_dir_all(&not_a_run).unwrap();
    let bad_toml = tmp.path().join("bad-toml");
    std::fs::create_dir_all(&bad_toml).unwrap();
    std::fs::write(bad_toml.join("config.toml"), "[run\nname = ").unwrap();
    let no_events = tmp.path().join("no-events");
    std::fs::create_dir_all(&no_events).unwrap();
    std::fs::write(no_events.join("config.toml"), "[run]\nname = \"x\"\n").unwrap();
    for (dir, says) in [
        (tmp.path().join("missing"), "is not a directory"),
        (not_a_run, "has no config.toml"),
        (bad_toml, "is not valid TOML"),
        (no_events, "has no TensorBoard event file"),
    ] {
        let output = script("wandb_sync.py", &[&dir], &home).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", dir.display());
        assert!(
            stderr.contains(says) && stderr.contains(&*dir.to_string_lossy()),
            "{stderr}"
        );
    }
    assert!(
        !home.join("wandb").exists(),
        "nothing was sent for a bad run dir"
    );
}
