//! `train explain`: heatmaps for photos (or a tensor file) from a backbone + head.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use callbacks::{
    explain_with, guided_backprop, guided_beside_photo, guided_gradcam, overlay, Colormap, Method,
    Options, OverlayStyle, Target,
};
use clap::Args;
use image::RgbImage;
use model::{BackboneKind, Classifier, HeadKind, WeightFile};

use crate::data::images;
use crate::tensors::{to_vec, write_safetensors};

/// Arguments of `train explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Backbone architecture: vgg16 or efficientnet-lite0.
    #[arg(long, default_value = "vgg16")]
    pub backbone: BackboneKind,
    /// Backbone weights: torchvision `vgg16-397923af.pth` (legacy or zip .pth) or .safetensors
    /// with the keys `features.N.weight|bias`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Head architecture: gap-linear (CAM model) or gap-dense (the seed's Grad-CAM model).
    #[arg(long, default_value = "gap-linear")]
    pub head: HeadKind,
    /// Head weights, PyTorch layout safetensors (`weight`, `bias`; or `fc1.*`, `fc2.*`).
    #[arg(long)]
    pub head_weights: PathBuf,
    /// cam, gradcam, gradcam++, layercam, hirescam, xgradcam, gradcam-elementwise, eigencam,
    /// eigengradcam, scorecam, ablationcam, random (a baseline, not an explanation),
    /// guided-backprop or guided-gradcam (raw [N, 3, H, W] gradients, not maps).
    #[arg(long, default_value = "gradcam")]
    pub method: ExplainMethod,
    /// The layer to explain (VGG16: block1_conv1 … block5_conv3, block1_pool … block5_pool;
    /// EfficientNet-Lite0: stem, block1 … block16, head). Default: the backbone's last
    /// convolution (block5_conv3 for VGG16, head for EfficientNet-Lite0).
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
    /// Class to explain: `predicted` or a class index (for a single-logit head: 0 = cat, 1 = dog).
    #[arg(long, default_value = "predicted", value_parser = parse_target)]
    pub target: Target,
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

/// The baselines scored beside a method: the centre one always, the uniform one on request.
pub fn localization_baselines(
    uniform: bool,
) -> Vec<callbacks::scores::localization_report::Baseline> {
    use callbacks::scores::localization_report::Baseline;
    match uniform {
        true => vec![Baseline::Centre, Baseline::Uniform],
        false => vec![Baseline::Centre],
    }
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

fn parse_target(text: &str) -> Result<Target, String> {
    if text == "predicted" {
        return Ok(Target::Predicted);
    }
    text.parse::<usize>()
        .map(Target::Class)
        .map_err(|_| format!("bad target `{text}`: expected `predicted` or a class index"))
}

/// The images to explain, already normalised, with their photos and output names.
struct Inputs {
    batch: Tensor<4>,
    photos: Vec<RgbImage>,
    names: Vec<String>,
    /// Each photo's file (none for a tensor file's images).
    paths: Vec<Option<PathBuf>>,
}

fn load_inputs(args: &ExplainArgs, device: &Device) -> Result<Inputs> {
    let input = &args.input;
    let is_tensor_file = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_tensor_file {
        let file = WeightFile::open(input).with_context(|| "--input")?;
        let shape = file.shape("input").with_context(|| "--input")?;
        let [n, c, h, w] = shape[..] else {
            bail!(
                "--input {}: `input` must be [N, 3, H, W], is {shape:?}",
                input.display()
            );
        };
        if c != 3 {
            bail!(
                "--input {}: `input` must have 3 channels, has {c}",
                input.display()
            );
        }
        let values = file.tensor("input", &shape)?;
        let batch = Tensor::<4>::from_data(TensorData::new(values, [n, 3, h, w]), device);
        let photos = images::from_tensor(batch.clone())?;
        let names = (0..n).map(|i| format!("image_{i:03}")).collect();
        let paths = vec![None; n];
        return Ok(Inputs {
            batch,
            photos,
            names,
            paths,
        });
    }
    let paths = if input.is_dir() {
        // Not the output directory, when it lies inside the input (a second run would
        // explain the first one's overlays).
        let out = args.out_dir.canonicalize().ok();
        let mut paths = images::photos_under(input)?;
        paths.retain(|p| match (&out, p.canonicalize()) {
            (Some(out), Ok(p)) => !p.starts_with(out),
            _ => true,
        });
        paths
    } else if input.is_file() {
        vec![input.clone()]
    } else {
        bail!("--input {}: no such file or directory", input.display());
    };
    let mut photos = Vec::new();
    let mut names = Vec::new();
    let mut kept = Vec::new();
    for path in &paths {
        match images::read_rgb(path) {
            Ok(photo) => {
                photos.push(images::resize(&photo, args.size));
                names.push(output_name(input, path));
                kept.push(Some(path.clone()));
            }
            // One unreadable photo in a directory should not stop the rest.
            Err(e) if paths.len() > 1 => eprintln!("warning: skipping {}: {e:#}", path.display()),
            Err(e) => return Err(e),
        }
    }
    if photos.is_empty() {
        bail!("--input {}: no readable photos", input.display());
    }
    let mut seen = std::collections::HashMap::new();
    for (name, path) in names.iter().zip(&kept) {
        if let Some(earlier) = seen.insert(name.clone(), path) {
            bail!(
                "--input {}: {} and {} would both be written as {name}.png (rename one)",
                input.display(),
                display(earlier),
                display(path)
            );
        }
    }
    let batch = images::to_tensor(&photos, device);
    Ok(Inputs {
        batch,
        photos,
        names,
        paths: kept,
    })
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// A photo's output name: its path under `--input` without the extension, folders joined by
/// `_` (`cat/Abyssinian_12.jpg` → `cat_Abyssinian_12`); a single photo's stem.
fn output_name(input: &Path, path: &Path) -> String {
    match path.strip_prefix(input) {
        Ok(relative) if input.is_dir() => relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("_"),
        _ => stem(path),
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// A trained classifier from its files: the backbone's weights and the head exported by a run
/// (`head.safetensors`, PyTorch layout). Used by `train explain` and `train sanity`; `keys`
/// names where the two paths came from (flags or config keys), for the error messages.
pub fn load_classifier(
    backbone: BackboneKind,
    weights: &Path,
    head: HeadKind,
    head_weights: &Path,
    keys: [&str; 2],
    device: &Device,
) -> Result<Classifier> {
    let weight_file = WeightFile::open(weights).with_context(|| keys[0].to_string())?;
    let head_file = WeightFile::open(head_weights).with_context(|| keys[1].to_string())?;
    Classifier::load(backbone, &weight_file, head, &head_file, device).with_context(|| {
        format!(
            "{} {} with {} {} ({backbone}, {head} head)",
            keys[0],
            weights.display(),
            keys[1],
            head_weights.display()
        )
    })
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
    let model = load_classifier(
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
    let options = Options {
        target: args.target,
        eigen_smooth: args.eigen_smooth,
        aug_smooth: args.aug_smooth,
        seed: args.seed,
    };
    let guided = !matches!(args.method, ExplainMethod::Map(_));
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
        Some(boxes) => Some(crate::commands::explain_boxes::annotations_for(
            boxes,
            &inputs.paths,
        )?),
        None => None,
    };
    let [n, _, height, width] = inputs.batch.dims();
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create --out-dir {}", args.out_dir.display()))?;

    let (mut maps, mut raw, mut logits, mut classes) = (vec![], vec![], vec![], vec![]);
    let mut raw_shape = [0, 0];
    let mut num_logits = 0;
    for start in (0..n).step_by(args.batch_size) {
        let len = args.batch_size.min(n - start);
        let batch = inputs.batch.clone().narrow(0, start, len);
        let (values, batch_logits, batch_classes) = match args.method {
            ExplainMethod::Map(method) => {
                let out = explain_with(&model, batch, &layer, method, options)?;
                let [_, h, w] = out.raw.dims();
                raw_shape = [h, w];
                raw.extend(to_vec(out.raw)?);
                (out.maps.reshape([0, 0, -1]), out.logits, out.classes)
            }
            guided => {
                let out = match guided {
                    ExplainMethod::GuidedBackprop => guided_backprop(&model, batch, args.target)?,
                    _ => guided_gradcam(&model, batch, &layer, args.target)?,
                };
                (out.values.reshape([0, 0, -1]), out.logits, out.classes)
            }
        };
        num_logits = batch_logits.dims()[1];
        maps.extend(to_vec(values)?);
        logits.extend(to_vec(batch_logits)?);
        classes.extend(to_vec(batch_classes.float())?);
    }

    let plane = height * width * if guided { 3 } else { 1 };
    println!(
        "{:<28} {:>10} {:>9}  explained",
        "image", "logit(s)", "predicted"
    );
    for (i, (name, photo)) in inputs.names.iter().zip(&inputs.photos).enumerate() {
        let values = &maps[i * plane..(i + 1) * plane];
        let picture = match guided {
            true => guided_beside_photo(values, photo),
            false => overlay(values, photo, &style),
        };
        let path = args.out_dir.join(format!("{name}.png"));
        picture
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let row = &logits[i * num_logits..(i + 1) * num_logits];
        let (predicted, _) = callbacks::scores::probabilities::prediction(row);
        let shown: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "{name:<28} {:>10} {:>9}  {} ({})",
            shown.join(","),
            class_name(predicted, num_logits),
            class_name(classes[i] as usize, num_logits),
            args.method
        );
    }
    let maps_path = args.out_dir.join("maps.safetensors");
    if let Some(annotations) = &annotations {
        let method = args.method.to_string();
        let plane = [height, width];
        let out = crate::commands::explain_boxes::score(
            annotations,
            &method,
            &maps,
            plane,
            &inputs.paths,
            &localization_baselines(args.baselines),
            &args.out_dir,
        )?;
        println!("wrote {}", out.display());
    }
    let mut tensors = vec![
        ("logits".to_string(), vec![n, num_logits], logits),
        ("classes".to_string(), vec![n], classes),
    ];
    match guided {
        true => tensors.push(("maps".to_string(), vec![n, 3, height, width], maps)),
        false => {
            tensors.push(("maps".to_string(), vec![n, height, width], maps));
            tensors.push(("raw".to_string(), vec![n, raw_shape[0], raw_shape[1]], raw));
        }
    }
    write_safetensors(&maps_path, &tensors, Default::default())?;
    println!("wrote {n} overlays and {}", maps_path.display());
    Ok(())
}

fn class_name(class: usize, num_logits: usize) -> String {
    match (num_logits, class) {
        (1, 0) => "cat".into(),
        (1, _) => "dog".into(),
        _ => class.to_string(),
    }
}
