//! `train --config FILE` / `train --resume RUN_DIR`: the training loop. Everything around it —
//! data, features, model, callbacks, sinks, resuming — is opened by [`Session`]; the end-of-run
//! report is [`summary`](crate::run::summary).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::config::Config;
use crate::run::metrics::{Metric, SECONDS_TAGS};
use crate::run::progress::Progress;
use crate::run::session::{Hook, Session};

/// Run (or resume) training.
pub fn fit(config: Config, resume_dir: Option<&Path>) -> Result<()> {
    let Some(mut s) = Session::open(config, resume_dir)? else {
        return Ok(());
    };
    let (epochs, batch_size, seed) = (
        s.config.train.epochs,
        s.config.train.batch_size,
        s.config.run.seed,
    );
    if s.start_epoch == 0 {
        s.run_callbacks(Hook::TrainStart, 0)?;
    }
    let mut progress = Progress::new("epochs", epochs - s.start_epoch);
    for epoch in s.start_epoch + 1..=epochs {
        let epoch_start = Instant::now();
        let train_score = s
            .training
            .train_epoch(&s.sets.train, batch_size, seed, epoch)?;
        s.training.update(&mut s.model);
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let mut scores = vec![("train".to_string(), train_score)];
        for (name, set) in s.sets.named().into_iter().skip(1) {
            scores.push((name.to_string(), s.training.evaluate(set)?));
        }
        let head_seconds = epoch_start.elapsed().as_secs_f64();
        for (set, score) in &scores {
            s.scalar(&Metric::Loss(set.to_string()).tag(), score.loss, epoch)?;
            s.scalar(
                &Metric::Accuracy(set.to_string()).tag(),
                score.accuracy,
                epoch,
            )?;
        }

        crate::run::confusion::log(&mut s, &scores, epoch)?;

        let callbacks_start = Instant::now();
        for warning in s.run_callbacks(Hook::EpochEnd, epoch)? {
            progress.println(&format!("warning: {warning}"));
        }
        let callback_seconds = callbacks_start.elapsed().as_secs_f64();
        let epoch_seconds = epoch_start.elapsed().as_secs_f64();
        for (tag, seconds) in
            SECONDS_TAGS
                .iter()
                .zip([train_seconds, head_seconds, callback_seconds, epoch_seconds])
        {
            s.scalar(tag, seconds, epoch)?;
        }
        s.end_epoch(epoch)?;

        let (train, val) = (&scores[0].1, &scores[1].1);
        progress.println(&format!(
            "epoch {epoch:>3}/{epochs}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  \
             (train {train_seconds:.3} s, eval {:.3} s, callbacks {callback_seconds:.3} s)",
            train.loss,
            train.accuracy,
            val.loss,
            val.accuracy,
            head_seconds - train_seconds
        ));
        if progress.is_bar() {
            progress.add(1);
        }
    }
    progress.finish();
    s.finish()?;
    crate::run::summary::print(&s)
}

/// Read the config a run was started with; `flag` names the option that gave the directory.
pub fn run_config(run_dir: &Path, flag: &str) -> Result<(Config, PathBuf)> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        bail!(
            "{flag} {}: no config.toml there (is it a run directory, runs/<name>-<stamp>?)",
            run_dir.display()
        );
    }
    Ok((Config::load(&path)?, run_dir.to_path_buf()))
}
