//! Issue 7 end to end on a tiny synthetic set with the committed quickstart backbone: the
//! faithfulness and agreement scalars of a CAM + Grad-CAM run, `train sanity`, and
//! `train compare` rendered by headless Chromium (no broken images, a screenshot), plus the
//! bad inputs of each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ok, train};

mod common;

/// `$CHROMIUM`, or Debian's `chromium` (installed by .ci/run). Fails loudly when missing.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "CHROMIUM MISSING: {} (apt-get install chromium, as .ci/run does, or set CHROMIUM)",
        path.display()
    );
    path
}

fn fails_with(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected failure, got success");
    assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
}

/// A quickstart-like config: synthetic 64-px images, the committed small backbone.
fn config(dir: &Path, name: &str, callbacks: &str) -> PathBuf {
    common::small_config(
        dir,
        common::SmallRun {
            name,
            runs: &dir.join("runs"),
            data_seed: 5,
            train: 48,
            seed: 3,
            epochs: 3,
            callbacks,
        },
    )
}

fn only_run(runs: &Path, name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

fn column(run: &Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    lines
        // An empty cell: not computed that epoch (NaN here).
        .map(|l| match l.split(',').nth(i).unwrap() {
            "" => f64::NAN,
            cell => cell.parse().unwrap(),
        })
        .collect()
}

#[test]
fn scores_sanity_and_compare_report_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let both = config(
        tmp.path(),
        "both",
        r#"
[[callbacks]]
kind = "cam"
num_images = 4
faithfulness_images = 2
road_images = 2

[[callbacks]]
kind = "gradcam"
num_images = 4
faithfulness_images = 2
faithfulness_baseline = "blur"
faithfulness_steps = 10
"#,
    );
    ok(&train(&["--config", both.to_str().unwrap()]));
    let run_a = only_run(&tmp.path().join("runs"), "both-");

    // Faithfulness scores are probabilities' areas in [0, 1]; CAM and Grad-CAM agree exactly
    // at the pooled layer of a gap-linear head.
    for name in [
        "cam_average_drop",
        "cam_increase_in_confidence",
        "cam_deletion_auc",
        "cam_insertion_auc",
        "gradcam_deletion_auc",
        "gradcam_insertion_auc",
        "cam_vs_gradcam_top20_iou",
    ] {
        let values = column(&run_a, name);
        assert_eq!(
            values.len(),
            4,
            "{name}: step 0 (before training) and 3 epochs"
        );
        assert!(
            values.iter().all(|v| (0.0..=1.0).contains(v)),
            "{name}: {values:?}"
        );
    }
    // ROAD (opt-in): probability changes in [-1, 1] at every drawing; combined is
    // (LeRF - MoRF) / 2 of the means.
    let (morf, lerf) = (
        column(&run_a, "cam_road_morf"),
        column(&run_a, "cam_road_lerf"),
    );
    let combined = column(&run_a, "cam_road_combined");
    assert_eq!(combined.len(), 4, "step 0 and 3 epochs");
    for i in 0..4 {
        assert!(
            [morf[i], lerf[i]].iter().all(|v| (-1.0..=1.0).contains(v)),
            "{morf:?} {lerf:?}"
        );
        assert!(
            (combined[i] - (lerf[i] - morf[i]) / 2.0).abs() < 1e-5,
            "{combined:?}"
        );
    }
    assert!(!std::fs::read_to_string(run_a.join("metrics.csv"))
        .unwrap()
        .contains("gradcam_road"));
    for rho in column(&run_a, "cam_vs_gradcam_spearman") {
        assert!(rho > 0.99, "CAM vs Grad-CAM Spearman {rho}");
    }
    // Both scalars are in the event file, at every epoch.
    let mut tags = std::collections::BTreeMap::<String, Vec<i64>>::new();
    for path in tensorboard::read::event_files(&run_a).unwrap() {
        for event in tensorboard::read::read_event_file(&path).unwrap().events {
            if let Some(tensorboard::proto::EventWhat::Summary(s)) = event.what {
                for v in s.value {
                    if let Some(tensorboard::proto::SummaryValueKind::SimpleValue(_)) = v.value {
                        tags.entry(v.tag).or_default().push(event.step);
                    }
                }
            }
        }
    }
    for tag in [
        "cam/average_drop",
        "gradcam/insertion_auc",
        "agreement/cam_vs_gradcam/spearman",
        "agreement/cam_vs_gradcam/top20_iou",
    ] {
        // Step 0: the scores of the maps before training.
        assert_eq!(tags.get(tag), Some(&vec![0, 1, 2, 3]), "{tag}: {tags:?}");
    }
    // Drifts compare with an earlier drawing: none at step 0.
    assert_eq!(tags.get("cam/drift"), Some(&vec![1, 2, 3]), "{tags:?}");

    // A second run (Grad-CAM only) to compare with.
    let single = config(
        tmp.path(),
        "gradcam",
        "\n[[callbacks]]\nkind = \"gradcam\"\nnum_images = 4\n",
    );
    ok(&train(&["--config", single.to_str().unwrap()]));
    let run_b = only_run(&tmp.path().join("runs"), "gradcam-");

    // Sanity: a table for every stage, files, TensorBoard scalars at one step per stage.
    let out = ok(&train(&[
        "sanity",
        "--run",
        run_a.to_str().unwrap(),
        "--repeats",
        "2",
    ]));
    assert!(out.contains("mean ± std over draws"), "{out}");
    assert!(out.contains("cam at `block5_conv3`"), "{out}");
    let csv = std::fs::read_to_string(run_a.join("sanity/sanity.csv")).unwrap();
    let stages = ["head", "block5", "block4", "block3", "block2", "block1"];
    assert_eq!(csv.lines().count(), 1 + stages.len() * 2, "{csv}");
    for stage in stages {
        assert!(csv.contains(&format!(",{stage},cam,")), "{stage}: {csv}");
    }
    for file in ["sanity.png", "cam_maps.png", "gradcam_maps.png"] {
        let image = image::open(run_a.join("sanity").join(file)).unwrap();
        assert!(image.width() > 100, "{file}");
    }
    let grid = image::open(run_a.join("sanity/cam_maps.png")).unwrap();
    // 4 images × 7 columns (trained + 6 stages) of 64 px with 2-px gaps.
    assert_eq!((grid.width(), grid.height()), (7 * 66 - 2, 4 * 66 - 2));
    let sanity_events = tensorboard::read::event_files(&run_a.join("sanity")).unwrap();
    assert_eq!(sanity_events.len(), 1);

    // Compare: the page references only files that exist, and Chromium loads every image.
    let report = tmp.path().join("report");
    ok(&train(&[
        "compare",
        run_a.to_str().unwrap(),
        run_b.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--epochs",
        "1,3",
    ]));
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    // Step 0 has one name in every part of the report (the tables and the strips).
    assert!(
        html.contains("untrained"),
        "step 0 is not labelled `untrained`"
    );
    assert!(
        !html.contains("before training"),
        "step 0 has a second name"
    );
    let sources: Vec<&str> = html
        .split("src=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    // 4 images × (original + run A 2 methods × 2 epochs + run B 1 method × 2 epochs), the
    // charts, and run A's sanity plot.
    assert!(sources.len() > 4 * 7 + 10, "{} images", sources.len());
    for src in &sources {
        assert!(report.join(src).is_file(), "missing {src}");
    }
    assert!(
        html.contains("pointing") || html.contains("deletion_auc"),
        "no metrics"
    );
    assert!(html.contains("sanity_run0.png"));
    // Evolution views: per image, run and method an animated GIF of every logged step and a
    // strip of them.
    let gifs = sources
        .iter()
        .filter(|s| s.ends_with("_evolution.gif"))
        .count();
    let strips = sources.iter().filter(|s| s.ends_with("_strip.png")).count();
    assert_eq!((gifs, strips), (4 * 3, 4 * 3), "{sources:?}");
    let steps: std::collections::BTreeSet<i64> = tensorboard::read::run_images(&run_b, "gradcam/")
        .unwrap()
        .iter()
        .map(|i| i.step)
        .collect();
    let gif = std::fs::File::open(report.join("images/img0_run1_gradcam_evolution.gif")).unwrap();
    let frames = image::AnimationDecoder::into_frames(
        image::codecs::gif::GifDecoder::new(std::io::BufReader::new(gif)).unwrap(),
    )
    .collect_frames()
    .unwrap();
    assert_eq!(frames.len(), steps.len(), "steps {steps:?}");

    let profile = tempfile::tempdir().unwrap();
    let headless = |extra: &[&str]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", report.join("index.html").display()))
            .output()
            .expect("start chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // At a laptop's 1,400 px every table column, figure and image lies inside the window (the
    // page counts those reaching past its right edge).
    let dom = headless(&["--dump-dom", "--window-size=1400,1000"]);
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .expect("a body element");
    assert!(body.contains("data-images-broken=\"0\""), "{body}");
    assert!(body.contains("data-past-right-edge=\"0\""), "{body}");
    assert!(
        body.contains(&format!("data-images-loaded=\"{}\"", sources.len())),
        "{body} (page has {} images)",
        sources.len()
    );
    let shot = tmp.path().join("shot.png");
    headless(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1400,1600",
    ]);
    let shot = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(shot.dimensions(), (1400, 1600));
    let colours: std::collections::HashSet<[u8; 3]> = shot.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 1000,
        "a blank page? {} colours",
        colours.len()
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("nowhere");
    let out = tmp.path().join("out");
    fails_with(
        &train(&[
            "compare",
            nowhere.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        "no metrics.csv",
    );
    // The error names the flag the user gave (it said `--resume` before).
    fails_with(
        &train(&["sanity", "--run", nowhere.to_str().unwrap()]),
        &format!("--run {}: no config.toml", nowhere.display()),
    );
    for (callbacks, needle) in [
        (
            "kind = \"cam\"\nnum_images = 2\nfaithfulness_images = 3",
            "faithfulness_images (3) must be at most num_images (2)",
        ),
        (
            "kind = \"cam\"\nnum_images = 2\nroad_images = 3",
            "road_images (3) must be at most num_images (2)",
        ),
        (
            "kind = \"cam\"\nfaithfulness_images = 1\nfaithfulness_baseline = \"gray\"",
            "unknown baseline `gray` (zeros | blur)",
        ),
        (
            "kind = \"cam\"\nfaithfulness_images = 1\nfaithfulness_steps = 0",
            "faithfulness_steps must be in 1..=1000",
        ),
        (
            "kind = \"cam\"\n\n[[callbacks]]\nkind = \"cam\"\nlayer = \"block5_conv3\"",
            "a second `cam` callback (the first is #1)",
        ),
    ] {
        let path = config(
            tmp.path(),
            "bad",
            &format!("\n[[callbacks]]\n{callbacks}\n"),
        );
        fails_with(&train(&["--config", path.to_str().unwrap()]), needle);
    }
    // A finished run: an epoch it did not log, and an unknown method.
    let path = config(
        tmp.path(),
        "fine",
        "\n[[callbacks]]\nkind = \"gradcam\"\nnum_images = 2\n",
    );
    ok(&train(&["--config", path.to_str().unwrap()]));
    let run = only_run(&tmp.path().join("runs"), "fine-");
    // A run without callbacks trains, but says it logs no maps.
    let path = config(tmp.path(), "silent", "");
    let silent = train(&["--config", path.to_str().unwrap()]);
    assert!(silent.status.success());
    let stderr = String::from_utf8_lossy(&silent.stderr);
    assert!(
        stderr.contains("warning: the config has no [[callbacks]]"),
        "{stderr}"
    );
    // Logged: epochs 1–3, and step 0 (the untrained head) where the run logged it.
    let epoch_9 = train(&[
        "compare",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "9",
    ]);
    fails_with(
        &epoch_9,
        "--epochs 9: no run logged overlays at epoch 9 (logged: ",
    );
    fails_with(&epoch_9, "1, 2, 3)");
    fails_with(
        &train(&[
            "sanity",
            "--run",
            run.to_str().unwrap(),
            "--methods",
            "gradkam",
        ]),
        "--methods",
    );
    // The rejected configs created no run directory (`bad-<stamp>`).
    let bad_runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("bad-")
        })
        .collect();
    assert!(bad_runs.is_empty(), "{bad_runs:?}");
}
