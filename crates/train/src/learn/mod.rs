//! What a run trains — the head alone on pooled features ([`head`]), or the top of the backbone
//! with the head on the cut's activations ([`top`]) — behind one interface for the loop, both on
//! one epoch loop ([`epoch`]); the [`checkpoint`] that lets a run resume exactly; and the
//! trained weights written for `train explain` ([`export`]).

pub mod checkpoint;
pub mod epoch;
pub mod export;
pub mod head;
pub mod top;

use anyhow::{bail, Result};
use model::Classifier;

use crate::features::sets::{LabelledFeatures, Rows};
use crate::learn::epoch::Score;
use crate::learn::head::HeadTraining;
use crate::learn::top::TopTraining;

/// What a run trains.
// One value per set / per run: the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Training {
    /// The head, on pooled features of the frozen backbone.
    Head(HeadTraining),
    /// Backbone layers from the cut up, and the head.
    Top(TopTraining),
}

impl Training {
    /// One epoch over `set`.
    pub fn train_epoch(
        &mut self,
        set: &LabelledFeatures,
        batch_size: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<Score> {
        match (self, &set.x) {
            (Training::Head(t), Rows::Pooled(x)) => {
                t.train_epoch(x, &set.y, batch_size, seed, epoch)
            }
            (Training::Top(t), Rows::Cut(x)) => t.train_epoch(x, &set.y, batch_size, seed, epoch),
            _ => bail!("the training set's rows do not fit what this run trains"),
        }
    }

    /// Loss and accuracy on `set` without training.
    pub fn evaluate(&self, set: &LabelledFeatures) -> Result<Score> {
        match (self, &set.x) {
            (Training::Head(t), Rows::Pooled(x)) => t.evaluate(x, &set.y),
            (Training::Top(t), Rows::Cut(x)) => t.evaluate(x, &set.y),
            _ => bail!("a set's rows do not fit what this run trains"),
        }
    }

    /// Put the weights trained so far into `model` (the one the callbacks explain).
    pub fn update(&self, model: &mut Classifier) {
        match self {
            Training::Head(t) => model.head = t.head(),
            Training::Top(t) => *model = t.model(),
        }
    }

    /// The trained weights' and the optimizer's state as bytes.
    pub fn state(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        match self {
            Training::Head(t) => t.state(),
            Training::Top(t) => t.state(),
        }
    }

    /// Restore a [`state`](Self::state).
    pub fn restore(&mut self, model: Vec<u8>, optimizer: Vec<u8>) -> Result<()> {
        match self {
            Training::Head(t) => t.restore(model, optimizer),
            Training::Top(t) => t.restore(model, optimizer),
        }
    }
}
