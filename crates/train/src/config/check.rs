//! Checking a parsed config: values (no file system) and inputs (every missing path at once).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{CallbackConfig, Config, CueConfig, EvalConfig, SyntheticConfig};

impl CallbackConfig {
    /// Check the values (no file system).
    pub(super) fn check(&self) -> Result<()> {
        self.style().validate().map_err(anyhow::Error::msg)?;
        if self.every == Some(0) {
            bail!("every must be at least 1");
        }
        if !(1..=1024).contains(&self.num_images) {
            bail!("num_images must be in 1..=1024");
        }
        if self.localization_images > 4096 {
            bail!(
                "localization_images must be at most 4096 (their activation maps are kept in \
                 memory)"
            );
        }
        if !(0.0..=1.0).contains(&self.localization_threshold()) {
            bail!("localization_threshold must be in [0, 1]");
        }
        if !(1..=1000).contains(&self.faithfulness_steps) {
            bail!("faithfulness_steps must be in 1..=1000");
        }
        if self.faithfulness_images > self.num_images {
            bail!(
                "faithfulness_images ({}) must be at most num_images ({})",
                self.faithfulness_images,
                self.num_images
            );
        }
        if self.road_images > self.num_images {
            bail!(
                "road_images ({}) must be at most num_images ({})",
                self.road_images,
                self.num_images
            );
        }
        Ok(())
    }
}

/// The weight files `scripts/fetch-weights.sh` writes.
const FETCHED_WEIGHTS: [&str; 4] = [
    "data/weights/vgg16-397923af.pth",
    "data/weights/efficientnet-lite0-57934424.pth",
    "data/weights/resnet18-f37072fd.pth",
    "data/weights/resnet50-11ad3fa6.pth",
];

impl Config {
    /// Check that every input exists; all missing ones are reported in one error. A relative
    /// path that exists from the config file's project (its directory, or the one above for a
    /// config in `configs/`) is reported as a working-directory mistake, not a missing file.
    pub(super) fn check_inputs(&self, cwd: &Path, config_dir: &Path) -> Result<()> {
        let mut inputs: Vec<(String, &Path)> = Vec::new();
        if let Some(dir) = &self.data.train_dir {
            inputs.push(("[data] train_dir".into(), dir));
        }
        if let Some(dir) = &self.data.val_dir {
            inputs.push(("[data] val_dir".into(), dir));
        }
        if let Some(boxes) = &self.data.boxes {
            inputs.push(("[data] boxes".into(), boxes));
        }
        for e in &self.data.eval {
            inputs.push((format!("[[data.eval]] {} dir", e.name), &e.dir));
        }
        inputs.push(("[model] weights".into(), &self.model.weights));
        let projects: Vec<&Path> = [Some(config_dir), config_dir.parent()]
            .into_iter()
            .flatten()
            .filter(|d| *d != cwd)
            .collect();
        let missing: Vec<String> = inputs
            .iter()
            .filter(|(_, path)| !path.exists())
            .map(|(key, path)| {
                let elsewhere = path.strip_prefix(cwd).ok().and_then(|relative| {
                    projects
                        .iter()
                        .find(|d| d.join(relative).exists())
                        .map(|d| (relative, d))
                });
                match elsewhere {
                    Some((relative, dir)) => format!(
                        "{key}: {} does not exist; `{}` is in {}: run from there",
                        path.display(),
                        relative.display(),
                        dir.display()
                    ),
                    None => format!(
                        "{key}: {} does not exist{}",
                        path.display(),
                        self.how_to_get(cwd, path)
                    ),
                }
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} missing input(s):\n  {}\n(relative paths in a config resolve against the \
                 working directory, {}; the configs in configs/ expect the repository root)",
                missing.len(),
                missing.join("\n  "),
                cwd.display()
            );
        }
        Ok(())
    }

    /// A hint for a missing input: the script that makes it when the path is where that script
    /// writes, `SHARED_DIR` for a path under the shared folder, nothing for the user's own.
    fn how_to_get(&self, cwd: &Path, path: &Path) -> String {
        let shared = super::shared_dir();
        let shared = if shared.is_relative() {
            cwd.join(shared)
        } else {
            shared
        };
        let relative = path.strip_prefix(cwd).unwrap_or(path);
        if path.starts_with(&shared) {
            format!(
                " (it is looked for under ${{SHARED_DIR}} = {}: set SHARED_DIR to the shared \
                 data folder)",
                shared.display()
            )
        } else if FETCHED_WEIGHTS.iter().any(|f| relative == Path::new(f)) {
            format!(
                " (get it with `scripts/fetch-weights.sh {}`)",
                self.model.backbone
            )
        } else if relative.starts_with("data/cats_and_dogs_filtered") {
            " (get it with `scripts/fetch-data.sh`)".into()
        } else {
            String::new()
        }
    }

    /// Check the values that need no file system.
    pub(super) fn check_values(&self) -> Result<()> {
        self.check_run()?;
        self.check_data()?;
        self.check_eval_sets()?;
        self.check_model()?;
        self.check_train()?;
        self.check_callbacks()?;
        self.check_logging()
    }

    /// `[logging]`: an MLflow address this build can speak to, an experiment name.
    fn check_logging(&self) -> Result<()> {
        if let Some(uri) = &self.logging.mlflow {
            crate::tracking::mlflow::Client::new(uri)
                .map_err(|e| anyhow::anyhow!("[logging] mlflow: {e}"))?;
        }
        if self.logging.experiment.trim().is_empty() {
            bail!("[logging] experiment must not be empty");
        }
        Ok(())
    }

    /// `[run]`.
    fn check_run(&self) -> Result<()> {
        if self.run.name.is_empty()
            || self.run.name.contains(['/', '\\'])
            || self.run.name.starts_with('.')
        {
            bail!(
                "[run] name `{}` must be a plain, non-empty file name",
                self.run.name
            );
        }
        model::device_from_name(&self.run.device)
            .map_err(|e| anyhow::anyhow!("[run] device: {e}"))?;
        Ok(())
    }

    /// `[data]` but its eval sets.
    fn check_data(&self) -> Result<()> {
        match (&self.data.train_dir, &self.data.synthetic) {
            (Some(_), None) => {}
            (None, Some(s)) => {
                s.check(&self.data.eval)?;
                if self.data.val_dir.is_some() || self.data.boxes.is_some() {
                    bail!("[data] synthetic makes its own val_dir and boxes: remove them");
                }
            }
            (Some(_), Some(_)) => bail!("[data] give either train_dir or synthetic, not both"),
            (None, None) => bail!(
                "[data] train_dir is missing (or give synthetic = {{ seed, train, val, size }})"
            ),
        }
        if let Some(f) = self.data.val_fraction {
            if self.data.val_dir.is_some() {
                bail!("[data] give either val_dir or val_fraction, not both");
            }
            if !(f > 0.0 && f < 1.0) {
                bail!("[data] val_fraction must be in (0, 1), got {f}");
            }
        }
        let [h, w] = self.data.image_size.hw();
        model::Classifier::check_input_size(h, w)
            .map_err(|e| anyhow::anyhow!("[data] image_size: {e}"))?;
        if !(1..=256).contains(&self.data.backbone_batch_size) {
            bail!("[data] backbone_batch_size must be in 1..=256");
        }
        Ok(())
    }

    /// `[[data.eval]]`: names of letters, digits, `_` and `-`, each naming its set alone in
    /// tags and metrics.csv columns (not `train`, `val`, a method, a baseline, another set).
    fn check_eval_sets(&self) -> Result<()> {
        for (i, e) in self.data.eval.iter().enumerate() {
            let at = format!("[[data.eval]] #{} name `{}`", i + 1, e.name);
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("{at}: must be letters, digits, `_` or `-`");
            }
            if let Some(why) = crate::run::metrics::set_name_clash(&e.name) {
                bail!("{at}: {why}; choose another name");
            }
            if let Some(first) = self.data.eval[..i].iter().position(|o| o.name == e.name) {
                bail!(
                    "{at}: the name of #{} too; each set needs its own",
                    first + 1
                );
            }
        }
        Ok(())
    }

    /// `[model]` and `train_from`.
    fn check_model(&self) -> Result<()> {
        if let Some(name) = &self.model.train_from {
            if !self.model.freeze_backbone {
                bail!(
                    "[model] train_from = \"{name}\" and freeze_backbone = false contradict each \
                     other (freeze_backbone = false trains the whole backbone): keep one of them"
                );
            }
            let valid = self.model.backbone.trainable_layers(self.model.head);
            if !valid.contains(&name.as_str()) {
                bail!(
                    "[model] train_from = \"{name}\" is not a trainable layer of {} with a {} \
                     head; valid names: {}",
                    self.model.backbone,
                    self.model.head,
                    valid.join(", ")
                );
            }
        }
        if let Some(lr) = self.train.backbone_learning_rate {
            if !(lr > 0.0 && lr.is_finite()) {
                bail!("[train] backbone_learning_rate must be a positive number, got {lr}");
            }
            if self.train_from().is_none() {
                bail!(
                    "[train] backbone_learning_rate is set but no backbone layer trains: add \
                     [model] train_from = \"<layer>\" (or freeze_backbone = false), or remove it"
                );
            }
        }
        Ok(())
    }

    /// `[train]`.
    fn check_train(&self) -> Result<()> {
        if !(1..=100_000).contains(&self.train.epochs) || self.train.batch_size == 0 {
            bail!("[train] epochs must be in 1..=100000 and batch_size at least 1");
        }
        if !(self.train.learning_rate > 0.0 && self.train.learning_rate.is_finite()) {
            bail!(
                "[train] learning_rate must be a positive number, got {}",
                self.train.learning_rate
            );
        }
        if self.train.optimizer != "adam" {
            bail!(
                "[train] optimizer `{}` is unknown (available: adam)",
                self.train.optimizer
            );
        }
        Ok(())
    }

    /// Every `[[callbacks]]` block, and one callback per method.
    fn check_callbacks(&self) -> Result<()> {
        for (i, c) in self.callbacks.iter().enumerate() {
            let at = format!("[[callbacks]] #{}", i + 1);
            if let Some(first) = self.callbacks[..i].iter().position(|o| o.kind == c.kind) {
                bail!(
                    "{at}: a second `{}` callback (the first is #{}): one callback per method \
                     per run, as their TensorBoard tags and CSV columns are named by method; \
                     use another run for another layer",
                    c.kind,
                    first + 1
                );
            }
            c.check().with_context(|| format!("{at} ({})", c.kind))?;
        }
        Ok(())
    }
}

impl SyntheticConfig {
    /// Counts, size and cue of a synthetic set (`eval`: the config's other eval sets).
    pub fn check(&self, eval: &[EvalConfig]) -> Result<()> {
        if self.train < 2 || self.val < 2 || self.train > 1_000_000 || self.val > 1_000_000 {
            bail!("[data] synthetic needs 2 to 1,000,000 train and val images");
        }
        model::Classifier::check_input_size(self.size, self.size)
            .map_err(|e| anyhow::anyhow!("[data] synthetic size: {e}"))?;
        match &self.cue {
            Some(cue) => check_cue(cue, self.size, eval),
            None => Ok(()),
        }
    }
}

/// `[data] synthetic.cue`: a mark that fits a corner, shares in [0, 1], and no eval set of
/// the names it adds.
fn check_cue(cue: &CueConfig, size: usize, eval: &[EvalConfig]) -> Result<()> {
    let side = cue.side(size);
    if side < 2 || side > size / 2 {
        bail!("[data] synthetic.cue size: {side} px must be 2 to half the image's {size} px");
    }
    for (key, share) in [
        ("mark_agrees", cue.mark_agrees),
        ("animal_agrees", cue.animal_agrees),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("[data] synthetic.cue {key}: {share} is not a share in [0, 1]");
        }
    }
    for e in eval {
        if crate::data::synth::cue::EVAL_SETS.contains(&e.name.as_str()) {
            bail!(
                "[data.eval] {:?}: a synthetic cue adds the eval sets \"cue\" and \"clean\" itself",
                e.name
            );
        }
    }
    Ok(())
}
