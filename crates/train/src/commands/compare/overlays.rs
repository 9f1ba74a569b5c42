//! The heatmaps section: per validation image, the original and every run's overlays at that
//! run's chosen epochs in one table, then every run's and method's evolution views (GIF and
//! strip, see [`super::evolution`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tensorboard::read::LoggedImage;

use super::evolution;
use super::html::{escape, file_safe, step_label};
use super::Run;

/// The section; `epochs[r]` are run r's epochs in the table. Files go to `images_dir`.
pub fn section(
    runs: &[Run],
    epochs: &[Vec<i64>],
    limit: usize,
    images_dir: &Path,
) -> Result<String> {
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
                for &epoch in &epochs[ri] {
                    let _ = write!(
                        out,
                        "<th>{} {}<br>{}</th>",
                        escape(&r.label),
                        escape(method),
                        step_label(epoch)
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
        out.push_str("</tr></table>\n<div class=\"evolutions\">\n");
        for (ri, r) in runs.iter().enumerate() {
            for method in &r.methods {
                let title = format!("{} {method}", r.label);
                let stem = format!("img{k}_run{ri}_{method}");
                match evolution::write(&r.images, &format!("{method}/{name}"), images_dir, &stem)? {
                    Some(views) => out.push_str(&evolution::html(&views, &title)),
                    None => {
                        let _ = writeln!(
                            out,
                            "<p class=\"missing\">{}: no overlays of this image logged</p>",
                            escape(&title)
                        );
                    }
                }
            }
        }
        out.push_str("</div>\n");
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
