//! One `[[callbacks]]` entry of the config: the method, its layer and images, the overlay's
//! style and the scores computed each epoch, with their defaults.

use callbacks::scores::faithfulness::Baseline;
use callbacks::{Colormap, FaithfulnessSettings, Method, Options, OverlayStyle, Target};
use serde::{Deserialize, Serialize};

use super::parsed;

/// One `[[callbacks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// cam | gradcam | gradcam++ | layercam | hirescam | xgradcam | gradcam-elementwise |
    /// eigencam | eigengradcam | scorecam | ablationcam | random (a baseline).
    #[serde(with = "parsed")]
    pub kind: Method,
    /// The layer to explain; absent: the backbone's last convolution, the layer a gap-linear
    /// head pools (`block5_conv3` for VGG16, `head` for EfficientNet-Lite0).
    #[serde(default)]
    pub layer: String,
    /// How many validation images (balanced over classes).
    #[serde(default = "default_num_images")]
    pub num_images: usize,
    /// Every this many epochs (default 1; 5 for Score-CAM, which runs the whole network once per
    /// channel per image).
    #[serde(default)]
    pub every: Option<usize>,
    /// The first principal component of the weighted activations instead of their sum.
    #[serde(default)]
    pub eigen_smooth: bool,
    /// Average the maps of 6 augmented copies of each image (flip × brightness 0.9, 1, 1.1).
    #[serde(default)]
    pub aug_smooth: bool,
    /// jet | turbo | viridis.
    #[serde(default = "default_colormap", with = "parsed")]
    pub colormap: Colormap,
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
    #[serde(default = "default_baseline", with = "parsed")]
    pub faithfulness_baseline: Baseline,
    /// Deletion/insertion steps (20 as in RISE).
    #[serde(default = "default_faithfulness_steps")]
    pub faithfulness_steps: usize,
    /// How many of the callback's images are scored with ROAD each epoch (MoRF, LeRF and
    /// combined over percentiles 10…90, noise-free linear imputation); 0 = off. Each image
    /// costs 18 imputations and 19 backbone passes per epoch.
    #[serde(default)]
    pub road_images: usize,
}

impl CallbackConfig {
    /// The overlay's colours.
    pub fn style(&self) -> OverlayStyle {
        OverlayStyle {
            colormap: self.colormap,
            alpha: self.alpha,
            threshold: self.threshold,
        }
    }

    /// The box-IoU region threshold: as configured, or 0.2 for CAM (the CAM paper) and 0.15
    /// for the others (the Grad-CAM paper).
    pub fn localization_threshold(&self) -> f32 {
        let default = if self.kind == Method::Cam { 0.2 } else { 0.15 };
        self.localization_threshold.unwrap_or(default)
    }

    /// Every this many epochs: as configured, or 5 for Score-CAM and 1 for the others.
    pub fn every(&self) -> usize {
        let default = if self.kind == Method::ScoreCam { 5 } else { 1 };
        self.every.unwrap_or(default)
    }

    /// The engine's options for this callback (`seed`: the run's, for the random baseline).
    pub fn options(&self, seed: u64) -> Options {
        Options {
            target: Target::Predicted,
            eigen_smooth: self.eigen_smooth,
            aug_smooth: self.aug_smooth,
            seed,
        }
    }

    /// Whether the callback needs the images themselves, not only cached activations
    /// (Score-CAM and `aug_smooth` run the whole network on changed copies).
    pub fn needs_images(&self) -> bool {
        self.aug_smooth || self.kind.implementation().needs_images()
    }

    /// Faithfulness scoring, when `faithfulness_images` > 0.
    pub fn faithfulness(&self) -> Option<FaithfulnessSettings> {
        (self.faithfulness_images > 0).then_some(FaithfulnessSettings {
            images: self.faithfulness_images,
            baseline: self.faithfulness_baseline,
            steps: self.faithfulness_steps,
        })
    }
}

fn default_num_images() -> usize {
    16
}

fn default_colormap() -> Colormap {
    Colormap::Jet
}

fn default_alpha() -> f32 {
    0.5
}

fn default_baseline() -> Baseline {
    Baseline::Zeros
}

fn default_faithfulness_steps() -> usize {
    20
}

fn default_localization_images() -> usize {
    256
}
