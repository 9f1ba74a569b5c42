//! `train bench [--quick] [--json FILE]`: the performance figures of issue 8, measured in one
//! run on random weights (they cost what real ones cost). Prints a table and writes JSON; each
//! speed is also given as a ratio against a baseline measured in the same run (burn's own ops)
//! and against the PyTorch CPU reference in `../shared/bench/pytorch-cpu-reference.json` when
//! that file is there (PyTorch is not installed here; it was measured on this machine kind).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Distribution, Tensor};
use callbacks::{explain_activations, Method, Target};
use model::{Backbone, Classifier, EfficientNetLite0, Head, HeadKind, Vgg16};

use crate::head_training::HeadTraining;

/// Arguments of `train bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Fewer repetitions and smaller batches (CI); figures are noisier.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The PyTorch reference (default: ../shared/bench/pytorch-cpu-reference.json if present).
    #[arg(long)]
    pub reference: Option<PathBuf>,
}

/// Seconds per call of `f`, best of `repeats` after one warm-up call.
fn best_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Peak resident set size of this process (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The measured figures: (key, value, unit), in order.
struct Figures(Vec<(String, f64, &'static str)>);

impl Figures {
    fn add(&mut self, key: &str, value: f64, unit: &'static str) {
        if value != 0.0 && value.abs() < 1e-2 {
            println!("{key:<52} {value:>12.3e} {unit}");
        } else {
            println!("{key:<52} {value:>12.4} {unit}");
        }
        self.0.push((key.to_string(), value, unit));
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|f| f.0 == key).map(|f| f.1)
    }
}

/// Run `train bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let device = Device::flex();
    let repeats = if args.quick { 1 } else { 3 };
    let mut figures = Figures(Vec::new());
    println!("{:<52} {:>12} unit", "figure", "value");

    // VGG16 to block5_conv3 at 224x224, batch 8: the fast path vs burn's ops.
    device.seed(0);
    let vgg = Vgg16::random(1, &device);
    let conv5_3 = model::vgg16::layer_index("block5_conv3").context("layer table")?;
    let batch = Tensor::<4>::random([8, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let fast_s = best_seconds(repeats, || {
        let _ = crate::tensors::to_vec(vgg.run(batch.clone(), 0, conv5_3));
    });
    let burn_s = best_seconds(if args.quick { 1 } else { 2 }, || {
        let _ = crate::tensors::to_vec(vgg.run_burn(batch.clone(), 0, conv5_3));
    });
    let fast = crate::tensors::to_vec(vgg.run(batch.clone(), 0, conv5_3))?;
    let reference = crate::tensors::to_vec(vgg.run_burn(batch.clone(), 0, conv5_3))?;
    let scale = reference
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    let max_err = fast
        .iter()
        .zip(&reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    let vgg_ips = 8.0 / fast_s;
    figures.add("vgg16_block5_conv3_224_b8_img_per_s", vgg_ips, "img/s");
    figures.add(
        "vgg16_block5_conv3_224_b8_burn_img_per_s",
        8.0 / burn_s,
        "img/s",
    );
    figures.add("vgg16_block5_conv3_224_b8_vs_burn", burn_s / fast_s, "x");
    // 15.35 GMAC per image up to block5_conv3 (the direct convolution's count).
    figures.add(
        "vgg16_block5_conv3_224_b8_gflop_per_s",
        vgg_ips * 30.7,
        "GFLOP/s (direct-conv count)",
    );
    figures.add(
        "vgg16_fast_vs_burn_max_error_rel_to_max",
        max_err as f64,
        "",
    );

    // EfficientNet-Lite0, 224, batch 32 (8 in quick mode): our depthwise/1x1 kernels, and
    // burn's conv2d for every conv in the same run.
    let effnet = EfficientNetLite0::random(&device);
    let b = if args.quick { 8 } else { 32 };
    let x = Tensor::<4>::random([b, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let s = best_seconds(repeats, || {
        let _ = crate::tensors::to_vec(effnet.run(x.clone(), 0, 17));
    });
    let s_burn = best_seconds(repeats, || {
        let _ = crate::tensors::to_vec(effnet.run_with_burn_ops(x.clone(), 0, 17));
    });
    figures.add(
        &format!("effnet_lite0_224_b{b}_img_per_s"),
        b as f64 / s,
        "img/s",
    );
    figures.add(
        &format!("effnet_lite0_224_b{b}_burn_img_per_s"),
        b as f64 / s_burn,
        "img/s",
    );
    figures.add(&format!("effnet_lite0_224_b{b}_vs_burn"), s_burn / s, "x");

    // CAM and Grad-CAM for 16 validation images from cached activations (the callbacks' work:
    // maps, ReLU, normalisation, resize to 224).
    let classifier = Classifier {
        backbone: Backbone::Vgg16(vgg),
        head: Head::new(HeadKind::GapLinear, 512, 1, &device),
    };
    let acts = Tensor::<4>::random([16, 512, 14, 14], Distribution::Uniform(0.0, 2.0), &device);
    for method in [Method::Cam, Method::GradCam] {
        let s = best_seconds(repeats, || {
            if let Ok(e) = explain_activations(
                &classifier,
                "block5_conv3",
                acts.clone(),
                [224, 224],
                method,
                Target::Predicted,
            ) {
                let _ = crate::tensors::to_vec(e.maps);
            }
        });
        figures.add(
            &format!("{method}_16_images_ms_per_img"),
            s / 16.0 * 1e3,
            "ms/img",
        );
    }

    // Head epochs on cached pooled features of 2,000 images (batch 32), both heads.
    let n = 2000;
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    for kind in [HeadKind::GapLinear, HeadKind::GapDense] {
        let features = Tensor::<2>::random([n, 512], Distribution::Uniform(0.0, 1.0), &device);
        let mut head = HeadTraining::new(kind, 512, 1, 1e-3, 0, &device);
        let mut epoch = 0;
        let s = best_seconds(repeats, || {
            epoch += 1;
            let _ = head.train_epoch(&features, &labels, 32, 0, epoch);
        });
        let name = kind.name().replace('-', "_");
        figures.add(&format!("head_epoch_{name}_2000_images_s"), s, "s");
    }

    // The seed run (2,000 train + 1,000 val images at 224, 20 epochs, CAM on 16 images),
    // estimated from the parts: decode + resize a 500x375 JPEG, one backbone pass to
    // block5_pool per image, 20 head epochs and 20 callback rounds.
    let photo = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut jpeg = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    let jpeg = jpeg.into_inner();
    let decode_s = best_seconds(repeats * 5, || {
        if let Ok(img) = image::load_from_memory(&jpeg) {
            let _ = crate::images::resize(&img.to_rgb8(), [224, 224]);
        }
    });
    figures.add("decode_resize_500x375_jpeg_ms", decode_s * 1e3, "ms/img");
    let head_s = figures
        .get("head_epoch_gap_linear_2000_images_s")
        .unwrap_or(0.0);
    let cam_ms = figures.get("cam_16_images_ms_per_img").unwrap_or(0.0);
    // block5_pool costs the same as block5_conv3 plus one pooling.
    let estimate =
        3000.0 * (decode_s / 2.0 + 1.0 / vgg_ips) + 20.0 * (head_s * 1.5 + 16.0 * cam_ms / 1e3);
    figures.add(
        "seed_run_estimate_s",
        estimate,
        "s (2 cores: decode on both, then the backbone)",
    );
    if let Some(mb) = peak_rss_mb() {
        figures.add("bench_peak_rss_mb", mb, "MB");
    }

    for (key, value) in reference_ratios(args, &figures)? {
        println!("{key:<52} {value:>12.4} x (against a stored figure of another machine)");
        figures.0.push((key.to_string(), value, "x"));
    }
    if let Some(path) = &args.json {
        write_json(path, args.quick, &figures)?;
    }
    Ok(())
}

/// Ratios of our figures to the stored PyTorch reference file (`--reference`, or
/// `$SHARED_DIR/bench/pytorch-cpu-reference.json`): measured on another machine, so only an
/// indication; none when the file is missing.
fn reference_ratios(args: &BenchArgs, figures: &Figures) -> Result<Vec<(&'static str, f64)>> {
    let reference_path = args.reference.clone().unwrap_or_else(|| {
        std::env::var_os("SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared"))
            .join("bench/pytorch-cpu-reference.json")
    });
    let mut ratios = Vec::new();
    match std::fs::read_to_string(&reference_path) {
        Ok(text) => {
            let reference: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}", reference_path.display()))?;
            let get = |k: &str| reference.get(k).and_then(|v| v.as_f64());
            let ours = |k: &str| figures.get(k);
            if let (Some(t), Some(o)) = (
                get("vgg16_block5_conv3_224_b8_img_per_s"),
                ours("vgg16_block5_conv3_224_b8_img_per_s"),
            ) {
                ratios.push(("vgg16_block5_conv3_224_b8_vs_pytorch", o / t));
            }
            if let (Some(t), Some(o)) = (
                get("effnet_lite0_224_b32_img_per_s"),
                ours("effnet_lite0_224_b32_img_per_s"),
            ) {
                ratios.push(("effnet_lite0_224_b32_vs_pytorch", o / t));
            }
            if let (Some(t), Some(o)) = (
                get("pytorch_grad_cam_vgg16_224_s_per_img"),
                ours("gradcam_16_images_ms_per_img"),
            ) {
                ratios.push(("gradcam_vs_pytorch_grad_cam_speedup", t * 1e3 / o));
            }
        }
        Err(_) => println!(
            "(no PyTorch reference at {}: ratios against it skipped)",
            reference_path.display()
        ),
    }

    Ok(ratios)
}

/// Write the figures as JSON (with the date, thread count and mode).
fn write_json(path: &std::path::Path, quick: bool, figures: &Figures) -> Result<()> {
    let mut map = serde_json::Map::new();
    map.insert("quick".into(), quick.into());
    map.insert("threads".into(), rayon::current_num_threads().into());
    map.insert(
        "date".into(),
        chrono::Local::now().format("%Y-%m-%d").to_string().into(),
    );
    for (key, value, _) in &figures.0 {
        map.insert(key.clone(), (*value).into());
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(map))?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
