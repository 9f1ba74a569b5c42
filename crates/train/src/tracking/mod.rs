//! Live logging to an experiment tracker, beside the run's own files: MLflow through its REST
//! API (`[logging] mlflow = "http://host:port"`). The tracker never costs the training: a server
//! that cannot be reached when the run starts is an error (unless `mlflow_required = false`),
//! and one that goes away mid-run gives a warning, bounded retries, and the run goes on; the
//! run directory has everything either way. (W&B: `scripts/wandb_sync.py` sends a run's files.)

pub mod mlflow;
mod sink;

pub use sink::{connect, MlflowSink, Tracker};
