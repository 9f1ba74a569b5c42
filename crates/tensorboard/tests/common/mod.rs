//! A demo log directory with known contents, shared by the Rust parse-back tests and the
//! official-reader check (`scripts/check_tensorboard.py` recomputes the same values).
#![allow(dead_code)]

use std::path::Path;

use image::{Rgb, RgbImage};
use tensorboard::{
    DatasetType, Domain, EventWriter, Experiment, HParamSpec, HParamValue, MetricSpec,
    SessionStatus,
};

/// The demo image: R = x, G = y, B = 40·step + 100·sample (all mod 256).
pub fn demo_image(width: u32, height: u32, step: i64, sample: usize) -> RgbImage {
    let blue = ((40 * step + 100 * sample as i64) % 256) as u8;
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, blue])
    })
}

pub const RUNS: [(&str, &str, f64); 2] =
    [("cam", "gap-linear", 0.001), ("gradcam", "gap-dense", 0.01)];
pub const CONFIG_MARKDOWN: &str = "# Run config\n\n| key | value |\n|---|---|\n| method | `cam` |";

/// Write the demo: an experiment in the root run, and two runs with scalars (a NaN included),
/// images (square, non-square, two samples per step), text and session start/end.
pub fn write_demo(root: &Path) {
    let mut experiment_log = EventWriter::create(root).unwrap();
    experiment_log
        .add_hparams_experiment(&Experiment {
            description: "CAM vs Grad-CAM".into(),
            time_created_secs: 1_700_000_000.0,
            hparams: vec![
                HParamSpec {
                    name: "method".into(),
                    example: "cam".into(),
                    domain: Domain::Discrete(vec!["cam".into(), "gradcam".into()]),
                    description: "explanation method".into(),
                },
                HParamSpec {
                    name: "head".into(),
                    example: "gap-linear".into(),
                    domain: Domain::Any,
                    description: String::new(),
                },
                HParamSpec {
                    name: "learning_rate".into(),
                    example: 0.001.into(),
                    domain: Domain::Interval(1e-5, 1.0),
                    description: String::new(),
                },
                HParamSpec {
                    name: "freeze_backbone".into(),
                    example: true.into(),
                    domain: Domain::Any,
                    description: String::new(),
                },
            ],
            metrics: vec![
                MetricSpec {
                    tag: "val/accuracy".into(),
                    group: String::new(),
                    display_name: "val accuracy".into(),
                    dataset: DatasetType::Validation,
                },
                MetricSpec {
                    tag: "train/loss".into(),
                    group: String::new(),
                    display_name: String::new(),
                    dataset: DatasetType::Training,
                },
            ],
        })
        .unwrap();
    experiment_log.flush().unwrap();

    for (i, (method, head, lr)) in RUNS.iter().enumerate() {
        let mut log = EventWriter::create(root.join(method)).unwrap();
        log.add_session_start(
            &[
                ("method", HParamValue::from(*method)),
                ("head", HParamValue::from(*head)),
                ("learning_rate", HParamValue::from(*lr)),
                ("freeze_backbone", HParamValue::from(true)),
            ],
            "",
            1_700_000_100.0,
        )
        .unwrap();
        log.add_text("config", CONFIG_MARKDOWN, 0).unwrap();
        for step in 0..5i64 {
            log.add_scalar("train/loss", 1.0 / (step as f32 + 1.0), step)
                .unwrap();
            log.add_scalar(
                "val/accuracy",
                0.5 + 0.1 * step as f32 + 0.01 * i as f32,
                step,
            )
            .unwrap();
        }
        log.add_scalar("weird/nan", f32::NAN, 0).unwrap();
        for step in 1..=3i64 {
            log.add_image("cam/val_00", &demo_image(224, 224, step, 0), step)
                .unwrap();
            log.add_image("shape/w64_h32", &demo_image(64, 32, step, 0), step)
                .unwrap();
            let pair = [demo_image(48, 40, step, 0), demo_image(48, 40, step, 1)];
            log.add_images("cam/pair", &pair, step).unwrap();
        }
        log.add_session_end(SessionStatus::Success, 1_700_000_200.0)
            .unwrap();
        log.flush().unwrap();
    }
}
