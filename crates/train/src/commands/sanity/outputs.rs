//! What `train sanity` writes: the table (stdout, CSV, TensorBoard text), the plot, the map
//! grids and the TensorBoard scalars.

use anyhow::{Context, Result};
use callbacks::logging::grid::grid_with_columns;
use callbacks::scores::sanity::{unchanged, Similarity, UNCHANGED_SPEARMAN};
use callbacks::{overlay, OverlayStyle};
use tensorboard::EventWriter;

use super::Findings;
use crate::plot::{LineChart, Rule, Series, YAxis};

/// A similarity measure's name and getter.
type Measure = (&'static str, fn(&Similarity) -> f32);

pub(crate) fn write(run_dir: &std::path::Path, findings: &Findings) -> Result<()> {
    let Findings {
        checked,
        stage_names,
        table,
        ..
    } = findings;
    let out = run_dir.join("sanity");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    // Table: stdout, CSV and TensorBoard text.
    let mut csv = String::from(
        "stage,randomised,method,layer,spearman,spearman_std,spearman_abs,spearman_abs_std,ssim,ssim_std\n",
    );
    let mut markdown = String::from(
        "| randomised up to | method | Spearman | Spearman (abs) | SSIM |\n|---|---|---|---|---|\n",
    );
    println!(
        "{:<12} {:<10} {:>15} {:>15} {:>15}   (mean ± std over draws)",
        "randomised", "method", "Spearman", "Spearman (abs)", "SSIM"
    );
    let pm = |m: f32, s: f32| format!("{m:.3} ± {s:.3}");
    for (s, stage) in stage_names[1..].iter().enumerate() {
        for (c, rows) in checked.iter().zip(table) {
            let (r, d) = rows[s];
            println!(
                "{stage:<12} {:<10} {:>15} {:>15} {:>15}",
                c.method.name(),
                pm(r.spearman, d.spearman),
                pm(r.spearman_abs, d.spearman_abs),
                pm(r.ssim, d.ssim)
            );
            csv.push_str(&format!(
                "{},{stage},{},{},{},{},{},{},{},{}\n",
                s + 1,
                c.method,
                c.layer,
                r.spearman,
                d.spearman,
                r.spearman_abs,
                d.spearman_abs,
                r.ssim,
                d.ssim
            ));
            markdown.push_str(&format!(
                "| {stage} | {} | {} | {} | {} |\n",
                c.method,
                pm(r.spearman, d.spearman),
                pm(r.spearman_abs, d.spearman_abs),
                pm(r.ssim, d.ssim)
            ));
        }
    }
    let mut verdicts = String::new();
    for (c, rows) in checked.iter().zip(table) {
        let rows: Vec<Similarity> = rows.iter().map(|r| r.0).collect();
        let verdict = if unchanged(&rows) {
            format!(
                "FLAGGED: {} at `{}`: maps did not change under randomisation (Spearman (abs) ≥ \
                 {UNCHANGED_SPEARMAN} at every stage); they do not explain this model",
                c.method, c.layer
            )
        } else {
            format!(
                "ok: {} at `{}`: maps decorrelate under randomisation (Spearman (abs) after the \
                 head: {:.3}, after everything: {:.3})",
                c.method,
                c.layer,
                rows[0].spearman_abs,
                rows.last().map_or(f32::NAN, |r| r.spearman_abs)
            )
        };
        println!("{verdict}");
        verdicts.push_str(&format!("\n{verdict}\n"));
    }
    crate::run::files::write_atomic(&out.join("sanity.csv"), csv.as_bytes())?;

    plot(&out, findings)?;
    grids_and_tensorboard(&out, findings, &format!("{markdown}{verdicts}"))?;
    println!("sanity check written to {}", out.display());
    Ok(())
}

/// sanity.png: one chart per measure, one line per method (mean over draws, ± std as error
/// bars), x = stage; the Spearman (abs) chart has the flag line (a method whose maps stay at
/// or above it at every stage is flagged).
fn plot(out: &std::path::Path, findings: &Findings) -> Result<()> {
    crate::plot::png(&charts(findings), (520, 400), &out.join("sanity.png"))
}

fn charts(findings: &Findings) -> Vec<LineChart> {
    let Findings {
        checked,
        stage_names,
        table,
        ..
    } = findings;
    let x_names: Vec<String> = stage_names[1..].to_vec();
    let measures: [Measure; 3] = [
        ("Spearman (raw)", |s| s.spearman),
        ("Spearman (abs)", |s| s.spearman_abs),
        ("SSIM", |s| s.ssim),
    ];
    measures
        .iter()
        .map(|(title, get)| LineChart {
            title: format!("{title} vs trained maps (mean ± std)"),
            x_label: "randomised up to".into(),
            y_label: title.to_string(),
            x_names: Some(x_names.clone()),
            series: checked
                .iter()
                .zip(table)
                .map(|(c, rows)| Series {
                    name: c.method.to_string(),
                    points: rows
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (i as f64, get(&r.0) as f64))
                        .collect(),
                    errors: rows.iter().map(|r| get(&r.1) as f64).collect(),
                })
                .collect(),
            // Similarities of maps: 1 is unchanged; a random map can correlate negatively.
            y_axis: YAxis::Within(0.0, 1.0),
            rules: if *title == "Spearman (abs)" {
                vec![Rule {
                    value: f64::from(UNCHANGED_SPEARMAN),
                    label: format!("flag: ≥ {UNCHANGED_SPEARMAN} at every stage"),
                }]
            } else {
                vec![]
            },
        })
        .collect()
}

/// The map grids (first 4 images × stages, as PNG files and TensorBoard images), the scalars
/// per stage and the table (`report`: markdown table and verdicts) as TensorBoard text.
fn grids_and_tensorboard(out: &std::path::Path, findings: &Findings, report: &str) -> Result<()> {
    let Findings {
        checked,
        stage_names,
        table,
        first_stages: stages,
        photos,
        names,
        draws,
    } = findings;
    let mut writer = EventWriter::create(out)?;
    let style = OverlayStyle::default();
    let [h, w] = [photos[0].height() as usize, photos[0].width() as usize];
    let shown = photos.len().min(4);
    for (m, c) in checked.iter().enumerate() {
        let mut tiles = Vec::new();
        for (i, photo) in photos.iter().enumerate().take(shown) {
            for stage in stages {
                tiles.push(overlay(
                    &stage[m].2[i * h * w..(i + 1) * h * w],
                    photo,
                    &style,
                ));
            }
        }
        let grid = grid_with_columns(&tiles, stages.len());
        let file = out.join(format!("{}_maps.png", c.method.name().replace('+', "p")));
        grid.save(&file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        writer.add_image(&format!("sanity/{}/maps", c.method), &grid, 0)?;
        for (s, (r, _)) in table[m].iter().enumerate() {
            let step = s as i64 + 1;
            writer.add_scalar(&format!("sanity/{}/spearman", c.method), r.spearman, step)?;
            writer.add_scalar(
                &format!("sanity/{}/spearman_abs", c.method),
                r.spearman_abs,
                step,
            )?;
            writer.add_scalar(&format!("sanity/{}/ssim", c.method), r.ssim, step)?;
        }
    }
    let legend = format!(
        "Stages (step): {}. Images: {}. Mean ± std over {} random draws. Map grids (first draw): \
         rows = images, columns = trained, then each stage.\n\n",
        stage_names[1..]
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} = {s}", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
        names.join(", "),
        draws
    );
    writer.add_text("sanity/table", &format!("{legend}{report}"), 0)?;
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sanity::Checked;
    use callbacks::Method;

    #[test]
    fn sanity_charts_have_error_bars_and_the_flag_line() {
        let sim = |v: f32| Similarity {
            spearman: v,
            spearman_abs: v + 0.1,
            ssim: v - 0.1,
        };
        let findings = Findings {
            checked: vec![Checked {
                method: Method::Cam,
                layer: "block5_conv3".into(),
            }],
            stage_names: ["trained", "head", "block5"].map(String::from).to_vec(),
            table: vec![vec![(sim(0.8), sim(0.05)), (sim(0.3), sim(0.2))]],
            first_stages: vec![],
            photos: vec![],
            names: vec![],
            draws: 2,
        };
        let charts = charts(&findings);
        assert_eq!(charts.len(), 3);
        let rules: Vec<usize> = charts.iter().map(|c| c.rules.len()).collect();
        assert_eq!(rules, [0, 1, 0]);
        assert_eq!(charts[1].rules[0].value, f64::from(UNCHANGED_SPEARMAN));
        assert!(charts[1].title.starts_with("Spearman (abs)"));
        let abs = &charts[1].series[0];
        assert_eq!(abs.points.len(), 2);
        assert!((abs.points[1].1 - 0.4).abs() < 1e-6, "{:?}", abs.points);
        assert!((abs.errors[0] - 0.15).abs() < 1e-6, "{:?}", abs.errors);
        assert_eq!(
            charts[0].x_names.as_deref(),
            Some(&["head".into(), "block5".into()][..])
        );
        // Drawn: the flag line in its colour.
        let image = crate::plot::render(&charts, (400, 300)).unwrap();
        assert_eq!(image.dimensions(), (1200, 300));
    }
}
