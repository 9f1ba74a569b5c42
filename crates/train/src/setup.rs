//! Getting a run's inputs ready: the data sets (generating a synthetic one when asked) and the
//! validation images with boxes that the localization metrics score.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use callbacks::LocalizationSet;

use crate::config::Config;
use crate::data::{self, Dataset};
use crate::features::Extractor;
use crate::synth;

/// Where a synthetic data set lives, generating it on first use.
pub fn synthetic_dir(config: &Config) -> Result<Option<PathBuf>> {
    let Some(s) = &config.data.synthetic else {
        return Ok(None);
    };
    let cache = config.run.runs_dir.join(".cache");
    let dir = cache.join(format!(
        "synthetic-seed{}-train{}-val{}-{}px",
        s.seed, s.train, s.val, s.size
    ));
    if !dir.join("boxes.json").is_file() {
        let tmp = cache.join(format!("synthetic-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let start = Instant::now();
        synth::write_dataset(&tmp, s.seed, s.train, s.val, s.size)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move {} into place", dir.display()))?;
        println!(
            "generated {} synthetic images in {:.1} s: {}",
            s.train + s.val,
            start.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    Ok(Some(dir))
}

pub fn load_data(config: &Config) -> Result<(Dataset, Dataset)> {
    let train_dir = config
        .data
        .train_dir
        .clone()
        .context("[data] train_dir is missing")?;
    let train = data::scan(&train_dir, "[data] train_dir")?;
    let (train, val) = match &config.data.val_dir {
        Some(dir) => (train, data::scan(dir, "[data] val_dir")?),
        None => data::split(
            train,
            config.data.val_fraction.unwrap_or(0.2),
            config.run.seed,
        ),
    };
    if train.classes != val.classes {
        bail!(
            "[data] train classes {:?} differ from validation classes {:?}",
            train.classes,
            val.classes
        );
    }
    Ok((train, val))
}

/// The validation images that have boxes (up to `localization_images`), with their activations.
pub fn localization_set(
    extractor: &Extractor,
    val: &Dataset,
    boxes: &std::collections::HashMap<String, [f32; 4]>,
    spec: &crate::config::CallbackSpec,
) -> Result<(Option<LocalizationSet>, f64)> {
    let with_box: Vec<&crate::data::Sample> = val
        .samples
        .iter()
        .filter(|s| {
            s.path
                .file_name()
                .is_some_and(|n| boxes.contains_key(&*n.to_string_lossy()))
        })
        .take(spec.localization_images)
        .collect();
    if with_box.is_empty() {
        println!(
            "{}: no validation image has a box: no localization metrics",
            spec.method
        );
        return Ok((None, 0.0));
    }
    let (activations, seconds) = extractor.maps(&with_box, &spec.layer)?;
    let mut set = LocalizationSet {
        activations,
        input_size: extractor.size,
        boxes: Vec::new(),
        sizes: Vec::new(),
        threshold: spec.localization_threshold,
    };
    for s in with_box {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (w, h) = image::image_dimensions(&s.path)
            .with_context(|| format!("cannot read {}", s.path.display()))?;
        set.boxes.push(boxes[&name]);
        set.sizes.push((w as usize, h as usize));
    }
    Ok((Some(set), seconds))
}
