//! The same callbacks inside burn-train's `Learner` (burn-train 0.22.1).
//!
//!     cargo run --release --example burn_learner -- --out runs/burn-learner
//!     tensorboard --logdir runs/burn-learner
//!
//! burn-train's loop has no per-epoch hook that sees the model, but it checkpoints the model
//! after every epoch's validation through a `Checkpointer` you can supply. [`CamCheckpointer`]
//! is one: each "checkpoint" loads the record into a copy of the model and runs the callbacks
//! on it (on burn-train's checkpointer thread), so the maps appear in TensorBoard while the
//! Learner trains. Step 0 and the evolution strips are drawn around `launch`.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn_train::checkpoint::{
    Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn_train::metric::store::EventStoreClient;
use burn_train::metric::{AccuracyMetric, LossMetric};
use burn_train::{ExecutionStrategy, Learner, SupervisedTraining};
use callbacks::{
    run_callbacks, Callback, CamLogger, ExplainedImages, Hook, Method, Options, Sink,
    TensorBoardSink,
};
use cam_examples::learner::SynthBatcher;
use cam_examples::{out_dir, Photos, SmallCnn, CLASSES};

const SIZE: usize = 96;
const EPOCHS: usize = 8;
const BATCH: usize = 32;

/// The callbacks, their sinks and a model to load each epoch's weights into.
struct Explainer {
    callbacks: Vec<Box<dyn Callback>>,
    sinks: Vec<Box<dyn Sink>>,
    template: SmallCnn,
}

impl Explainer {
    fn run(&mut self, hook: Hook, model: &SmallCnn, epoch: usize) -> Result<()> {
        run_callbacks(&mut self.callbacks, hook, model, epoch, &mut self.sinks)
            .map_err(|(name, e)| anyhow!("callback {name}: {e}"))?;
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }
}

/// burn-train's model checkpointer, replaced: every epoch's record is explained, not saved.
struct CamCheckpointer(Arc<Mutex<Explainer>>);

impl Checkpointer<ModuleRecord> for CamCheckpointer {
    fn save(&self, epoch: usize, record: ModuleRecord) -> Result<(), CheckpointerError> {
        let mut explainer = self
            .0
            .lock()
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))?;
        let model = explainer.template.clone().load_record(record);
        explainer
            .run(Hook::EpochEnd, &model, epoch)
            .map_err(|e| CheckpointerError::Unknown(format!("{e:#}")))
    }
    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }
    fn restore(&self, epoch: usize) -> Result<ModuleRecord, CheckpointerError> {
        Err(CheckpointerError::Unknown(format!(
            "epoch {epoch}: the CAM checkpointer keeps no weights"
        )))
    }
}

/// Nothing saved for the optimizer and the learning-rate scheduler.
struct Nothing;

impl<R: burn_train::checkpoint::Checkpoint> Checkpointer<R> for Nothing {
    fn save(&self, _epoch: usize, _record: R) -> Result<(), CheckpointerError> {
        Ok(())
    }
    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }
    fn restore(&self, _epoch: usize) -> Result<R, CheckpointerError> {
        Err(CheckpointerError::Unknown("nothing is saved".into()))
    }
}

/// "Checkpoint" (explain) after every epoch.
struct EveryEpoch;

impl CheckpointingStrategy for EveryEpoch {
    fn checkpointing(&mut self, _epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

/// The explainer, unless a callback panicked on burn-train's checkpointer thread.
fn lock(explainer: &Mutex<Explainer>) -> Result<std::sync::MutexGuard<'_, Explainer>> {
    explainer
        .lock()
        .map_err(|_| anyhow!("a callback panicked on burn-train's checkpointer thread"))
}

fn main() -> Result<()> {
    let out = out_dir()?;
    let device = Device::flex();
    let train = Arc::new(Photos::synthetic(0, 800, SIZE));
    let val = Arc::new(Photos::synthetic(800, 96, SIZE));
    let model = SmallCnn::new(&device.clone().autodiff());

    let shown = Photos::synthetic(800, 8, SIZE);
    let class_names = CLASSES.map(String::from).to_vec();
    let template = model.clone().valid();
    let images = ExplainedImages::from_photos(
        &template,
        shown.images,
        shown.names,
        shown.labels,
        class_names,
        &device,
    )?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let explainer = Arc::new(Mutex::new(Explainer {
        callbacks: vec![
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
        ],
        sinks: vec![Box::new(TensorBoardSink::open(&out, None)?)],
        template: template.clone(),
    }));
    lock(&explainer)?.run(Hook::TrainStart, &template, 0)?;

    let loader = |photos: &Arc<Photos>, shuffle: bool| {
        let rows = InMemDataset::new((0..photos.labels.len()).collect::<Vec<usize>>());
        let builder = DataLoaderBuilder::new(SynthBatcher(photos.clone())).batch_size(BATCH);
        let builder = if shuffle { builder.shuffle(1) } else { builder };
        builder.set_device(device.clone().autodiff()).build(rows)
    };
    let training = SupervisedTraining::new(
        out.join("burn-train"),
        loader(&train, true),
        loader(&val, false),
    )
    .metrics((AccuracyMetric::new(), LossMetric::new()))
    .num_epochs(EPOCHS)
    .with_custom_checkpointers(CamCheckpointer(explainer.clone()), Nothing, Nothing)
    .with_checkpointing_strategy(EveryEpoch)
    .with_training_strategy(ExecutionStrategy::SingleDevice(device.clone().autodiff()).into());
    let learner = Learner::new(model, AdamConfig::new().init(), 3e-3);
    let result = training.launch(learner);
    // `launch` returns once burn-train's checkpointer thread has drawn the last epoch.
    lock(&explainer)?.run(Hook::TrainEnd, &result.model.valid(), EPOCHS)?;
    println!("wrote {} (tensorboard --logdir {0})", out.display());
    Ok(())
}
