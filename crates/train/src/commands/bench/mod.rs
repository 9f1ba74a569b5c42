//! `train bench [--quick] [--json FILE] [--pytorch PYTHON]`: the performance figures, measured
//! in one run on random weights (they cost what real ones cost). Prints a table and writes JSON
//! with the machine's description. Every ratio is between figures of this run:
//! - against burn's own ops (`*_vs_burn`), always;
//! - against PyTorch (`*_vs_pytorch`) only with `--pytorch PYTHON`, which runs
//!   `scripts/bench_pytorch.py` with that interpreter, interleaved with ours (ours, theirs,
//!   ours, theirs), the same layers, batch, size and dtype, the same statistic.
//!
//! The bench is also a check: a figure whose computation fails is an error, and so is a fast
//! path that deviates from burn's ops by more than 1e-4 (relative to the largest value).

mod backbones;
mod machine;
mod methods;
mod pytorch;
mod resnet;

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Distribution, Tensor};
use callbacks::{explain_activations, Method, Target};
use model::{Backbone, Classifier, EfficientNetLite0, Head, HeadKind, Vgg16};

use crate::features::cut::CutActivations;
use crate::learn::head::HeadTraining;
use crate::learn::top::TopTraining;
use crate::tensors::to_vec;
use pytorch::PyTorch;

/// Arguments of `train bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Fewer repetitions and smaller batches (CI); figures are noisier.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A Python with torch (scripts/setup-torch-venv.sh makes one): time PyTorch on the same
    /// figures in this run and give the ratios.
    #[arg(long)]
    pub pytorch: Option<PathBuf>,
}

/// The largest deviation a fast path may have from burn's ops (relative to the largest value).
const MAX_DEVIATION: f32 = 1e-4;

/// Seconds per call of `f`, best of `repeats` after one warm-up call; `f`'s errors are the
/// bench's.
fn best_seconds(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Largest |a − b| relative to the largest |b|; NaN when any difference is NaN (a NaN output
/// must fail the check, and `f32::max` would skip it).
fn deviation(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d.is_nan() {
            return f32::NAN;
        }
        worst = worst.max(d);
    }
    worst / scale
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
}

/// Our images per second for `key` and, when measured, PyTorch's and the ratio.
fn compared(figures: &mut Figures, key: &str, batch: usize, ours: f64, theirs: Option<f64>) {
    figures.add(&format!("{key}_img_per_s"), batch as f64 / ours, "img/s");
    if let Some(theirs) = theirs {
        figures.add(
            &format!("{key}_pytorch_img_per_s"),
            batch as f64 / theirs,
            "img/s",
        );
        figures.add(&format!("{key}_vs_pytorch"), theirs / ours, "x (same run)");
    }
}

/// One figure compared with PyTorch: ours and theirs timed in turns, `rounds` times each; each
/// side keeps its best. Returns (our seconds, PyTorch's seconds if asked).
fn interleaved(
    rounds: usize,
    mut ours: impl FnMut() -> Result<f64>,
    theirs: Option<&dyn Fn() -> Result<pytorch::TorchFigure>>,
    torch_seen: &mut Option<pytorch::TorchFigure>,
) -> Result<(f64, Option<f64>)> {
    let (mut best_ours, mut best_theirs) = (f64::INFINITY, None::<f64>);
    for _ in 0..rounds.max(1) {
        best_ours = best_ours.min(ours()?);
        if let Some(theirs) = theirs {
            let figure = theirs()?;
            best_theirs = Some(best_theirs.map_or(figure.seconds, |b| b.min(figure.seconds)));
            *torch_seen = Some(figure);
        }
    }
    Ok((best_ours, best_theirs))
}

/// What every part of the bench shares: the mode, the device, PyTorch when asked, and the
/// figures so far.
struct Bench {
    quick: bool,
    repeats: usize,
    rounds: usize,
    threads: usize,
    device: Device,
    torch: Option<PyTorch>,
    /// PyTorch's last measurement (its version and settings go into the JSON).
    torch_seen: Option<pytorch::TorchFigure>,
    figures: Figures,
}

impl Bench {
    /// EfficientNet-Lite0's batch: 32, or 8 in quick mode.
    fn effnet_batch(&self) -> usize {
        if self.quick {
            8
        } else {
            32
        }
    }

    /// Our seconds, timed by `ours`, and with `--pytorch` PyTorch's for the script's `figure` at
    /// `batch`, timed in turns (see [`interleaved`]).
    fn against_pytorch(
        &mut self,
        figure: &str,
        batch: usize,
        ours: impl FnMut() -> Result<f64>,
    ) -> Result<(f64, Option<f64>)> {
        let (repeats, threads) = (self.repeats, self.threads);
        let theirs = self
            .torch
            .as_ref()
            .map(|t| move || t.time(figure, batch, repeats, threads));
        interleaved(
            self.rounds,
            ours,
            theirs
                .as_ref()
                .map(|f| f as &dyn Fn() -> Result<pytorch::TorchFigure>),
            &mut self.torch_seen,
        )
    }
}

/// Run `train bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let device = Device::flex();
    let torch = args.pytorch.as_deref().map(PyTorch::new).transpose()?;
    let machine = machine::describe();
    let mut bench = Bench {
        quick: args.quick,
        repeats: if args.quick { 1 } else { 3 },
        rounds: if args.quick { 1 } else { 2 },
        threads: rayon::current_num_threads(),
        device,
        torch,
        torch_seen: None,
        figures: Figures(Vec::new()),
    };
    println!("machine: {}", machine::summary(&machine));
    println!("{:<52} {:>12} unit", "figure", "value");

    let (vgg, vgg_deviation) = backbones::vgg16(&mut bench)?;
    let effnet_deviation = backbones::effnet(&mut bench)?;
    top_step(&mut bench)?;
    let resnet_deviation = resnet::resnet50(&mut bench)?;
    resnet::resnet50_top_step(&mut bench)?;
    cams_from_activations(&mut bench, vgg)?;
    // Every explanation method from images, on the quickstart's network and EfficientNet.
    methods::method_costs(&mut bench.figures, args.quick, &bench.device)?;
    head_epochs(&mut bench)?;
    decode_and_resize(&mut bench)?;
    if let Some(mb) = peak_rss_mb() {
        bench.figures.add("bench_peak_rss_mb", mb, "MB");
    }

    if let Some(path) = &args.json {
        write_json(
            path,
            args.quick,
            &machine,
            bench.torch_seen.as_ref(),
            &bench.figures,
        )?;
    }
    if bench.torch.is_none() {
        println!(
            "(no --pytorch: no ratios against PyTorch; scripts/setup-torch-venv.sh makes one)"
        );
    }
    for (what, value) in [
        ("VGG16", vgg_deviation),
        ("EfficientNet", effnet_deviation),
        ("ResNet-50", resnet_deviation),
    ] {
        if value.is_nan() || value > MAX_DEVIATION {
            bail!("{what}: our kernels deviate from burn's ops by {value:e} (relative to the largest value; limit {MAX_DEVIATION:e})");
        }
    }
    Ok(())
}

/// The fine-tuning step of configs/effnet-finetune.toml: block14..block16 + head conv + GAP +
/// Linear on cached 192x7x7 inputs, forward, loss, backward, Adam with two rates.
fn top_step(bench: &mut Bench) -> Result<()> {
    let b = bench.effnet_batch();
    let cut = 14;
    let backbone = Backbone::EfficientNetLite0(EfficientNetLite0::random_trainable(
        Some(cut),
        &bench.device,
    ));
    let key = format!("effnet_top_step_b{b}");
    top_step_figure(
        bench,
        backbone,
        cut,
        [b, 192, 7, 7],
        "effnet_top_step",
        &key,
    )
}

/// One fine-tuning step figure: `backbone` trained from layer `cut` with a gap-linear head on
/// random cached inputs of `shape` (U(0, 2), batch = shape[0]): forward, loss, backward, Adam
/// with two rates; beside PyTorch's `figure` when asked.
fn top_step_figure(
    bench: &mut Bench,
    backbone: Backbone,
    cut: usize,
    shape: [usize; 4],
    figure: &str,
    key: &str,
) -> Result<()> {
    let device = &bench.device;
    let b = shape[0];
    let mut top = TopTraining::new(
        backbone,
        HeadKind::GapLinear,
        1,
        cut,
        (1e-3, 1e-4),
        0,
        device,
    );
    let inputs = CutActivations::from_tensor(
        Tensor::<4>::random(shape, Distribution::Uniform(0.0, 2.0), device),
        cut,
    )?;
    let labels: Vec<usize> = (0..b).map(|i| i % 2).collect();
    let repeats = bench.repeats;
    let mut epoch = 0;
    let (s, torch_s) = bench.against_pytorch(figure, b, || {
        best_seconds(repeats, || {
            epoch += 1;
            top.train_epoch(&inputs, &labels, b, 0, epoch).map(drop)
        })
    })?;
    compared(&mut bench.figures, key, b, s, torch_s);
    Ok(())
}

/// CAM and Grad-CAM for 16 validation images from cached activations of `vgg` (the callbacks'
/// work: maps, ReLU, normalisation, resize to 224).
fn cams_from_activations(bench: &mut Bench, vgg: Vgg16) -> Result<()> {
    let device = &bench.device;
    let classifier = Classifier {
        backbone: Backbone::Vgg16(vgg),
        head: Head::new(HeadKind::GapLinear, 512, 1, device),
    };
    let acts = Tensor::<4>::random([16, 512, 14, 14], Distribution::Uniform(0.0, 2.0), device);
    for method in [Method::Cam, Method::GradCam] {
        let s = best_seconds(bench.repeats, || {
            let e = explain_activations(
                &classifier,
                "block5_conv3",
                acts.clone(),
                [224, 224],
                method,
                Target::Predicted,
            )?;
            to_vec(e.maps).map(drop)
        })?;
        bench.figures.add(
            &format!("{method}_16_images_ms_per_img"),
            s / 16.0 * 1e3,
            "ms/img",
        );
    }
    Ok(())
}

/// Head epochs on cached pooled features of 2,000 images (batch 32), both heads.
fn head_epochs(bench: &mut Bench) -> Result<()> {
    let n = 2000;
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    for kind in [HeadKind::GapLinear, HeadKind::GapDense] {
        let features =
            Tensor::<2>::random([n, 512], Distribution::Uniform(0.0, 1.0), &bench.device);
        let mut head = HeadTraining::new(kind, 512, 1, 1e-3, 0, &bench.device);
        let mut epoch = 0;
        let s = best_seconds(bench.repeats, || {
            epoch += 1;
            head.train_epoch(&features, &labels, 32, 0, epoch).map(drop)
        })?;
        let name = kind.name().replace('-', "_");
        bench
            .figures
            .add(&format!("head_epoch_{name}_2000_images_s"), s, "s");
    }
    Ok(())
}

/// Decoding and resizing a 500x375 JPEG (the feature pass's other cost).
fn decode_and_resize(bench: &mut Bench) -> Result<()> {
    let photo = image::RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut jpeg = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    let jpeg = jpeg.into_inner();
    let decode_s = best_seconds(bench.repeats * 5, || {
        let img = image::load_from_memory(&jpeg)?;
        crate::data::images::resize(&img.to_rgb8(), [224, 224]);
        Ok(())
    })?;
    bench
        .figures
        .add("decode_resize_500x375_jpeg_ms", decode_s * 1e3, "ms/img");
    Ok(())
}

/// Write the figures as JSON, with the date, mode, machine and PyTorch's version.
fn write_json(
    path: &std::path::Path,
    quick: bool,
    machine: &serde_json::Value,
    torch: Option<&pytorch::TorchFigure>,
    figures: &Figures,
) -> Result<()> {
    let mut map = serde_json::Map::new();
    map.insert("quick".into(), quick.into());
    map.insert(
        "date".into(),
        chrono::Local::now().format("%Y-%m-%d").to_string().into(),
    );
    map.insert("machine".into(), machine.clone());
    if let Some(t) = torch {
        map.insert(
            "pytorch".into(),
            serde_json::json!({"torch_version": t.torch, "torch_threads": t.threads, "mkldnn": t.mkldnn}),
        );
    }
    for (key, value, _) in &figures.0 {
        map.insert(key.clone(), (*value).into());
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(map))?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_computation_fails_the_figure() {
        let mut calls = 0;
        let warm_up_fails = best_seconds(3, || bail!("no backbone"));
        assert!(warm_up_fails
            .unwrap_err()
            .to_string()
            .contains("no backbone"));
        let third_fails = best_seconds(3, || {
            calls += 1;
            if calls == 3 {
                bail!("out of memory");
            }
            Ok(())
        });
        assert!(third_fails
            .unwrap_err()
            .to_string()
            .contains("out of memory"));
        assert!(best_seconds(2, || Ok(())).unwrap() >= 0.0);
    }

    #[test]
    fn deviation_is_relative_to_the_largest_value() {
        assert_eq!(deviation(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((deviation(&[1.0, 4.002], &[1.0, 4.0]) - 5e-4).abs() < 1e-6);
        assert!(deviation(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn a_broken_pytorch_is_an_error_naming_it() {
        // `false` exits 1; `echo` prints its arguments, which are not the script's JSON.
        let failing = PyTorch::new(Path::new("false")).unwrap();
        let err = failing
            .time("effnet_lite0", 2, 1, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("false") && err.contains("failed"), "{err}");
        let garbled = PyTorch::new(Path::new("echo")).unwrap();
        let err = garbled
            .time("effnet_lite0", 2, 1, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unreadable output"), "{err}");
    }
}
