//! The run's HParams for TensorBoard's HPARAMS tab: the hyperparameters compared across runs
//! and the metric columns.

use tensorboard::{DatasetType, Domain, Experiment, HParamSpec, HParamValue, MetricSpec};

use crate::config::Config;

/// The hyperparameters of a run, by name.
pub fn hparams(config: &Config) -> Vec<(&'static str, HParamValue)> {
    let methods: Vec<String> = config
        .callbacks
        .iter()
        .map(|c| c.kind.to_string())
        .collect();
    let layers: Vec<&str> = config.callbacks.iter().map(|c| c.layer.as_str()).collect();
    let [h, w] = config.data.image_size.hw();
    vec![
        ("method", HParamValue::from(methods.join("+"))),
        ("head", config.model.head.name().into()),
        ("layer", HParamValue::from(layers.join("+"))),
        ("learning_rate", config.train.learning_rate.into()),
        (
            "train_from",
            HParamValue::from(config.train_from().unwrap_or("head only").to_string()),
        ),
        (
            "backbone_learning_rate",
            match config.train_from() {
                Some(_) => config.backbone_learning_rate().into(),
                None => 0.0.into(),
            },
        ),
        ("batch_size", (config.train.batch_size as f64).into()),
        ("epochs", (config.train.epochs as f64).into()),
        ("backbone", config.model.backbone.name().into()),
        ("image_size", HParamValue::from(format!("{h}x{w}"))),
        ("seed", (config.run.seed as f64).into()),
    ]
}

/// The HParams experiment: the hyperparameters and the metrics to compare runs by.
pub fn experiment(config: &Config) -> Experiment {
    let metric = |tag: &str, dataset| MetricSpec {
        tag: tag.into(),
        group: String::new(),
        display_name: String::new(),
        dataset,
    };
    Experiment {
        description: "catdog-cam runs: a trained head (and, with train_from, the top of the backbone), CAM-family callbacks".into(),
        time_created_secs: 0.0,
        hparams: hparams(config)
            .into_iter()
            .map(|(name, example)| HParamSpec {
                name: name.into(),
                example,
                domain: Domain::Any,
                description: String::new(),
            })
            .collect(),
        metrics: vec![
            metric("accuracy/val", DatasetType::Validation),
            metric("loss/val", DatasetType::Validation),
            metric("accuracy/train", DatasetType::Training),
            metric("loss/train", DatasetType::Training),
        ],
    }
}

/// The name the HPARAMS table shows for a run (its "Trial ID" column, whose default width shows
/// ~15 characters): the start time first, so that runs of one config (which share a name)
/// differ where the table can show it — `runs/quickstart-20261207-154528` becomes
/// `15:45:28 quickstart 2026-12-07` (a second run started in that second: `15:45:28-1 …`). A
/// directory not named `<name>-<YYYYMMDD>-<HHMMSS>[-n]` keeps its own name.
pub fn session_name(run_dir: &std::path::Path) -> String {
    let dir = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parse = || -> Option<String> {
        let parts: Vec<&str> = dir.rsplitn(4, '-').collect();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        // name-date-time, or name-date-time-n.
        let (name, date, time, n) = match parts.as_slice() {
            [n, time, date, name] if digits(time, 6) && digits(date, 8) && digits(n, n.len()) => {
                (*name, *date, *time, Some(*n))
            }
            _ => {
                let parts: Vec<&str> = dir.rsplitn(3, '-').collect();
                match parts.as_slice() {
                    [time, date, name] if digits(time, 6) && digits(date, 8) => {
                        (*name, *date, *time, None)
                    }
                    _ => return None,
                }
            }
        };
        let suffix = n.map(|n| format!("-{n}")).unwrap_or_default();
        Some(format!(
            "{}:{}:{}{suffix} {name} {}-{}-{}",
            &time[0..2],
            &time[2..4],
            &time[4..6],
            &date[0..4],
            &date[4..6],
            &date[6..8]
        ))
    };
    parse().unwrap_or(dir.clone())
}

#[cfg(test)]
mod tests {
    use super::session_name;
    use std::path::Path;

    #[test]
    fn session_names_lead_with_the_start_time() {
        let name = |d: &str| session_name(Path::new(d));
        assert_eq!(
            name("runs/quickstart-20261207-154528"),
            "15:45:28 quickstart 2026-12-07"
        );
        assert_eq!(
            name("runs/quickstart-shortcut-20261207-154600-1"),
            "15:46:00-1 quickstart-shortcut 2026-12-07"
        );
        assert_eq!(name("/tmp/my-run"), "my-run");
        assert_eq!(name("runs/x-2026120-154528"), "x-2026120-154528");
    }
}
