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
