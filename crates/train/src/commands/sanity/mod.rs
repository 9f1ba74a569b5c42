//! `train sanity --run runs/<run>`: the model-parameter randomisation test (Adebayo et al.
//! 2018) on a finished run. The head is re-initialised, then the backbone block by block from
//! the top (cascading); after each stage every method's maps of the run's logged validation
//! images are compared with the trained model's (Spearman of the raw maps with and without
//! absolute values, SSIM of the normalised maps). Writes `<run>/sanity/`: sanity.csv,
//! sanity.png (the three curves), `<method>_maps.png` (images × stages) and a TensorBoard log
//! (scalars `sanity/<method>/<measure>` at step = stage, the table, the map grids).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use callbacks::scores::sanity::{similarity, Similarity};
use callbacks::{explain, Method, Target};
use model::{Classifier, Head};

mod outputs;

/// Arguments of `train sanity`.
#[derive(Debug, clap::Args)]
pub struct SanityArgs {
    /// The run directory (runs/<name>-<stamp>).
    #[arg(long)]
    pub run: PathBuf,
    /// Methods to check, comma-separated (default: the run's callbacks; `all` = every method
    /// at the first callback's layer).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// At most this many of the run's logged validation images.
    #[arg(long, default_value_t = 16)]
    pub images: usize,
    /// Seed of the first re-initialisation (repeat r uses seed + r).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent random draws of the whole cascade; the table reports their mean and
    /// standard deviation (one draw is noisy: a random head can flip a map's sign or not).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// One method at one layer.
pub(crate) struct Checked {
    pub(crate) method: Method,
    pub(crate) layer: String,
}

/// Everything the outputs show.
pub(crate) struct Findings {
    pub(crate) checked: Vec<Checked>,
    /// "trained", "head", then the blocks top first.
    pub(crate) stage_names: Vec<String>,
    /// Mean and standard deviation over draws: [method][stage − 1].
    pub(crate) table: Vec<Vec<(Similarity, Similarity)>>,
    /// The trained maps and the first draw's stages.
    pub(crate) first_stages: Vec<StageMaps>,
    pub(crate) photos: Vec<image::RgbImage>,
    pub(crate) names: Vec<String>,
    pub(crate) draws: usize,
}

/// The maps of every checked method at one stage: (raw [N·h·w], raw size, maps [N·H·W]).
pub(crate) type StageMaps = Vec<(Vec<f32>, [usize; 2], Vec<f32>)>;

/// Run `train sanity`.
pub fn run(args: &SanityArgs) -> Result<()> {
    let (config, run_dir) = crate::run::fit::run_config(&args.run, "--run")?;
    let device = model::device_from_name(&config.run.device).map_err(anyhow::Error::msg)?;
    let head_path = run_dir.join("head.safetensors");
    if !head_path.is_file() {
        bail!(
            "{}: no head.safetensors (has the run finished an epoch?)",
            run_dir.display()
        );
    }
    let model = crate::commands::classifier::load_classifier(
        config.model.backbone,
        &config.model.weights,
        config.model.head,
        &head_path,
        ["[model] weights", "the run's head"],
        &device,
    )?;

    let checked = checked_methods(args, &config, &model)?;
    let (names, photos) = logged_photos(&run_dir, args.images)?;
    let x = crate::data::images::to_tensor(&photos, &device);
    // Every stage explains the classes the trained model predicts.
    let logits = crate::tensors::to_vec(model.forward(x.clone()))?;
    let per_row = logits.len() / photos.len();
    let classes: Vec<usize> = logits
        .chunks(per_row)
        .map(|row| callbacks::scores::probabilities::prediction(row).0)
        .collect();

    let trained = stage_maps(&model, &x, &classes, &checked)?;
    let [h, w] = [photos[0].height() as usize, photos[0].width() as usize];
    let stage_names = stage_names(&model);
    // draws[r][method][stage − 1]; the first draw's maps are kept for the grids.
    let mut draws: Vec<Vec<Vec<Similarity>>> = Vec::new();
    let mut first_stages: Vec<StageMaps> = vec![trained.clone()];
    for r in 0..args.repeats.max(1) {
        device.seed(args.seed.wrapping_add(r as u64));
        let mut random = model.clone();
        random.head = Head::new(
            model.head.kind(),
            model.head.fc1.weight.dims()[0],
            model.head.num_classes(),
            &device,
        );
        let mut stages = vec![stage_maps(&random, &x, &classes, &checked)?];
        for (_, layers) in model.backbone.blocks() {
            for layer in layers {
                random.backbone.reinitialize(layer);
            }
            stages.push(stage_maps(&random, &x, &classes, &checked)?);
        }
        draws.push(
            (0..checked.len())
                .map(|m| {
                    let (raw0, raw_size, maps0) = &trained[m];
                    stages
                        .iter()
                        .map(|st| similarity(raw0, &st[m].0, *raw_size, maps0, &st[m].2, [h, w]))
                        .collect()
                })
                .collect(),
        );
        if r == 0 {
            first_stages.extend(stages);
        }
    }
    // mean and standard deviation over draws: [method][stage − 1].
    let table: Vec<Vec<(Similarity, Similarity)>> = (0..checked.len())
        .map(|m| {
            (0..stage_names.len() - 1)
                .map(|s| mean_std(&draws.iter().map(|d| d[m][s]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    outputs::write(
        &run_dir,
        &Findings {
            checked,
            stage_names,
            table,
            first_stages,
            photos,
            names,
            draws: args.repeats.max(1),
        },
    )
}

/// The names and photos of the first `images` (at least one) validation images the run logged.
fn logged_photos(
    run_dir: &std::path::Path,
    images: usize,
) -> Result<(Vec<String>, Vec<image::RgbImage>)> {
    let originals = crate::event_images::logged_images(run_dir, "originals/")?;
    if originals.is_empty() {
        bail!(
            "{}: the run logged no validation images (originals/* in its TensorBoard log; \
             it needs [[callbacks]] and [logging] tensorboard = true)",
            run_dir.display()
        );
    }
    let originals: Vec<_> = originals.into_iter().take(images.max(1)).collect();
    let names: Vec<String> = originals
        .iter()
        .map(|(tag, ..)| tag.trim_start_matches("originals/").to_string())
        .collect();
    let photos: Vec<image::RgbImage> = originals.into_iter().map(|(_, _, p)| p).collect();
    Ok((names, photos))
}

/// "trained", "head", then the backbone's blocks top first.
fn stage_names(model: &Classifier) -> Vec<String> {
    let mut stage_names = vec!["trained".to_string(), "head".to_string()];
    // EfficientNet's last conv is the layer `head`; its stage is `head_conv` so it is not
    // confused with the classifier head's stage.
    stage_names.extend(model.backbone.blocks().into_iter().map(|(name, _)| {
        if name == "head" {
            "head_conv".to_string()
        } else {
            name
        }
    }));
    stage_names
}

/// The methods to check: `--methods`, or the run's callbacks.
fn checked_methods(
    args: &SanityArgs,
    config: &crate::config::Config,
    model: &Classifier,
) -> Result<Vec<Checked>> {
    let default_layer = config
        .callbacks
        .first()
        .map(|c| c.layer.clone())
        .unwrap_or_else(|| model.layer_name(model.head_input()).to_string());
    let checked: Vec<Checked> = if args.methods.is_empty() {
        config
            .callbacks
            .iter()
            .map(|c| Checked {
                method: c.kind,
                layer: c.layer.clone(),
            })
            .collect()
    } else if args.methods == ["all"] {
        Method::ALL
            .iter()
            .filter(|m| callbacks::check_method(model, &default_layer, **m).is_ok())
            .map(|&method| Checked {
                method,
                layer: default_layer.clone(),
            })
            .collect()
    } else {
        let mut methods = args.methods.clone();
        methods.dedup();
        methods
            .iter()
            .map(|m| {
                let method: Method = m
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--methods: {e}"))?;
                Ok(Checked {
                    method,
                    layer: default_layer.clone(),
                })
            })
            .collect::<Result<_>>()?
    };
    for c in &checked {
        callbacks::check_method(model, &c.layer, c.method)
            .with_context(|| format!("{} at `{}`", c.method, c.layer))?;
    }
    if checked.is_empty() {
        bail!("nothing to check: the run has no [[callbacks]]; pass --methods");
    }
    Ok(checked)
}

/// Mean and (population) standard deviation of each measure.
fn mean_std(values: &[Similarity]) -> (Similarity, Similarity) {
    let n = values.len().max(1) as f32;
    let stat = |get: fn(&Similarity) -> f32| {
        let mean = values.iter().map(get).sum::<f32>() / n;
        let var = values.iter().map(|v| (get(v) - mean).powi(2)).sum::<f32>() / n;
        (mean, var.sqrt())
    };
    let (a, b, c) = (
        stat(|s| s.spearman),
        stat(|s| s.spearman_abs),
        stat(|s| s.ssim),
    );
    (
        Similarity {
            spearman: a.0,
            spearman_abs: b.0,
            ssim: c.0,
        },
        Similarity {
            spearman: a.1,
            spearman_abs: b.1,
            ssim: c.1,
        },
    )
}

/// Every checked method's raw and normalised maps for the trained model's classes.
fn stage_maps(
    model: &Classifier,
    x: &Tensor<4>,
    classes: &[usize],
    checked: &[Checked],
) -> Result<StageMaps> {
    let [n, _, h, w] = x.dims();
    let device = x.device();
    let mut out = Vec::new();
    for c in checked {
        let (mut raw, mut maps, mut raw_size) = (vec![Vec::new(); n], vec![Vec::new(); n], [0, 0]);
        let mut distinct: Vec<usize> = classes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for class in distinct {
            let rows: Vec<usize> = (0..n).filter(|&i| classes[i] == class).collect();
            let index = Tensor::<1, Int>::from_data(
                TensorData::new(
                    rows.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [rows.len()],
                ),
                &device,
            );
            let e = explain(
                model,
                x.clone().select(0, index),
                &c.layer,
                c.method,
                Target::Class(class),
            )
            .with_context(|| format!("{} at `{}`", c.method, c.layer))?;
            let [_, rh, rw] = e.raw.dims();
            raw_size = [rh, rw];
            let (r, m) = (
                crate::tensors::to_vec(e.raw)?,
                crate::tensors::to_vec(e.maps)?,
            );
            for (k, &i) in rows.iter().enumerate() {
                raw[i] = r[k * rh * rw..(k + 1) * rh * rw].to_vec();
                maps[i] = m[k * h * w..(k + 1) * h * w].to_vec();
            }
        }
        out.push((raw.concat(), raw_size, maps.concat()));
    }
    Ok(out)
}
