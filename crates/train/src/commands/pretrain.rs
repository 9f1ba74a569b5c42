//! `train pretrain`: pretrain the small VGG16-shaped backbone the quickstart ships with, on the
//! synthetic cats-vs-dogs task (images from a seed disjoint from the quickstart's), end to end:
//! backbone + gap-linear head, Adam, binary cross-entropy. Writes torchvision-named safetensors
//! (`features.N.weight|bias`), which every loader of this project reads. Rarely run (minutes).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use clap::Args;
use model::{Backbone, Classifier, Head, HeadKind, Vgg16, VGG16_LAYERS};

use crate::data::{images, synth};
use crate::learn::epoch::{correct, predictions, train_epoch};
use crate::tensors::{to_vec, write_safetensors};
use model::rng::SplitMix64;

/// Arguments of `train pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Where to write the backbone.
    #[arg(long, default_value = "data/weights/vgg16-w8-synthetic.safetensors")]
    pub out: PathBuf,
    /// Synthetic training images.
    #[arg(long, default_value_t = 4000, value_parser = at_least_one)]
    pub images: usize,
    /// Held-out images to report accuracy on.
    #[arg(long, default_value_t = 400)]
    pub eval_images: usize,
    /// Image size (multiple of 32).
    #[arg(long, default_value_t = 96)]
    pub size: usize,
    /// Epochs.
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Adam learning rate (1e-3 diverges: VGG has no normalisation layers).
    #[arg(long, default_value_t = 2e-4)]
    pub learning_rate: f64,
    /// Channel divisor relative to VGG16 (8: 64→8 channels … 512→64): 1, 2, 4, 8, 16, 32 or 64.
    #[arg(long, default_value_t = 8, value_parser = divisor_of_64)]
    pub width_divisor: usize,
    /// Seed of the synthetic images and the initialisation (the quickstart uses seed 1).
    #[arg(long, default_value_t = 1000)]
    pub seed: u64,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}` is not a whole number ≥ 1")),
    }
}

fn divisor_of_64(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 && 64 % n == 0 => Ok(n),
        _ => Err(format!(
            "`{text}` must divide 64 (1, 2, 4, 8, 16, 32 or 64)"
        )),
    }
}

fn batch(
    seed: u64,
    indices: &[usize],
    size: usize,
    device: &Device,
) -> (burn::tensor::Tensor<4>, Vec<usize>) {
    let items: Vec<synth::SynthImage> = indices
        .iter()
        .map(|&i| synth::generate(seed, i, size))
        .collect();
    let photos: Vec<_> = items.iter().map(|s| s.image.clone()).collect();
    (
        images::to_tensor(&photos, device),
        items.iter().map(|s| s.label).collect(),
    )
}

/// Run `train pretrain`.
pub fn run(args: &PretrainArgs) -> Result<()> {
    model::Classifier::check_input_size(args.size, args.size).map_err(anyhow::Error::msg)?;
    let device = Device::flex().autodiff();
    device.seed(args.seed);
    let backbone = Vgg16::random(args.width_divisor, &device);
    let channels = 512 / args.width_divisor;
    let mut model = Classifier {
        backbone: Backbone::Vgg16(backbone),
        head: Head::new(HeadKind::GapLinear, channels, 1, &device),
    };
    let mut optim = AdamConfig::new().init();
    let eval_start = args.images; // held-out indices follow the training ones
    let start = Instant::now();
    for epoch in 1..=args.epochs {
        let mut order: Vec<usize> = (0..args.images).collect();
        SplitMix64::new(args.seed ^ epoch as u64).shuffle(&mut order);
        let (trained, score) = train_epoch(
            model,
            &order,
            args.batch_size,
            |model: &Classifier, chunk| {
                let (x, y) = batch(args.seed, chunk, args.size, &device);
                Ok((model.forward(x), y))
            },
            |model, loss| {
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                Ok(optim.step(args.learning_rate, model, grads))
            },
        )?;
        model = trained;
        let valid = model.clone().valid();
        let mut eval_correct = 0;
        let eval: Vec<usize> = (eval_start..eval_start + args.eval_images).collect();
        for chunk in eval.chunks(64) {
            let (x, y) = batch(
                args.seed,
                chunk,
                args.size,
                &device.clone().without_autodiff(),
            );
            eval_correct += correct(&predictions(valid.forward(x))?, &y);
        }
        println!(
            "pretrain epoch {epoch}/{}: loss {:.4}, train accuracy {:.4}, held-out accuracy {:.4} ({:.0} s)",
            args.epochs,
            score.loss,
            score.accuracy,
            eval_correct as f64 / args.eval_images.max(1) as f64,
            start.elapsed().as_secs_f64()
        );
    }
    let Backbone::Vgg16(backbone) = model.valid().backbone else {
        anyhow::bail!("pretrain trains a VGG16");
    };
    let mut tensors = Vec::new();
    let mut convs = backbone.convs.iter();
    for (_, op) in VGG16_LAYERS {
        if let model::vgg16::Op::Conv { torch_index, .. } = op {
            let conv = convs.next().context("conv count")?;
            let w = conv.weight.val();
            let b = conv.bias.as_ref().context("conv bias")?.val();
            tensors.push((
                format!("features.{torch_index}.weight"),
                w.dims().to_vec(),
                to_vec(w)?,
            ));
            tensors.push((
                format!("features.{torch_index}.bias"),
                b.dims().to_vec(),
                to_vec(b)?,
            ));
        }
    }
    let metadata = std::collections::HashMap::from([(
        "recipe".to_string(),
        format!(
            "train pretrain --images {} --size {} --epochs {} --batch-size {} --learning-rate {} --width-divisor {} --seed {}",
            args.images, args.size, args.epochs, args.batch_size, args.learning_rate, args.width_divisor, args.seed
        ),
    )]);
    let bytes = write_safetensors(&args.out, &tensors, metadata)?;
    println!("wrote {} ({bytes} bytes)", args.out.display());
    Ok(())
}
