//! Your own burn model, trained in your own loop, explained after every epoch.
//!
//!     cargo run --release --example own_model -- --out runs/own-model
//!     tensorboard --logdir runs/own-model
//!
//! The model (`SmallCnn` in the crate's lib.rs) implements `model::Explainable`: its layer
//! names, the forward pass to a layer, the logits from that layer, and the whole pass. Here it
//! learns the offline synthetic cat/dog set from scratch; CAM and Grad-CAM draw 8 validation
//! images at step 0 and after every epoch into TensorBoard (`cam/<image>`, `gradcam/<image>`,
//! the grids, captions, drifts and, at the end, each image's evolution strip).

use anyhow::{anyhow, Context, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use callbacks::{
    run_callbacks, Callback, CamLogger, ExplainedImages, Hook, Method, Options, Sink,
    TensorBoardSink,
};
use cam_examples::{accuracy, out_dir, Photos, SmallCnn, CLASSES};
use model::rng::SplitMix64;

const SIZE: usize = 96;
const EPOCHS: usize = 8;
const BATCH: usize = 32;

fn main() -> Result<()> {
    let out = out_dir()?;
    let device = Device::flex();
    let train = Photos::synthetic(0, 800, SIZE);
    let val = Photos::synthetic(800, 96, SIZE);
    let mut model = SmallCnn::new(&device.clone().autodiff());
    let mut optimizer = AdamConfig::new().init();

    // The callbacks: 8 validation images, explained by CAM and Grad-CAM at `block3`.
    let shown = Photos::synthetic(800, 8, SIZE);
    let class_names = CLASSES.map(String::from).to_vec();
    let images = ExplainedImages::from_photos(
        &model.clone().valid(),
        shown.images,
        shown.names,
        shown.labels,
        class_names,
        &device,
    )?;
    let mut callbacks: Vec<Box<dyn Callback>> = vec![
        Box::new(CamLogger::new(
            Method::Cam,
            Options::default(),
            "block3",
            images.clone(),
        )),
        Box::new(CamLogger::new(
            Method::GradCam,
            Options::default(),
            "block3",
            images,
        )),
    ];
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(TensorBoardSink::open(&out, None)?)];
    let explain = |callbacks: &mut Vec<Box<dyn Callback>>,
                   sinks: &mut Vec<Box<dyn Sink>>,
                   hook,
                   model: &SmallCnn,
                   epoch| {
        run_callbacks(callbacks, hook, &model.clone().valid(), epoch, sinks)
            .map_err(|(name, e)| anyhow!("callback {name}: {e}"))
    };

    explain(&mut callbacks, &mut sinks, Hook::TrainStart, &model, 0)?;
    for epoch in 1..=EPOCHS {
        // A plain burn loop: shuffled mini-batches, cross-entropy, Adam.
        let mut order: Vec<usize> = (0..train.labels.len()).collect();
        SplitMix64::new(epoch as u64).shuffle(&mut order);
        for rows in order.chunks(BATCH) {
            let (x, y) = train.batch(rows, &device);
            let (loss, _) = model.loss(x, y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let rows: Vec<usize> = (0..val.labels.len()).collect();
        let (x, y) = val.batch(&rows, &device);
        let (_, logits) = model.clone().valid().loss(x, y.clone());
        let val_accuracy = accuracy(logits, y);
        sinks[0].scalar("accuracy/val", val_accuracy, epoch as i64)?;
        println!("epoch {epoch}/{EPOCHS}: val accuracy {val_accuracy:.3}");
        explain(&mut callbacks, &mut sinks, Hook::EpochEnd, &model, epoch)?;
    }
    explain(&mut callbacks, &mut sinks, Hook::TrainEnd, &model, EPOCHS)?;
    sinks[0].flush()?;
    println!("wrote {} (tensorboard --logdir {0})", out.display());
    Ok(())
}
