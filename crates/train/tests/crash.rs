//! Crash safety: SIGKILL training at random moments (while generating data, during the backbone
//! pass, mid-epoch, while writing checkpoints and events), resume each time, and check that the
//! run finishes with the metrics of an uninterrupted run, that every event file reads back
//! completely, that no scalar or image step is duplicated, that the final checkpoint loads, and
//! (TensorBoard's own reader) that every run's tags have exactly the steps 1..=epochs (every
//! second epoch for the Grad-CAM callback, `every = 2`, whose skipped epochs stay empty in
//! metrics.csv).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metrics_without_timing as metrics, ok, train};

mod common;

const EPOCHS: usize = 6;

/// The crash config; `train_from`: fine-tune the backbone from that layer.
fn config(dir: &Path, runs: &Path, train_from: Option<&str>) -> PathBuf {
    let path = common::small_config(
        dir,
        common::SmallRun {
            name: "crash",
            runs,
            data_seed: 9,
            train: 64,
            seed: 11,
            epochs: EPOCHS,
            callbacks: "
[[callbacks]]
kind = \"cam\"
num_images = 4
faithfulness_images = 1

[[callbacks]]
kind = \"gradcam\"
num_images = 4
every = 2
",
        },
    );
    if let Some(layer) = train_from {
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "head = \"gap-linear\"\n",
            &format!("head = \"gap-linear\"\ntrain_from = \"{layer}\"\n"),
        );
        std::fs::write(&path, text).unwrap();
    }
    path
}

/// Start `train args`, SIGKILL it after `delay` unless it ends first; true when it was killed.
fn run_or_kill(args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(common::repo())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if !status.success() {
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
            }
            assert!(status.success(), "train {args:?} failed: {stderr}");
            return false;
        }
        if start.elapsed() >= delay {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run() {
    campaign(None, 20);
}

/// The same for a run that fine-tunes block5 on the cached cut: the trained layers, the
/// optimizer and the drift history come back from the checkpoint.
#[test]
fn sigkill_then_resume_a_fine_tuning_run_gives_the_uninterrupted_run() {
    campaign(Some("block5_conv1"), 8);
}

fn campaign(train_from: Option<&str>, kill_target: usize) {
    let tmp = tempfile::tempdir().unwrap();
    // The uninterrupted reference, with its own cache.
    let reference_runs = tmp.path().join("reference");
    let started = Instant::now();
    ok(&train(&[
        "--config",
        config(tmp.path(), &reference_runs, train_from)
            .to_str()
            .unwrap(),
    ]));
    let duration = started.elapsed();
    let reference = metrics(&common::run_dirs(&reference_runs)[0]);
    // The header, step 0 (the maps before training) and every epoch.
    assert_eq!(reference.len(), EPOCHS + 2);
    // Epochs the `every = 2` logger skips have empty cells, not its previous scores.
    let header: Vec<&str> = reference[0].split(',').collect();
    for column in ["gradcam_pointing_game", "cam_vs_gradcam_spearman"] {
        let i = header.iter().position(|c| *c == column).unwrap();
        for line in reference.iter().skip(1) {
            let epoch: usize = line.split(',').next().unwrap().parse().unwrap();
            let cell = line.split(',').nth(i).unwrap();
            assert_eq!(
                cell.is_empty(),
                epoch % 2 == 1,
                "{column} epoch {epoch}: `{cell}`"
            );
        }
    }
    // A drift compares with the previous drawing: none at step 0, none on skipped epochs.
    let i = header.iter().position(|c| *c == "gradcam_drift").unwrap();
    for line in reference.iter().skip(1) {
        let epoch: usize = line.split(',').next().unwrap().parse().unwrap();
        let cell = line.split(',').nth(i).unwrap();
        assert_eq!(
            cell.is_empty(),
            epoch % 2 == 1 || epoch == 0,
            "drift epoch {epoch}"
        );
    }

    let runs = tmp.path().join("runs");
    let config = config(tmp.path(), &runs, train_from);
    let mut state = 0x5eed_u64;
    let mut random = move || {
        // SplitMix64: kill moments reproducible from the seed above.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut kills, mut campaigns) = (0, 0);
    let mut phases: std::collections::BTreeMap<String, usize> = Default::default();
    while kills < kill_target {
        campaigns += 1;
        // A cold cache each time, so kills also land in data generation and the backbone pass.
        let _ = std::fs::remove_dir_all(runs.join(".cache"));
        let before = common::run_dirs(&runs);
        let mut run: Option<PathBuf> = None;
        for attempt in 0.. {
            assert!(attempt < 200, "no progress after 200 attempts");
            let delay = duration.mul_f64(random() * 1.2);
            let killed = match &run {
                None => run_or_kill(&["--config", config.to_str().unwrap()], delay),
                Some(dir) => run_or_kill(&["--resume", dir.to_str().unwrap()], delay),
            };
            kills += killed as usize;
            if run.is_none() {
                // The run exists once its config.toml does; killed earlier, start afresh.
                run = common::run_dirs(&runs)
                    .into_iter()
                    .find(|d| !before.contains(d));
            }
            if killed {
                *phases.entry(phase(run.as_deref())).or_default() += 1;
            }
            if !killed {
                break;
            }
        }
        let run = run.expect("the finished campaign has a run dir");
        assert_eq!(
            metrics(&run),
            reference,
            "campaign {campaigns}: {}",
            run.display()
        );
        check_events(&run);
        // The final checkpoint loads: resuming a finished run says so.
        let out = ok(&train(&["--resume", run.to_str().unwrap()]));
        assert!(
            out.contains(&format!("run already complete ({EPOCHS} epochs)")),
            "{out}"
        );
    }
    println!(
        "{kills} kills over {campaigns} campaigns, reference run {duration:?}; killed: {phases:?}"
    );

    // TensorBoard's reader: every run that has event files has exactly the steps 1..=EPOCHS.
    let python = std::env::var_os("TENSORBOARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "PYTHON VENV MISSING: run scripts/setup-venv.sh"
    );
    let status = Command::new(python)
        .arg(common::repo().join("scripts/check_tensorboard.py"))
        .args([
            "--runs",
            runs.to_str().unwrap(),
            "--epochs",
            &EPOCHS.to_string(),
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "TensorBoard's reader rejected a resumed run"
    );
}

/// Where a kill landed, from what the run left on disk.
fn phase(run: Option<&Path>) -> String {
    let Some(run) = run else {
        return "0: before the run dir (data generation, setup)".into();
    };
    let epochs = std::fs::read_to_string(run.join("metrics.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0);
    if epochs == 0 {
        "1: backbone pass or epoch 1".into()
    } else {
        format!("2: after epoch {epochs}")
    }
}

/// Every event file reads to its end; no (tag, step) of a scalar or an image appears twice.
fn check_events(run: &Path) {
    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    for path in tensorboard::read::event_files(run).unwrap() {
        let file = tensorboard::read::read_event_file(&path).unwrap();
        assert_eq!(
            file.stop,
            tensorboard::record::ReadStop::End,
            "{} does not read to its end",
            path.display()
        );
        for event in file.events {
            if let Some(tensorboard::proto::EventWhat::Summary(summary)) = event.what {
                for value in summary.value {
                    *seen.entry((value.tag, event.step)).or_default() += 1;
                }
            }
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{}: duplicated {duplicated:?}",
        run.display()
    );
}
