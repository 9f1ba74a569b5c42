//! The run configuration (TOML). Unknown keys are errors that name the key; relative paths
//! resolve against the working directory; every path that must exist is checked with a message
//! naming the key and how to get the file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use callbacks::faithfulness::Baseline;
use callbacks::{Colormap, FaithfulnessSettings, Method, OverlayStyle};
use model::HeadKind;
use serde::{Deserialize, Serialize};

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
    /// `file` (matched by file name) and `head_box_xyxy`. Enables localization metrics.
    #[serde(default)]
    pub boxes: Option<PathBuf>,
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
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `vgg16`.
    pub backbone: String,
    /// Backbone weights (torchvision .pth or .safetensors).
    pub weights: PathBuf,
    /// `gap-linear` or `gap-dense`.
    pub head: String,
    /// Only `true` is supported yet: the backbone stays frozen.
    #[serde(default = "default_true")]
    pub freeze_backbone: bool,
}

/// `[train]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Head-training batch size.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// `adam`.
    #[serde(default = "default_optimizer")]
    pub optimizer: String,
}

/// One `[[callbacks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// cam | gradcam | gradcam++ | layercam | hirescam | xgradcam.
    pub kind: String,
    /// The layer to explain.
    #[serde(default = "default_layer")]
    pub layer: String,
    /// How many validation images (balanced over classes).
    #[serde(default = "default_num_images")]
    pub num_images: usize,
    /// Every this many epochs.
    #[serde(default = "default_every")]
    pub every: usize,
    /// jet | turbo | viridis.
    #[serde(default = "default_colormap")]
    pub colormap: String,
    /// Weight of the photo in the overlay.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Heat below this fraction of the max is not drawn.
    #[serde(default)]
    pub threshold: f32,
    /// Validation images with boxes scored for localization each epoch (default 256).
    #[serde(default = "default_localization_images")]
    pub localization_images: usize,
    /// Box-IoU region threshold (default: 0.2 for CAM as in the CAM paper, 0.15 otherwise as
    /// in the Grad-CAM paper).
    #[serde(default)]
    pub localization_threshold: Option<f32>,
    /// How many of the callback's images are scored for faithfulness each epoch (Average
    /// Drop, Increase in Confidence, deletion/insertion AUC); 0 = off. Each image costs
    /// 2·steps + 1 backbone passes per epoch.
    #[serde(default)]
    pub faithfulness_images: usize,
    /// zeros | blur: what deleted pixels become and what insertion starts from.
    #[serde(default = "default_baseline")]
    pub faithfulness_baseline: String,
    /// Deletion/insertion steps (20 as in RISE).
    #[serde(default = "default_faithfulness_steps")]
    pub faithfulness_steps: usize,
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
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            tensorboard: true,
            png: true,
        }
    }
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
fn default_true() -> bool {
    true
}
fn default_backbone_batch() -> usize {
    8
}
fn default_optimizer() -> String {
    "adam".into()
}
fn default_layer() -> String {
    "block5_conv3".into()
}
fn default_num_images() -> usize {
    16
}
fn default_every() -> usize {
    1
}
fn default_colormap() -> String {
    "jet".into()
}
fn default_alpha() -> f32 {
    0.5
}
fn default_baseline() -> String {
    "zeros".into()
}
fn default_faithfulness_steps() -> usize {
    20
}
fn default_localization_images() -> usize {
    256
}

/// A callback's settings, parsed.
#[derive(Debug, Clone)]
pub struct CallbackSpec {
    /// The method.
    pub method: Method,
    /// The layer.
    pub layer: String,
    /// Images explained.
    pub num_images: usize,
    /// Every this many epochs.
    pub every: usize,
    /// Overlay style.
    pub style: OverlayStyle,
    /// Images scored for localization.
    pub localization_images: usize,
    /// Box-IoU region threshold.
    pub localization_threshold: f32,
    /// Faithfulness scoring, if on.
    pub faithfulness: Option<FaithfulnessSettings>,
}

impl Config {
    /// Read and check a config file. Relative paths resolve against the working directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut config =
            Self::parse(&text).with_context(|| format!("config {}", path.display()))?;
        config.resolve_paths()?;
        config
            .validate()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    /// Parse config text and check what needs no file system: types, unknown keys, the head,
    /// the callbacks' settings (the mutation tests feed this arbitrary bytes).
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)?;
        config.head_kind()?;
        config.callback_specs()?;
        Ok(config)
    }

    fn resolve_paths(&mut self) -> Result<()> {
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let abs = |p: &mut PathBuf| {
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
        Ok(())
    }

    /// Check values and that the input paths exist.
    pub fn validate(&self) -> Result<()> {
        if self.run.name.is_empty()
            || self.run.name.contains(['/', '\\'])
            || self.run.name.starts_with('.')
        {
            bail!(
                "[run] name `{}` must be a plain, non-empty file name",
                self.run.name
            );
        }
        model::device_from_name(&self.run.device)
            .map_err(|e| anyhow::anyhow!("[run] device: {e}"))?;
        match (&self.data.train_dir, &self.data.synthetic) {
            (Some(dir), None) => must_exist("[data] train_dir", dir, "scripts/fetch-data.sh")?,
            (None, Some(s)) => {
                if s.train < 2 || s.val < 2 || s.train > 1_000_000 || s.val > 1_000_000 {
                    bail!("[data] synthetic needs 2 to 1,000,000 train and val images");
                }
                model::Classifier::check_input_size(s.size, s.size)
                    .map_err(|e| anyhow::anyhow!("[data] synthetic size: {e}"))?;
                if self.data.val_dir.is_some() || self.data.boxes.is_some() {
                    bail!("[data] synthetic makes its own val_dir and boxes: remove them");
                }
            }
            (Some(_), Some(_)) => bail!("[data] give either train_dir or synthetic, not both"),
            (None, None) => bail!(
                "[data] train_dir is missing (or give synthetic = {{ seed, train, val, size }})"
            ),
        }
        if let Some(boxes) = &self.data.boxes {
            must_exist("[data] boxes", boxes, "the data set's annotations")?;
        }
        for (i, e) in self.data.eval.iter().enumerate() {
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!(
                    "[[data.eval]] #{}: name `{}` must be letters, digits, `_` or `-`",
                    i + 1,
                    e.name
                );
            }
            must_exist(
                &format!("[[data.eval]] {} dir", e.name),
                &e.dir,
                "scripts/fetch-data.sh",
            )?;
        }
        if let Some(val) = &self.data.val_dir {
            must_exist("[data] val_dir", val, "scripts/fetch-data.sh")?;
        }
        if let Some(f) = self.data.val_fraction {
            if self.data.val_dir.is_some() {
                bail!("[data] give either val_dir or val_fraction, not both");
            }
            if !(f > 0.0 && f < 1.0) {
                bail!("[data] val_fraction must be in (0, 1), got {f}");
            }
        }
        let [h, w] = self.data.image_size.hw();
        model::Classifier::check_input_size(h, w)
            .map_err(|e| anyhow::anyhow!("[data] image_size: {e}"))?;
        if !(1..=256).contains(&self.data.backbone_batch_size) {
            bail!("[data] backbone_batch_size must be in 1..=256");
        }
        if !model::BACKBONES.contains(&self.model.backbone.as_str()) {
            bail!(
                "[model] backbone `{}` is unknown (available: {})",
                self.model.backbone,
                model::BACKBONES.join(", ")
            );
        }
        must_exist(
            "[model] weights",
            &self.model.weights,
            &format!("scripts/fetch-weights.sh {}", self.model.backbone),
        )?;
        self.head_kind()?;
        if !self.model.freeze_backbone {
            bail!(
                "[model] freeze_backbone = false is not supported yet: this harness trains the head on \
                 cached features of a frozen backbone"
            );
        }
        if !(1..=100_000).contains(&self.train.epochs) || self.train.batch_size == 0 {
            bail!("[train] epochs must be in 1..=100000 and batch_size at least 1");
        }
        if !(self.train.learning_rate > 0.0 && self.train.learning_rate.is_finite()) {
            bail!(
                "[train] learning_rate must be a positive number, got {}",
                self.train.learning_rate
            );
        }
        if self.train.optimizer != "adam" {
            bail!(
                "[train] optimizer `{}` is unknown (available: adam)",
                self.train.optimizer
            );
        }
        self.callback_specs()?;
        Ok(())
    }

    /// The head.
    pub fn head_kind(&self) -> Result<HeadKind> {
        self.model
            .head
            .parse()
            .map_err(|e: String| anyhow::anyhow!("[model] head: {e}"))
    }

    /// The callbacks, parsed.
    pub fn callback_specs(&self) -> Result<Vec<CallbackSpec>> {
        self.callbacks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let at = format!("[[callbacks]] #{}", i + 1);
                let method: Method = c
                    .kind
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("{at} kind: {e}"))?;
                if let Some(first) = self.callbacks[..i].iter().position(|o| o.kind == c.kind) {
                    bail!(
                        "{at}: a second `{}` callback (the first is #{}): one callback per method \
                         per run, as their TensorBoard tags and CSV columns are named by method; \
                         use another run for another layer",
                        c.kind,
                        first + 1
                    );
                }
                let colormap: Colormap = c
                    .colormap
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("{at} colormap: {e}"))?;
                let style = OverlayStyle {
                    colormap,
                    alpha: c.alpha,
                    threshold: c.threshold,
                };
                style.validate().map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                if c.every == 0 {
                    bail!("{at} every must be at least 1");
                }
                if !(1..=1024).contains(&c.num_images) {
                    bail!("{at} num_images must be in 1..=1024");
                }
                if c.localization_images > 4096 {
                    bail!(
                        "{at} localization_images must be at most 4096 (their activation maps \
                         are kept in memory)"
                    );
                }
                let default_threshold = if method == Method::Cam { 0.2 } else { 0.15 };
                let localization_threshold = c.localization_threshold.unwrap_or(default_threshold);
                if !(0.0..=1.0).contains(&localization_threshold) {
                    bail!("{at} localization_threshold must be in [0, 1]");
                }
                let baseline: Baseline = c
                    .faithfulness_baseline
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("{at} faithfulness_baseline: {e}"))?;
                if !(1..=1000).contains(&c.faithfulness_steps) {
                    bail!("{at} faithfulness_steps must be in 1..=1000");
                }
                if c.faithfulness_images > c.num_images {
                    bail!(
                        "{at} faithfulness_images ({}) must be at most num_images ({})",
                        c.faithfulness_images,
                        c.num_images
                    );
                }
                let faithfulness = (c.faithfulness_images > 0).then_some(FaithfulnessSettings {
                    images: c.faithfulness_images,
                    baseline,
                    steps: c.faithfulness_steps,
                });
                Ok(CallbackSpec {
                    faithfulness,
                    method,
                    layer: c.layer.clone(),
                    num_images: c.num_images,
                    every: c.every,
                    style,
                    localization_images: c.localization_images,
                    localization_threshold,
                })
            })
            .collect()
    }
}

fn must_exist(key: &str, path: &Path, how: &str) -> Result<()> {
    if !path.exists() {
        bail!(
            "{key}: {} does not exist (get it with `{how}`, or fix the path)",
            path.display()
        );
    }
    Ok(())
}
