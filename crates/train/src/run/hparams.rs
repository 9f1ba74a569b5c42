//! The run's HParams for TensorBoard's HPARAMS tab: the hyperparameters compared across runs
//! and the metric columns.

use sha2::{Digest, Sha256};
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
/// `15:45:28 quickstart 2026-12-07 9f3a` (a second run started in that second: `15:45:28-1 …`;
/// the last part a hash of the full path). A directory not named `<name>-<YYYYMMDD>-<HHMMSS>[-n]`
/// keeps its own name.
pub fn session_name(run_dir: &std::path::Path) -> String {
    let dir = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Runs of one group name share a row: the full path's hash keeps runs of one directory
    // name in different runs dirs (seeds started in the same second) apart.
    let hash = Sha256::digest(run_dir.to_string_lossy().as_bytes());
    let tag = format!("{:02x}{:02x}", hash[0], hash[1]);
    match crate::run::files::parse_run_dir_name(&dir) {
        Some((name, date, time, n)) => {
            let n = n.map(|n| format!("-{n}")).unwrap_or_default();
            format!(
                "{}:{}:{}{n} {name} {}-{}-{} {tag}",
                &time[0..2],
                &time[2..4],
                &time[4..6],
                &date[0..4],
                &date[4..6],
                &date[6..8]
            )
        }
        None => format!("{dir} {tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::session_name;
    use std::path::Path;

    #[test]
    fn session_names_lead_with_the_start_time() {
        // Without the path's hash (its last 5 characters).
        let name = |d: &str| {
            let full = session_name(Path::new(d));
            full[..full.len() - 5].to_string()
        };
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
        assert_eq!(name("runs/x-20261207-154528-"), "x-20261207-154528-");
        // One directory name in two runs dirs: two names (two rows in the table).
        let (a, b) = (
            session_name(Path::new("/a/runs/q-20261207-154528")),
            session_name(Path::new("/b/runs/q-20261207-154528")),
        );
        assert_ne!(a, b);
    }
}
