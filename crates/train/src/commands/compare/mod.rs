//! `train compare runs/<a> runs/<b> [...] --out DIR`: one HTML page comparing runs — per
//! validation image the original and every run's overlays at selected epochs side by side,
//! then, per run and method, the image's evolution (an animated GIF of every logged step and a
//! strip of up to 11 of them, step 0 = the untrained head); every metric of metrics.csv as a
//! chart (SVG, one line per run and method), the final metrics as a table, and each run's
//! sanity-check plot when `train sanity` was run. Images and charts are files beside
//! `index.html` (copy the directory to share it). The page counts its images once loaded and
//! shows a red banner if any failed (`<body data-images-broken>`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::run::metrics::MetricsTable;
use anyhow::{bail, Context, Result};
use tensorboard::read::LoggedImage;

mod charts;
mod evolution;
mod html;
mod overlays;

use html::{escape, header, FOOTER};

/// Arguments of `train compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Run directories (runs/<name>-<stamp>).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output directory (created; index.html, images/, plots/).
    #[arg(long)]
    pub out: PathBuf,
    /// Epochs whose overlays are shown in the tables, comma-separated (default: each run's
    /// first, middle and last logged step, 0 = the untrained head).
    #[arg(long, value_delimiter = ',')]
    pub epochs: Vec<i64>,
    /// At most this many validation images.
    #[arg(long, default_value_t = 8)]
    pub images: usize,
}

/// What the report needs of one run.
struct Run {
    dir: PathBuf,
    /// The directory's name.
    name: String,
    /// The name in legends and headers: without the time stamp when that leaves the runs
    /// distinct.
    label: String,
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
    let (config, _) = crate::run::fit::run_config(dir, "compare")?;
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
        label: stamp.clone(),
        name: stamp,
        metrics,
        images,
        methods,
    })
}

/// Run `train compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let mut runs = args
        .runs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    for (r, label) in labels(&names).into_iter().enumerate() {
        runs[r].label = label;
    }
    let images_dir = args.out.join("images");
    let plots_dir = args.out.join("plots");
    for dir in [&images_dir, &plots_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let epochs = chosen_epochs(&runs, &args.epochs)?;

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
        "<p>Made by <code>train compare</code> on {}.</p>",
        chrono::Local::now().format("%Y-%m-%d %H:%M"),
    );
    let _ = writeln!(html, "<ul>");
    for (r, epochs) in runs.iter().zip(&epochs) {
        let _ = writeln!(
            html,
            "<li><b>{}</b>: {} epochs, methods {}, overlays shown at {} <small>({})</small></li>",
            escape(&r.label),
            r.metrics.rows.iter().filter(|row| row.epoch > 0).count(),
            escape(&r.methods.join(", ")),
            epochs
                .iter()
                .map(|&e| html::step_label(e))
                .collect::<Vec<_>>()
                .join(", "),
            escape(&r.dir.display().to_string())
        );
    }
    let _ = writeln!(html, "</ul>");

    html.push_str(&overlays::section(
        &runs,
        &epochs,
        args.images,
        &images_dir,
    )?);
    html.push_str(&charts::section(&runs, &plots_dir)?);
    html.push_str(&final_table(&runs));
    html.push_str(&sanity(&runs, &images_dir)?);
    html.push_str(FOOTER);
    let index = args.out.join("index.html");
    crate::run::files::write_atomic(&index, html.as_bytes())?;
    println!("report written to {}", index.display());
    Ok(())
}

/// The steps at which `run` logged overlays (tags `<method>/<image>`; 0 = the untrained head).
fn overlay_steps(run: &Run) -> BTreeSet<i64> {
    run.images
        .iter()
        .filter(|i| {
            i.tag
                .split_once('/')
                .is_some_and(|(m, _)| run.methods.iter().any(|x| x == m))
        })
        .map(|i| i.step)
        .collect()
}

/// The epochs of each run's overlay table: `requested` for every run (each logged by some
/// run), or each run's own first, middle and last logged step.
fn chosen_epochs(runs: &[Run], requested: &[i64]) -> Result<Vec<Vec<i64>>> {
    let logged: Vec<BTreeSet<i64>> = runs.iter().map(overlay_steps).collect();
    if requested.is_empty() {
        return Ok(logged.iter().map(default_epochs).collect());
    }
    let union: BTreeSet<i64> = logged.into_iter().flatten().collect();
    for e in requested {
        if !union.contains(e) {
            bail!(
                "--epochs {e}: no run logged overlays at epoch {e} (logged: {})",
                union
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(vec![requested.to_vec(); runs.len()])
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

/// A run directory's name without its time stamp (`<name>-<YYYYmmdd>-<HHMMSS>[-n]`).
fn without_stamp(name: &str) -> &str {
    match crate::run::files::parse_run_dir_name(name) {
        Some((short, ..)) => short,
        None => name,
    }
}

/// The runs' labels: their names without time stamps when these are distinct, else the names.
fn labels(names: &[&str]) -> Vec<String> {
    let short: Vec<&str> = names.iter().map(|n| without_stamp(n)).collect();
    let distinct: BTreeSet<&&str> = short.iter().collect();
    let pick = if distinct.len() == short.len() {
        short
    } else {
        names.to_vec()
    };
    pick.into_iter().map(String::from).collect()
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
        "<h2>Final metrics (last epoch)</h2>\n<div class=\"table-scroll\"><table class=\"metrics\"><tr><th>metric</th>",
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
    out.push_str("</table></div>\n");
    out
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
    use crate::run::metrics::Row;

    /// A run with these metric columns (three epochs of zeros) and `cam` overlays of one image
    /// at `steps`.
    pub(super) fn run_with(name: &str, columns: &[&str], steps: &[i64]) -> Run {
        let row = |epoch| Row {
            epoch,
            values: columns.iter().map(|c| (c.to_string(), 0.5)).collect(),
        };
        let mut images = vec![LoggedImage {
            tag: "originals/cat".into(),
            step: 0,
            png: vec![],
        }];
        for &step in steps {
            for tag in ["cam/cat", "cam/grid"] {
                images.push(LoggedImage {
                    tag: tag.into(),
                    step,
                    png: vec![],
                });
            }
        }
        Run {
            dir: PathBuf::from("runs").join(name),
            name: name.into(),
            label: without_stamp(name).into(),
            metrics: MetricsTable {
                columns: columns.iter().map(|c| c.to_string()).collect(),
                rows: (1..=3).map(row).collect(),
            },
            images,
            methods: vec!["cam".into()],
        }
    }

    #[test]
    fn default_epochs_and_names() {
        let logged: BTreeSet<i64> = (1..=10).collect();
        assert_eq!(default_epochs(&logged), vec![1, 6, 10]);
        assert_eq!(default_epochs(&BTreeSet::from([3])), vec![3]);
        assert!(default_epochs(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn compare_epochs_are_chosen_per_run() {
        let short = run_with("short-20250101-120000", &[], &(0..=10).collect::<Vec<_>>());
        let long = run_with("long-20250101-120000", &[], &(0..=20).collect::<Vec<_>>());
        // A run from before step-0 logging.
        let old = run_with("old-20240101-120000", &[], &(1..=10).collect::<Vec<_>>());
        let runs = [short, long, old];
        assert_eq!(
            chosen_epochs(&runs, &[]).unwrap(),
            vec![vec![0, 5, 10], vec![0, 10, 20], vec![1, 6, 10]]
        );
        // Requested epochs apply to every run (a run lacking one shows "not logged").
        assert_eq!(
            chosen_epochs(&runs, &[15, 10]).unwrap(),
            vec![vec![15, 10]; 3]
        );
        let err = chosen_epochs(&runs, &[21]).unwrap_err().to_string();
        assert!(
            err.starts_with("--epochs 21: no run logged overlays at epoch 21 (logged: 0, 1, 2,")
        );
        // The originals (step 0) are no overlays.
        let none = run_with("none-20250101-120000", &[], &[]);
        assert!(overlay_steps(&none).is_empty());
    }

    #[test]
    fn compare_labels_drop_distinct_stamps() {
        assert_eq!(without_stamp("frozen-20250101-120000"), "frozen");
        assert_eq!(without_stamp("fine-tune-20250101-120000-2"), "fine-tune");
        assert_eq!(without_stamp("a-b"), "a-b");
        assert_eq!(without_stamp("-20250101-120000"), "-20250101-120000");
        assert_eq!(
            labels(&["frozen-20250101-120000", "tuned-20250101-130000"]),
            ["frozen", "tuned"]
        );
        // The same config twice: the stamps tell them apart.
        assert_eq!(
            labels(&["a-20250101-120000", "a-20250101-130000"]),
            ["a-20250101-120000", "a-20250101-130000"]
        );
    }
}
