//! `train explain`: heatmaps for photos (or a tensor file) from a backbone + head.

pub mod boxes;
mod inputs;
mod outputs;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Tensor;
use callbacks::{
    explain_with, guided_backprop, guided_gradcam, Colormap, Method, Options, OverlayStyle, Target,
};
use clap::Args;
use model::{BackboneKind, Classifier, HeadKind};

use crate::data::images;
use crate::tensors::to_vec;
use inputs::load_inputs;
use outputs::Explained;

/// Arguments of `train explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Backbone architecture: vgg16, efficientnet-lite0, resnet18, resnet34, resnet50,
    /// resnet101 or resnet152.
    #[arg(long, default_value = "vgg16")]
    pub backbone: BackboneKind,
    /// Backbone weights (legacy or zip .pth, or .safetensors): torchvision's
    /// `vgg16-397923af.pth` (keys `features.N.*`) or a torchvision ResNet state_dict (`conv1`,
    /// `bn1`, `layer1.0.*`, …; `fc.*` is ignored), or the lukemelas EfficientNet-Lite0 file.
    #[arg(long)]
    pub weights: PathBuf,
    /// Head architecture: gap-linear (CAM model) or gap-dense (the seed's Grad-CAM model).
    #[arg(long, default_value = "gap-linear")]
    pub head: HeadKind,
    /// Head weights, PyTorch layout (`weight` [K, C], `bias` [K]; or `fc1.*`, `fc2.*` for
    /// gap-dense). A torchvision ResNet file given here is read as its own `fc` head.
    #[arg(long)]
    pub head_weights: PathBuf,
    /// cam, gradcam, gradcam++, layercam, hirescam, xgradcam, gradcam-elementwise, eigencam,
    /// eigengradcam, scorecam, ablationcam, random (a baseline, not an explanation),
    /// guided-backprop or guided-gradcam (raw [N, 3, H, W] gradients, not maps).
    #[arg(long, default_value = "gradcam")]
    pub method: ExplainMethod,
    /// The layer to explain (VGG16: block1_conv1 … block5_conv3, block1_pool … block5_pool;
    /// EfficientNet-Lite0: stem, block1 … block16, head; ResNet: conv1, maxpool, layer1 …
    /// layer4 or a block such as layer4.2). Default: the backbone's last convolution
    /// (block5_conv3 for VGG16, head for EfficientNet-Lite0, layer4 for a ResNet).
    #[arg(long)]
    pub layer: Option<String>,
    /// The first principal component of the method's weighted activations instead of their
    /// sum (pytorch-grad-cam's eigen_smooth).
    #[arg(long)]
    pub eigen_smooth: bool,
    /// Average the maps of 6 augmented copies: horizontal flip × brightness 0.9, 1, 1.1
    /// (pytorch-grad-cam's aug_smooth; 6x the cost).
    #[arg(long)]
    pub aug_smooth: bool,
    /// Seed of the `random` baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A photo, a directory of photos (sub-folders included), or a .safetensors file whose
    /// `input` tensor [N, 3, H, W] is already ImageNet-normalised.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the overlays and maps.safetensors (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Network input size for photos: N or HEIGHTxWIDTH (multiples of 32).
    #[arg(long, default_value = "224", value_parser = images::parse_size)]
    pub size: [usize; 2],
    /// Class to explain: `predicted`, a class index, or a class name from --classes (or from
    /// the head file's `classes` metadata, which `train` writes into the heads it exports).
    #[arg(long, default_value = "predicted")]
    pub target: String,
    /// The class names in logit order, comma-separated (default: the head file's `classes`
    /// metadata; for a single-logit head without it, cat,dog).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// jet, turbo or viridis.
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Weight of the photo in the overlay (0 = heat only, 1 = photo only).
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Hide heat below this fraction of each map's maximum (the CAM paper used 0.2).
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f32,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Score the maps against a boxes file (oxford_loc format: `images[]` with `file`,
    /// `head_box_xyxy` and optionally `body_polygon_xy`), matched by file name, beside the
    /// centre baseline; writes localization.json to --out-dir.
    #[arg(long)]
    pub boxes: Option<PathBuf>,
    /// With --boxes: also score the uniform baseline (a constant map: each score's chance
    /// level), beside the centre baseline.
    #[arg(long, requires = "boxes")]
    pub baselines: bool,
    /// Compute device: cpu (or cuda / cuda:N in a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// What `--method` names: a map method of the engine, or one of the guided ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainMethod {
    /// A method whose result is a map [N, H, W].
    Map(Method),
    /// Guided backpropagation: ∂y/∂input with guided ReLUs [N, 3, H, W].
    GuidedBackprop,
    /// Guided backpropagation times the normalised Grad-CAM map.
    GuidedGradCam,
}

impl ExplainMethod {
    /// Whether the method gives guided gradients [N, 3, H, W] rather than maps.
    pub fn is_guided(self) -> bool {
        !matches!(self, Self::Map(_))
    }
}

impl std::str::FromStr for ExplainMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "guided-backprop" | "guidedbackprop" => Ok(Self::GuidedBackprop),
            "guided-gradcam" | "guidedgradcam" => Ok(Self::GuidedGradCam),
            _ => s
                .parse()
                .map(Self::Map)
                .map_err(|e| format!("{e}, guided-backprop, guided-gradcam")),
        }
    }
}

impl std::fmt::Display for ExplainMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Map(m) => write!(f, "{m}"),
            Self::GuidedBackprop => f.write_str("guided-backprop"),
            Self::GuidedGradCam => f.write_str("guided-gradcam"),
        }
    }
}

/// `--target`: `predicted`, a class index, or one of `classes`.
fn parse_target(text: &str, classes: &[String]) -> Result<Target> {
    if text == "predicted" {
        return Ok(Target::Predicted);
    }
    if let Some(index) = classes.iter().position(|c| c == text) {
        return Ok(Target::Class(index));
    }
    match text.parse::<usize>() {
        Ok(index) => Ok(Target::Class(index)),
        Err(_) => bail!(
            "--target {text}: expected `predicted`, a class index or a class name ({})",
            if classes.is_empty() {
                "no class names known: pass --classes".to_string()
            } else {
                classes.join(", ")
            }
        ),
    }
}

/// The class names: `--classes`, else the head file's `classes` metadata, else cat,dog for a
/// single logit (empty when unknown).
fn class_names(args: &ExplainArgs, num_classes: usize) -> Result<Vec<String>> {
    let (names, source) = match &args.classes {
        Some(names) => (names.clone(), "--classes".to_string()),
        None => {
            let metadata = crate::tensors::read_metadata(&args.head_weights).unwrap_or_default();
            let source = format!(
                "--head-weights {} (its `classes`)",
                args.head_weights.display()
            );
            match metadata.get("classes") {
                Some(list) => (list.split(',').map(str::to_string).collect(), source),
                None if num_classes == 1 => (vec!["cat".into(), "dog".into()], source),
                None => (Vec::new(), source),
            }
        }
    };
    let expected = num_classes.max(2);
    if !names.is_empty() && names.len() != expected {
        bail!(
            "{source}: {} names for a head with {expected} classes",
            names.len()
        );
    }
    Ok(names)
}

/// Run `train explain`.
pub fn run(args: &ExplainArgs) -> Result<()> {
    let style = OverlayStyle {
        colormap: args.colormap,
        alpha: args.alpha,
        threshold: args.threshold,
    };
    style.validate().map_err(anyhow::Error::msg)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = model::device_from_name(&args.device).map_err(anyhow::Error::msg)?;
    for (flag, path) in [
        ("--weights", &args.weights),
        ("--head-weights", &args.head_weights),
    ] {
        if !path.exists() {
            let hint = match flag {
                "--weights" => format!("get it with `scripts/fetch-weights.sh {}`", args.backbone),
                _ => "a run's head.safetensors, in its run directory".into(),
            };
            bail!("{flag} {}: no such file ({hint})", path.display());
        }
    }
    let model = super::classifier::load_classifier(
        args.backbone,
        &args.weights,
        args.head,
        &args.head_weights,
        ["--weights", "--head-weights"],
        &device,
    )?;
    // Default: the backbone's last convolution, the layer a gap-linear head pools
    // (block5_conv3 for VGG16, head for EfficientNet-Lite0), whatever the head.
    let layer = match &args.layer {
        Some(layer) => layer.clone(),
        None => {
            let last_conv = model.backbone.kind().head_input(HeadKind::GapLinear);
            model.layer_name(last_conv).to_string()
        }
    };
    model.explainable_layer(&layer).context("--layer")?;
    let class_names = class_names(args, model.head.num_classes())?;
    let target = parse_target(&args.target, &class_names)?;
    let options = Options {
        target,
        eigen_smooth: args.eigen_smooth,
        aug_smooth: args.aug_smooth,
        seed: args.seed,
    };
    let guided = args.method.is_guided();
    if guided && args.boxes.is_some() {
        bail!("--boxes scores maps; {} gives gradients", args.method);
    }
    if guided && (args.eigen_smooth || args.aug_smooth) {
        bail!(
            "--eigen-smooth and --aug-smooth apply to map methods, not {}",
            args.method
        );
    }
    let inputs = load_inputs(args, &device)?;
    // The boxes file is read and matched before any map is computed.
    let annotations = match &args.boxes {
        Some(file) => Some(boxes::annotations_for(file, &inputs.paths)?),
        None => None,
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create --out-dir {}", args.out_dir.display()))?;
    // A ResNet is explained in float64 (see `Classifier::wants_float64`).
    let (model, batch) = match model.wants_float64() {
        true => (
            model::in_float64(model),
            inputs.batch.clone().cast(burn::tensor::FloatDType::F64),
        ),
        false => (model, inputs.batch.clone()),
    };
    let explained = explain_all(args, &model, &layer, options, &batch)?;
    outputs::write(
        args,
        &inputs,
        explained,
        &style,
        annotations.as_ref(),
        &class_names,
    )
}

/// Explain `batch` a `--batch-size` at a time with `--method` at `layer`.
fn explain_all(
    args: &ExplainArgs,
    model: &Classifier,
    layer: &str,
    options: Options,
    batch: &Tensor<4>,
) -> Result<Explained> {
    let n = batch.dims()[0];
    let (mut maps, mut raw, mut logits, mut classes) = (vec![], vec![], vec![], vec![]);
    let mut raw_shape = [0, 0];
    let mut num_logits = 0;
    for start in (0..n).step_by(args.batch_size) {
        let len = args.batch_size.min(n - start);
        let batch = batch.clone().narrow(0, start, len);
        let (values, batch_logits, batch_classes) = match args.method {
            ExplainMethod::Map(method) => {
                let out = explain_with(model, batch, layer, method, options)?;
                let [_, h, w] = out.raw.dims();
                raw_shape = [h, w];
                raw.extend(to_vec(out.raw)?);
                (out.maps.reshape([0, 0, -1]), out.logits, out.classes)
            }
            guided => {
                let out = match guided {
                    ExplainMethod::GuidedBackprop => guided_backprop(model, batch, options.target)?,
                    _ => guided_gradcam(model, batch, layer, options.target)?,
                };
                (out.values.reshape([0, 0, -1]), out.logits, out.classes)
            }
        };
        num_logits = batch_logits.dims()[1];
        maps.extend(to_vec(values)?);
        logits.extend(to_vec(batch_logits)?);
        classes.extend(to_vec(batch_classes.float())?);
    }
    Ok(Explained {
        maps,
        raw,
        raw_shape,
        logits,
        num_logits,
        classes,
    })
}
