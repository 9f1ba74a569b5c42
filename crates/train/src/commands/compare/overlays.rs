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
        // Figures that wrap onto as many rows as the window needs (a table of every run,
        // method and epoch was wider than a laptop's window).
        let _ = writeln!(out, "<h3>{}</h3>\n<div class=\"overlays\">", escape(name));
        let original = find(first, &format!("originals/{name}"), 0);
        out.push_str(&save(
            original,
            images_dir,
            &format!("img{k}_original"),
            "original",
        )?);
        // Another run's photo of that name, where it differs (a set with a cue, say).
        for (ri, r) in runs.iter().enumerate().skip(1) {
            let theirs = find(r, &format!("originals/{name}"), 0);
            if theirs.is_some() && theirs.map(|i| &i.png) != original.map(|i| &i.png) {
                let caption = format!("original<br>{}", escape(&r.label));
                let stem = format!("img{k}_run{ri}_original");
                out.push_str(&save(theirs, images_dir, &stem, &caption)?);
            }
        }
        for (ri, r) in runs.iter().enumerate() {
            for method in &r.methods {
                for &epoch in &epochs[ri] {
                    let caption = format!(
                        "{} {}<br>{}",
                        escape(&r.label),
                        escape(method),
                        step_label(epoch)
                    );
                    let image = find(r, &format!("{method}/{name}"), epoch);
                    out.push_str(&save(
                        image,
                        images_dir,
                        &format!("img{k}_run{ri}_{method}_e{epoch}"),
                        &caption,
                    )?);
                }
            }
        }
        out.push_str("</div>\n<div class=\"evolutions\">\n");
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

/// A figure with the image saved beside the page and `caption` (HTML) under it, or a note that
/// the run lacks it.
fn save(image: Option<&LoggedImage>, dir: &Path, stem: &str, caption: &str) -> Result<String> {
    let Some(image) = image else {
        return Ok(format!(
            "<figure class=\"missing\"><div class=\"absent\">not logged</div>\
             <figcaption>{caption}</figcaption></figure>"
        ));
    };
    let file = format!("{}.png", file_safe(stem));
    let path = dir.join(&file);
    std::fs::write(&path, &image.png)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!(
        "<figure><img src=\"images/{file}\" alt=\"{}\"><figcaption>{caption}</figcaption></figure>",
        escape(stem)
    ))
}
