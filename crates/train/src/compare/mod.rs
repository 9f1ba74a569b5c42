//! `train compare runs/<a> runs/<b> [...] --out DIR`: one HTML page comparing runs — per
//! validation image the original and every run's overlays at selected epochs side by side,
//! every metric of metrics.csv as a chart (SVG, one line per run and method), the final
//! metrics as a table, and each run's sanity-check plot when `train sanity` was run. Images and
//! charts are files beside `index.html` (copy the directory to share it). The page counts its
//! images once loaded and shows a red banner if any failed (`<body data-images-broken>`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::{Metric, MetricsTable};
use anyhow::{bail, Context, Result};
use tensorboard::read::LoggedImage;

use crate::plot::{LineChart, Series};

mod html;

use html::{escape, file_safe, header, FOOTER};

/// Arguments of `train compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Run directories (runs/<name>-<stamp>).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output directory (created; index.html, images/, plots/).
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs whose overlays are shown, comma-separated (default: first, middle and last).
    #[arg(long, value_delimiter = ',')]
    pub epochs: Vec<i64>,
    /// At most this many validation images.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
}

/// What the report needs of one run.
struct Run {
    dir: PathBuf,
    name: String,
    metrics: MetricsTable,
    /// Every logged image (PNG bytes, not decoded).
    images: Vec<LoggedImage>,
    /// Methods with overlays, in config order.
    methods: Vec<String>,
}

fn load_run(dir: &Path) -> Result<Run> {
    let metrics = dir.join("metrics.csv");
    if !metrics.is_file() {
        bail!(
            "{}: no metrics.csv (is it a run directory that finished an epoch?)",
            dir.display()
        );
    }
    let (config, _) = crate::fit::run_config(dir, "compare")?;
    let metrics = MetricsTable::read(&metrics)?;
    let images = tensorboard::read::run_images(dir, "")
        .with_context(|| format!("cannot read the event files in {}", dir.display()))?;
    let methods: Vec<String> = config
        .callbacks
        .iter()
        .map(|c| c.kind.to_string())
        .collect();
    let stamp = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Run {
        dir: dir.to_path_buf(),
        name: stamp,
        metrics,
        images,
        methods,
    })
}

/// Run `train compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    let images_dir = args.out.join("images");
    let plots_dir = args.out.join("plots");
    for dir in [&images_dir, &plots_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let logged_epochs: BTreeSet<i64> = runs
        .iter()
        .flat_map(|r| r.images.iter().map(|i| i.step).filter(|s| *s > 0))
        .collect();
    let epochs = if args.epochs.is_empty() {
        default_epochs(&logged_epochs)
    } else {
        for e in &args.epochs {
            if !logged_epochs.contains(e) {
                bail!(
                    "--epochs {e}: no run logged overlays at epoch {e} (logged: {})",
                    logged_epochs
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        args.epochs.clone()
    };

    let mut html = String::new();
    let title = format!(
        "Compare: {}",
        runs.iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    let _ = write!(html, "{}", header(&title));
    let _ = writeln!(html, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        html,
        "<p>Made by <code>train compare</code> on {}. Overlays at epochs {}.</p>",
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
        epochs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(html, "<ul>");
    for r in &runs {
        let _ = writeln!(
            html,
            "<li><b>{}</b>: {} epochs, methods {} <small>({})</small></li>",
            escape(&r.name),
            r.metrics.rows.len(),
            escape(&r.methods.join(", ")),
            escape(&r.dir.display().to_string())
        );
    }
    let _ = writeln!(html, "</ul>");

    html.push_str(&overlays(&runs, &epochs, args.images, &images_dir)?);
    html.push_str(&charts(&runs, &plots_dir)?);
    html.push_str(&final_table(&runs));
    html.push_str(&sanity(&runs, &images_dir)?);
    html.push_str(FOOTER);
    let index = args.out.join("index.html");
    crate::files::write_atomic(&index, html.as_bytes())?;
    println!("report written to {}", index.display());
    Ok(())
}

/// First, middle and last logged epoch.
fn default_epochs(logged: &BTreeSet<i64>) -> Vec<i64> {
    let all: Vec<i64> = logged.iter().copied().collect();
    let mut picked: Vec<i64> = [0, all.len() / 2, all.len().saturating_sub(1)]
        .iter()
        .filter_map(|&i| all.get(i).copied())
        .collect();
    picked.dedup();
    picked
}

/// Final (last-epoch) metrics: one row per metric, one column per run.
fn final_table(runs: &[Run]) -> String {
    let mut columns: Vec<&String> = Vec::new();
    for r in runs {
        for c in &r.metrics.columns {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
    }
    let mut out = String::from(
        "<h2>Final metrics (last epoch)</h2>\n<table class=\"metrics\"><tr><th>metric</th>",
    );
    for r in runs {
        let _ = write!(out, "<th>{}</th>", escape(&r.name));
    }
    out.push_str("</tr>\n");
    for c in columns {
        let _ = write!(out, "<tr><td>{}</td>", escape(c));
        for r in runs {
            let value = r.metrics.rows.last().and_then(|row| row.values.get(c));
            match value {
                Some(v) if v.is_finite() => {
                    let _ = write!(out, "<td>{v:.4}</td>");
                }
                _ => out.push_str("<td>–</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// A metric column's chart key and series label: method-specific columns of different runs
/// share a chart (`cam_pointing_game` and `gradcam_pointing_game` → `pointing_game`).
fn chart_key(column: &str) -> (String, Option<String>) {
    match Metric::from_column(column) {
        Some(Metric::Score { method, score }) => (score, Some(method)),
        Some(Metric::Agreement { pair, measure }) => (format!("agreement_{measure}"), Some(pair)),
        _ => (column.to_string(), None),
    }
}

fn charts(runs: &[Run], plots_dir: &Path) -> Result<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in runs {
        for c in &r.metrics.columns {
            let key = chart_key(c).0;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut out = String::from("<h2>Metrics per epoch</h2>\n<div class=\"charts\">\n");
    for key in keys {
        let mut series = Vec::new();
        for r in runs {
            for c in &r.metrics.columns {
                let (k, label) = chart_key(c);
                if k != key {
                    continue;
                }
                series.push(Series {
                    name: match label {
                        Some(l) => format!("{} {l}", r.name),
                        None => r.name.clone(),
                    },
                    points: r
                        .metrics
                        .rows
                        .iter()
                        .map(|row| {
                            let value = row.values.get(c).map_or(f64::NAN, |&v| f64::from(v));
                            (row.epoch as f64, value)
                        })
                        .collect(),
                });
            }
        }
        let file = format!("{}.svg", file_safe(&key));
        crate::plot::svg(
            &LineChart {
                title: key.replace('_', " "),
                x_label: "epoch".into(),
                y_label: key.replace('_', " "),
                x_names: None,
                series,
            },
            (560, 360),
            &plots_dir.join(&file),
        )?;
        let _ = writeln!(
            out,
            "<img class=\"chart\" src=\"plots/{file}\" alt=\"{}\">",
            escape(&key)
        );
    }
    out.push_str("</div>\n");
    Ok(out)
}

fn overlays(runs: &[Run], epochs: &[i64], limit: usize, images_dir: &Path) -> Result<String> {
    let mut out = String::from("<h2>Heatmaps per validation image</h2>\n");
    let Some(first) = runs.first() else {
        return Ok(out);
    };
    let names: Vec<String> = first
        .images
        .iter()
        .filter_map(|i| i.tag.strip_prefix("originals/").map(str::to_string))
        .take(limit)
        .collect();
    if names.is_empty() {
        out.push_str("<p>The first run logged no validation images.</p>\n");
        return Ok(out);
    }
    for (k, name) in names.iter().enumerate() {
        let _ = writeln!(
            out,
            "<h3>{}</h3>\n<table class=\"overlays\"><tr><th>original</th>",
            escape(name)
        );
        let mut cells = Vec::new();
        let original = find(first, &format!("originals/{name}"), 0);
        cells.push(save(original, images_dir, &format!("img{k}_original"))?);
        for (ri, r) in runs.iter().enumerate() {
            for method in &r.methods {
                for &epoch in epochs {
                    let _ = write!(
                        out,
                        "<th>{} {}<br>epoch {epoch}</th>",
                        escape(&r.name),
                        escape(method)
                    );
                    let image = find(r, &format!("{method}/{name}"), epoch);
                    cells.push(save(
                        image,
                        images_dir,
                        &format!("img{k}_run{ri}_{method}_e{epoch}"),
                    )?);
                }
            }
        }
        out.push_str("</tr>\n<tr>");
        for cell in cells {
            out.push_str(&cell);
        }
        out.push_str("</tr></table>\n");
    }
    Ok(out)
}

/// The image of `tag` at `step` (the last one logged: a resumed run may log a step twice).
fn find<'a>(run: &'a Run, tag: &str, step: i64) -> Option<&'a LoggedImage> {
    run.images
        .iter()
        .rev()
        .find(|i| i.tag == tag && i.step == step)
}

/// A table cell with the image saved beside the page, or a note that the run lacks it.
fn save(image: Option<&LoggedImage>, dir: &Path, stem: &str) -> Result<String> {
    let Some(image) = image else {
        return Ok("<td class=\"missing\">not logged</td>".into());
    };
    let file = format!("{}.png", file_safe(stem));
    let path = dir.join(&file);
    std::fs::write(&path, &image.png)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!(
        "<td><img src=\"images/{file}\" alt=\"{}\"></td>",
        escape(stem)
    ))
}

fn sanity(runs: &[Run], images_dir: &Path) -> Result<String> {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let plot = r.dir.join("sanity/sanity.png");
        if !plot.is_file() {
            continue;
        }
        if out.is_empty() {
            out.push_str("<h2>Sanity checks (model-parameter randomisation)</h2>\n");
        }
        let file = format!("sanity_run{i}.png");
        std::fs::copy(&plot, images_dir.join(&file))
            .with_context(|| format!("cannot copy {}", plot.display()))?;
        let _ = writeln!(
            out,
            "<h3>{}</h3>\n<img class=\"wide\" src=\"images/{file}\" alt=\"sanity check of {}\">",
            escape(&r.name),
            escape(&r.name)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_keys_group_methods_and_pairs() {
        assert_eq!(chart_key("val_accuracy"), ("val_accuracy".into(), None));
        assert_eq!(
            chart_key("gradcam++_deletion_auc"),
            ("deletion_auc".into(), Some("gradcam++".into()))
        );
        assert_eq!(
            chart_key("cam_pointing_game"),
            ("pointing_game".into(), Some("cam".into()))
        );
        assert_eq!(
            chart_key("cam_vs_gradcam_top20_iou"),
            ("agreement_top20_iou".into(), Some("cam_vs_gradcam".into()))
        );
        assert_eq!(
            chart_key("cam@block4_conv3_vs_cam@block5_conv3_spearman"),
            (
                "agreement_spearman".into(),
                Some("cam@block4_conv3_vs_cam@block5_conv3".into())
            )
        );
    }

    #[test]
    fn default_epochs_and_names() {
        let logged: BTreeSet<i64> = (1..=10).collect();
        assert_eq!(default_epochs(&logged), vec![1, 6, 10]);
        assert_eq!(default_epochs(&BTreeSet::from([3])), vec![3]);
        assert!(default_epochs(&BTreeSet::new()).is_empty());
    }
}
