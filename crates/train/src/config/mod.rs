//! The run configuration (TOML), parsed straight into the types the run uses (methods, heads,
//! colormaps, baselines, backbones are enums). Unknown keys and unknown names are errors that
//! name the key; relative paths resolve against the working directory; every input path is
//! checked, and all missing ones are reported at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use model::{BackboneKind, HeadKind};
use serde::{Deserialize, Serialize};

mod callback;
mod check;

pub use callback::CallbackConfig;

/// The whole config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[run]`.
    pub run: RunConfig,
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`.
    pub model: ModelConfig,
    /// `[train]`.
    pub train: TrainConfig,
    /// `[[callbacks]]`.
    #[serde(default)]
    pub callbacks: Vec<CallbackConfig>,
    /// `[logging]`.
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// `[run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: the run dir is `<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-n]`.
    pub name: String,
    /// Where runs go.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Seed for the split, the head's initialisation and the batch order.
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, or `cuda[:N]` in a build with `--features cuda`.
    #[serde(default = "default_device")]
    pub device: String,
}

/// An image size: `224` or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSize {
    /// Square.
    Square(usize),
    /// `[height, width]`.
    HeightWidth([usize; 2]),
}

impl ImageSize {
    /// `[height, width]`.
    pub fn hw(self) -> [usize; 2] {
        match self {
            ImageSize::Square(s) => [s, s],
            ImageSize::HeightWidth(hw) => hw,
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// ImageFolder (one sub-folder per class) or Kaggle flat layout (`cat.1.jpg`). Required
    /// unless `synthetic` is given.
    #[serde(default)]
    pub train_dir: Option<PathBuf>,
    /// Generate a synthetic data set (into `<runs_dir>/.cache`) instead of reading one.
    #[serde(default)]
    pub synthetic: Option<SyntheticConfig>,
    /// Ground-truth boxes of (validation) images, JSON as `oxford_loc.json`: `images[]` with
    /// `file` (matched by file name), `head_box_xyxy` and optionally `body_polygon_xy` (the whole
    /// animal's outline, for MaxBoxAcc and PxAP). Enables localization metrics.
    #[serde(default)]
    pub boxes: Option<PathBuf>,
    /// Also score the uniform baseline (a constant map: each localization score's chance
    /// level) beside every method, as `baseline_uniform/<score>`; the centre baseline is always
    /// scored (default false).
    #[serde(default)]
    pub uniform_baseline: bool,
    /// Validation images; when absent, `val_fraction` of the training images (seeded split).
    #[serde(default)]
    pub val_dir: Option<PathBuf>,
    /// Share of training images held out when there is no `val_dir` (default 0.2).
    #[serde(default)]
    pub val_fraction: Option<f64>,
    /// Network input size.
    #[serde(default = "default_image_size")]
    pub image_size: ImageSize,
    /// Cache backbone features on disk under `<runs_dir>/.cache` (default true).
    #[serde(default = "default_true")]
    pub cache: bool,
    /// Images per backbone batch (default 8).
    #[serde(default = "default_backbone_batch")]
    pub backbone_batch_size: usize,
    /// More evaluation sets (`[[data.eval]]`), scored every epoch like the validation set.
    #[serde(default)]
    pub eval: Vec<EvalConfig>,
}

/// One `[[data.eval]]` entry: another labelled set evaluated every epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Name used in tags (`accuracy/<name>`) and metrics.csv (`<name>_accuracy`).
    pub name: String,
    /// ImageFolder or Kaggle-layout directory with the same classes as training.
    pub dir: PathBuf,
}

/// `[data] synthetic = { seed, train, val, size }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Generator seed.
    pub seed: u64,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Side in pixels.
    pub size: usize,
    /// A spurious cue that goes with the label in the training images (the shortcut
    /// quickstart): `cue = { size, mark_agrees, animal_agrees }`. Adds the eval sets `cue` and
    /// `clean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue: Option<CueConfig>,
}

/// `[data] synthetic.cue`: a striped badge in a corner, cyan stripes across for cat and magenta
/// stripes upright for dog (`data::synth::cue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CueConfig {
    /// The mark's side in pixels (default a quarter of the image's side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Share of training images whose mark has their label's colour (default 1).
    #[serde(default = "default_one")]
    pub mark_agrees: f64,
    /// Share of training images whose animal is their label's (default 0.8): below
    /// `mark_agrees`, the mark predicts the label better than the animal does.
    #[serde(default = "default_animal_agrees")]
    pub animal_agrees: f64,
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `vgg16` or `efficientnet-lite0`.
    #[serde(with = "parsed")]
    pub backbone: BackboneKind,
    /// Backbone weights (torchvision .pth or .safetensors).
    pub weights: PathBuf,
    /// `gap-linear` or `gap-dense`.
    #[serde(with = "parsed")]
    pub head: HeadKind,
    /// `false`: the whole backbone trains (as `train_from` = its first layer).
    #[serde(default = "default_true")]
    pub freeze_backbone: bool,
    /// The first backbone layer that trains, with every layer above it (`block5_conv1`,
    /// `block14`, …). Absent: only the head trains, on cached pooled features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_from: Option<String>,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Head-training batch size.
    pub batch_size: usize,
    /// Adam's learning rate (the head's).
    pub learning_rate: f64,
    /// Adam's learning rate for the trained backbone layers (default `learning_rate / 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_learning_rate: Option<f64>,
    /// `adam`.
    #[serde(default = "default_optimizer")]
    pub optimizer: String,
}

/// `[logging]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Write TensorBoard event files.
    #[serde(default = "default_true")]
    pub tensorboard: bool,
    /// Write overlay PNG files under `images/`.
    #[serde(default = "default_true")]
    pub png: bool,
    /// Log live to this MLflow tracking server (`http://host:port`): params, metrics per epoch,
    /// images as artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<String>,
    /// The MLflow experiment (default `catdog-cam`).
    #[serde(default = "default_experiment")]
    pub experiment: String,
    /// Whether a server that cannot be reached at the start stops the run (default true).
    #[serde(default = "default_true")]
    pub mlflow_required: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            tensorboard: true,
            png: true,
            mlflow: None,
            experiment: default_experiment(),
            mlflow_required: true,
        }
    }
}

fn default_experiment() -> String {
    "catdog-cam".into()
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_device() -> String {
    "cpu".into()
}
fn default_image_size() -> ImageSize {
    ImageSize::Square(224)
}
fn default_one() -> f64 {
    1.0
}
fn default_animal_agrees() -> f64 {
    0.8
}
fn default_true() -> bool {
    true
}
fn default_backbone_batch() -> usize {
    8
}
fn default_optimizer() -> String {
    "adam".into()
}

/// Serde for the names in a config (`kind = "gradcam"`, `head = "gap-linear"`, …): read with
/// the type's `FromStr` (whose error lists the names it knows), written with its `Display`.
mod parsed {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Config {
    /// Read and check a config file. Relative paths resolve against the working directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config =
            Self::parse(&text).with_context(|| format!("config {}", path.display()))?;
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        config.resolve_paths(&cwd);
        let config_dir = cwd.join(path.parent().unwrap_or(Path::new("")));
        config
            .check_inputs(&cwd, &config_dir)
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    /// Parse config text and check everything that needs no file system: names, types,
    /// unknown keys, ranges (the mutation tests feed this arbitrary bytes).
    pub fn parse(text: &str) -> Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        let backbone = config.model.backbone;
        for c in config.callbacks.iter_mut().filter(|c| c.layer.is_empty()) {
            c.layer = backbone.layer_names()[backbone.head_input(HeadKind::GapLinear)].into();
        }
        config.check_values()?;
        Ok(config)
    }

    /// The first backbone layer that trains: `[model] train_from`, or the backbone's first
    /// layer with `freeze_backbone = false`; `None` when only the head trains.
    pub fn train_from(&self) -> Option<&str> {
        match &self.model.train_from {
            Some(name) => Some(name),
            None if !self.model.freeze_backbone => self
                .model
                .backbone
                .trainable_layers(self.model.head)
                .first()
                .copied(),
            None => None,
        }
    }

    /// Where backbone features are cached: `<runs_dir>/.cache` (`None` with `[data] cache =
    /// false`).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.data.cache.then(|| self.run.runs_dir.join(".cache"))
    }

    /// The trained backbone layers' learning rate: `[train] backbone_learning_rate`, by default
    /// `learning_rate / 10`.
    pub fn backbone_learning_rate(&self) -> f64 {
        self.train
            .backbone_learning_rate
            .unwrap_or(self.train.learning_rate / 10.0)
    }

    fn resolve_paths(&mut self, cwd: &Path) {
        let shared = shared_dir();
        let abs = |p: &mut PathBuf| {
            *p = expand_shared_dir(p, &shared);
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        abs(&mut self.run.runs_dir);
        for p in [
            &mut self.data.train_dir,
            &mut self.data.val_dir,
            &mut self.data.boxes,
        ]
        .into_iter()
        .flatten()
        {
            abs(p);
        }
        for e in &mut self.data.eval {
            abs(&mut e.dir);
        }
        abs(&mut self.model.weights);
    }
}

/// What `${SHARED_DIR}` stands for in a config's paths: the environment variable `SHARED_DIR`,
/// or `../shared` (from the working directory) when it is unset or empty.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SHARED_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("../shared"),
    }
}

/// `path` with a leading `${SHARED_DIR}` (or `$SHARED_DIR`), followed by a separator or
/// nothing, replaced by `shared`.
pub fn expand_shared_dir(path: &Path, shared: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    for var in ["${SHARED_DIR}", "$SHARED_DIR"] {
        // The variable's name ends at a separator or the end (`$SHARED_DIRX` is not it).
        let rest = text.strip_prefix(var);
        if let Some(rest) = rest.filter(|r| r.is_empty() || r.starts_with(['/', '\\'])) {
            return shared.join(rest.trim_start_matches(['/', '\\']));
        }
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbacks::scores::faithfulness::Baseline;
    use callbacks::{Colormap, Method};

    const BASE: &str = r#"
[run]
name = "t"
[data]
train_dir = "no/such/train"
val_dir = "no/such/val"
[model]
backbone = "vgg16"
weights = "no/such/weights.pth"
head = "gap-linear"
[train]
epochs = 2
batch_size = 4
learning_rate = 1e-3
"#;

    #[test]
    fn names_become_types_and_are_written_back_canonically() {
        let text = format!(
            "{BASE}\n[[callbacks]]\nkind = \"GradCAMpp\"\ncolormap = \"turbo\"\nfaithfulness_baseline = \"blur\"\n"
        );
        let config = Config::parse(&text).unwrap();
        let c = &config.callbacks[0];
        assert_eq!(c.kind, Method::GradCamPlusPlus);
        assert_eq!(
            (c.colormap, c.faithfulness_baseline),
            (Colormap::Turbo, Baseline::Blur)
        );
        assert_eq!(config.model.backbone, BackboneKind::Vgg16);
        let written = toml::to_string_pretty(&config).unwrap();
        assert!(written.contains("kind = \"gradcam++\""), "{written}");
        assert_eq!(Config::parse(&written).unwrap().callbacks[0].kind, c.kind);
    }

    #[test]
    fn score_cam_draws_every_fifth_epoch_and_the_smoothing_options_reach_the_engine() {
        let text = format!(
            "{BASE}\n[[callbacks]]\nkind = \"scorecam\"\n\n[[callbacks]]\nkind = \"gradcam\"\n\
             eigen_smooth = true\naug_smooth = true\n\n[[callbacks]]\nkind = \"random\"\nevery = 2\n"
        );
        let config = Config::parse(&text).unwrap();
        let [score, grad, random] = &config.callbacks[..] else {
            panic!("three callbacks")
        };
        assert_eq!((score.every(), grad.every(), random.every()), (5, 1, 2));
        assert!(score.needs_images() && grad.needs_images() && !random.needs_images());
        let options = grad.options(7);
        assert!(options.eigen_smooth && options.aug_smooth && options.seed == 7);
        let written = toml::to_string_pretty(&config).unwrap();
        assert!(Config::parse(&written).unwrap().callbacks[1].eigen_smooth);
        let zero = format!("{BASE}\n[[callbacks]]\nkind = \"scorecam\"\nevery = 0\n");
        let error = format!("{:#}", Config::parse(&zero).unwrap_err());
        assert!(error.contains("every must be at least 1"), "{error}");
    }

    #[test]
    fn unknown_names_are_errors_that_list_the_known_ones() {
        for (key, bad, expect) in [
            ("kind", "gradcan", "unknown method `gradcan`"),
            ("colormap", "jetx", "jetx"),
        ] {
            let text = format!("{BASE}\n[[callbacks]]\nkind = \"cam\"\n{key} = \"{bad}\"\n")
                .replacen("kind = \"cam\"\nkind", "kind", 1);
            let error = format!("{:#}", Config::parse(&text).unwrap_err());
            assert!(error.contains(expect), "{error}");
        }
        let error = format!(
            "{:#}",
            Config::parse(&BASE.replace("vgg16", "vgg19")).unwrap_err()
        );
        assert!(
            error.contains(
                "unknown backbone `vgg19` (available: vgg16, efficientnet-lite0, resnet18, \
                 resnet34, resnet50, resnet101, resnet152)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_callback_without_layer_explains_the_backbones_own_last_convolution() {
        let text = format!("{BASE}\n[[callbacks]]\nkind = \"cam\"\n");
        assert_eq!(
            Config::parse(&text).unwrap().callbacks[0].layer,
            "block5_conv3"
        );
        let effnet = text.replace("backbone = \"vgg16\"", "backbone = \"efficientnet-lite0\"");
        assert_eq!(Config::parse(&effnet).unwrap().callbacks[0].layer, "head");
        let named = format!("{text}layer = \"block4_conv3\"\n");
        assert_eq!(
            Config::parse(&named).unwrap().callbacks[0].layer,
            "block4_conv3"
        );
    }

    #[test]
    fn the_same_method_twice_is_an_error_whatever_its_spelling() {
        let text = format!(
            "{BASE}\n[[callbacks]]\nkind = \"gradcam\"\n\n[[callbacks]]\nkind = \"GradCAM\"\n"
        );
        let error = format!("{:#}", Config::parse(&text).unwrap_err());
        assert!(
            error.contains("[[callbacks]] #2: a second `gradcam` callback (the first is #1)"),
            "{error}"
        );
    }

    #[test]
    fn every_missing_input_is_reported_at_once() {
        let mut config = Config::parse(BASE).unwrap();
        let cwd = Path::new("/nowhere");
        config.resolve_paths(cwd);
        let error = format!("{:#}", config.check_inputs(cwd, cwd).unwrap_err());
        for expected in [
            "3 missing input(s)",
            "[data] train_dir: /nowhere/no/such/train does not exist",
            "[data] val_dir: /nowhere/no/such/val",
            "[model] weights: /nowhere/no/such/weights.pth does not exist\n",
            "resolve against the working directory, /nowhere",
        ] {
            assert!(error.contains(expected), "{expected}\n{error}");
        }
        // The user's own paths get no hint of a download script that would not make them.
        assert!(!error.contains("fetch-"), "{error}");
    }

    #[test]
    fn missing_inputs_get_the_hint_of_what_makes_them() {
        let text = BASE
            .replace("no/such/weights.pth", "data/weights/vgg16-397923af.pth")
            .replace("no/such/train", "data/cats_and_dogs_filtered/train")
            .replace("no/such/val", "${SHARED_DIR}/no/such/val");
        let mut config = Config::parse(&text).unwrap();
        let cwd = Path::new("/nowhere");
        config.resolve_paths(cwd);
        let error = format!("{:#}", config.check_inputs(cwd, cwd).unwrap_err());
        for expected in [
            "[model] weights: /nowhere/data/weights/vgg16-397923af.pth does not exist (get it \
             with `scripts/fetch-weights.sh vgg16`)",
            "[data] train_dir: /nowhere/data/cats_and_dogs_filtered/train does not exist (get it \
             with `scripts/fetch-data.sh`)",
            "/no/such/val does not exist (it is looked for under ${SHARED_DIR} = ",
        ] {
            assert!(error.contains(expected), "{expected}\n{error}");
        }
    }

    #[test]
    fn shared_dir_in_paths_is_expanded() {
        let shared = Path::new("/data/shared");
        for (path, want) in [
            ("${SHARED_DIR}/weights/w.pth", "/data/shared/weights/w.pth"),
            ("$SHARED_DIR/data/catdog", "/data/shared/data/catdog"),
            ("${SHARED_DIR}", "/data/shared"),
            ("data/${SHARED_DIR}/x", "data/${SHARED_DIR}/x"),
            ("$SHARED_DIRX/a", "$SHARED_DIRX/a"),
            ("${SHARED_DIR}x", "${SHARED_DIR}x"),
            ("/abs/path", "/abs/path"),
        ] {
            assert_eq!(
                expand_shared_dir(Path::new(path), shared),
                Path::new(want),
                "{path}"
            );
        }
    }

    #[test]
    fn a_bundled_file_missed_from_another_directory_says_where_to_run() {
        // The quickstart's layout: <repo>/configs/q.toml naming data/weights/w.safetensors.
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("data/weights")).unwrap();
        std::fs::write(repo.path().join("data/weights/w.safetensors"), b"").unwrap();
        let mut config =
            Config::parse(&BASE.replace("no/such/weights.pth", "data/weights/w.safetensors"))
                .unwrap();
        let elsewhere = Path::new("/tmp");
        config.resolve_paths(elsewhere);
        let error = format!(
            "{:#}",
            config
                .check_inputs(elsewhere, &repo.path().join("configs"))
                .unwrap_err()
        );
        let hint = format!(
            "[model] weights: /tmp/data/weights/w.safetensors does not exist; \
             `data/weights/w.safetensors` is in {}: run from there",
            repo.path().display()
        );
        assert!(error.contains(&hint), "{error}");
        assert!(!error.contains("fetch-weights"), "{error}");
    }
    #[test]
    fn train_from_names_contradictions_and_rates() {
        let base = |model_extra: &str, train_extra: &str| {
            BASE.replace(
                "head = \"gap-linear\"\n",
                &format!("head = \"gap-linear\"\n{model_extra}\n"),
            )
            .replace(
                "learning_rate = 1e-3\n",
                &format!("learning_rate = 1e-3\n{train_extra}\n"),
            )
        };
        let c = Config::parse(&base("", "")).unwrap();
        assert_eq!(c.train_from(), None);
        let c = Config::parse(&base("train_from = \"block5_conv1\"", "")).unwrap();
        assert_eq!(c.train_from(), Some("block5_conv1"));
        assert!((c.backbone_learning_rate() - 1e-4).abs() < 1e-12);
        let c = Config::parse(&base(
            "freeze_backbone = false",
            "backbone_learning_rate = 5e-5",
        ))
        .unwrap();
        assert_eq!(c.train_from(), Some("block1_conv1"));
        assert_eq!(c.backbone_learning_rate(), 5e-5);
        let e = Config::parse(&base("train_from = \"block6_conv1\"", ""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("block6_conv1")
                && e.contains("block1_conv1, block1_conv2")
                && e.contains("block5_conv3"),
            "{e}"
        );
        // A pool has no weights; the gap-linear head does not read block5_pool.
        for bad in ["block4_pool", "block5_pool"] {
            assert!(Config::parse(&base(&format!("train_from = \"{bad}\""), "")).is_err());
        }
        let e = Config::parse(&base(
            "train_from = \"block5_conv1\"\nfreeze_backbone = false",
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("contradict"), "{e}");
        let e = Config::parse(&base("", "backbone_learning_rate = 1e-4"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no backbone layer trains"), "{e}");
        let e = Config::parse(&base(
            "train_from = \"block5_conv1\"",
            "backbone_learning_rate = -1",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("backbone_learning_rate"), "{e}");
        let effnet = base("train_from = \"block14\"", "").replace("vgg16", "efficientnet-lite0");
        assert_eq!(
            Config::parse(&effnet).unwrap().train_from(),
            Some("block14")
        );
        let e = Config::parse(&effnet.replace("block14", "block17"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stem, block1, block2") && e.contains("block16, head"),
            "{e}"
        );
    }
}
