//! The per-epoch [`Callback`] trait, what a callback gets each epoch ([`CallbackContext`]), and
//! its error.

use std::collections::HashMap;

use model::Explainable;

use crate::engine::pipeline::ExplainError;
use crate::logging::sink::{Sink, SinkError};
use crate::scores::faithfulness::CurveCache;

/// An error from a callback.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Computing the maps failed.
    #[error(transparent)]
    Explain(#[from] ExplainError),
    /// Writing the results failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Scoring faithfulness failed.
    #[error("faithfulness: {0}")]
    Faithfulness(String),
    /// Scoring ROAD failed.
    #[error(transparent)]
    Road(#[from] crate::scores::road::RoadError),
    /// A feature that needs the project's classifier ([`Explainable::as_classifier`]) was
    /// asked of another model.
    #[error("{0} needs the project's classifier (its layers from a fine-tuning cut); this model is another")]
    NeedsClassifier(&'static str),
    /// The images given to explain cannot be used.
    #[error("the explained images: {0}")]
    Images(String),
    /// A saved state could not be restored.
    #[error("cannot restore the saved state: {0}")]
    State(String),
    /// Reading a tensor back failed.
    #[error("cannot read {what} back from the device: {cause}")]
    Data {
        /// Which tensor.
        what: &'static str,
        /// The cause.
        cause: String,
    },
}

/// What a callback sees: the model after the epoch, the epoch (1-based), the sinks, the maps
/// the callbacks before it rendered this epoch, and a place for warnings.
pub struct CallbackContext<'a> {
    /// The model as trained so far.
    pub model: &'a dyn Explainable,
    /// The epoch that just ended (1-based); 0 at train start.
    pub epoch: usize,
    /// Where results go.
    pub sinks: &'a mut [Box<dyn Sink>],
    /// Maps rendered this epoch by the callbacks that ran before (empty at each epoch's start).
    pub rendered: &'a mut Vec<RenderedMaps>,
    /// Warnings for the user (the training loop prints them).
    pub warnings: &'a mut Vec<String>,
    /// Faithfulness curves computed this drawing, shared by the callbacks (one per drawing).
    pub curves: &'a mut CurveCache,
}

/// The normalised maps one callback rendered in one epoch, for callbacks that compare methods.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedMaps {
    /// The callback's [`name`](Callback::name).
    pub callback: String,
    /// The images' names.
    pub names: Vec<String>,
    /// The maps' size [H, W].
    pub size: [usize; 2],
    /// The maps [N·H·W], each in [0, 1].
    pub maps: Vec<f32>,
}

/// A training callback.
pub trait Callback: Send {
    /// Name, for timings and logs.
    fn name(&self) -> String;
    /// The scalar tags this callback logs on the epochs it runs (metrics.csv's columns).
    fn scalar_tags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Before the first epoch (step 0: the model before any update).
    fn on_train_start(&mut self, _ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        Ok(())
    }
    /// After each epoch.
    fn on_epoch_end(&mut self, ctx: &mut CallbackContext) -> Result<(), CallbackError>;
    /// After the last epoch.
    fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> Result<(), CallbackError> {
        Ok(())
    }
    /// What the callback must carry across a resume, as named byte blobs (saved with every
    /// checkpoint).
    fn save_state(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
    /// Restore a [`save_state`](Self::save_state) (the blobs it saved, by name).
    fn load_state(&mut self, _blobs: &HashMap<String, Vec<u8>>) -> Result<(), CallbackError> {
        Ok(())
    }
}

/// When callbacks are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before the first epoch (step 0: the model before any update).
    TrainStart,
    /// After each epoch.
    EpochEnd,
    /// After the last epoch.
    TrainEnd,
}

/// Call every callback at `hook` of `epoch` (0 at train start) with `model`, in order — what a
/// training loop of your own calls (the harness does too). Returns the warnings they raised; a
/// failing callback's error comes with its name.
pub fn run_callbacks(
    callbacks: &mut [Box<dyn Callback>],
    hook: Hook,
    model: &dyn Explainable,
    epoch: usize,
    sinks: &mut [Box<dyn Sink>],
) -> Result<Vec<String>, (String, CallbackError)> {
    let (mut rendered, mut warnings) = (Vec::new(), Vec::new());
    let mut curves = CurveCache::default();
    for callback in callbacks.iter_mut() {
        let mut ctx = CallbackContext {
            model,
            epoch,
            sinks: &mut *sinks,
            rendered: &mut rendered,
            warnings: &mut warnings,
            curves: &mut curves,
        };
        match hook {
            Hook::TrainStart => callback.on_train_start(&mut ctx),
            Hook::EpochEnd => callback.on_epoch_end(&mut ctx),
            Hook::TrainEnd => callback.on_train_end(&mut ctx),
        }
        .map_err(|e| (callback.name(), e))?;
    }
    Ok(warnings)
}
