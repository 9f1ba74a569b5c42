//! `train explain --boxes FILE`: score the maps `explain` wrote against each photo's head box
//! and, where the file has them, the animal's outline, beside the centre baseline; writes
//! `localization.json` to the output directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use callbacks::scores::localization::Map;
use callbacks::scores::localization_report::{
    score_photos, Annotation, Baseline, LocalizationReport, LocalizationSummary,
};

use crate::data::annotations::{upright_annotations, UprightAnnotations};

/// Read `boxes` and match it to the photos `paths`: photos (not a tensor file), no two with one
/// file name (entries are matched by file name), at least one with an entry. Returns the
/// matched photos' annotations, upright and checked against each photo.
pub fn annotations_for(boxes: &Path, paths: &[Option<PathBuf>]) -> Result<UprightAnnotations> {
    let annotations = crate::data::read_annotations(boxes)
        .with_context(|| format!("--boxes {}", boxes.display()))?;
    let mut names: HashMap<String, &Path> = HashMap::new();
    for path in paths {
        let Some(path) = path else {
            bail!("--boxes needs photos (boxes are matched by file name), not a tensor file");
        };
        let name = file_name(path);
        if let Some(earlier) = names.insert(name.clone(), path) {
            bail!(
                "--boxes {}: {} and {} share the file name `{name}`, and entries are matched by \
                 file name",
                boxes.display(),
                earlier.display(),
                path.display()
            );
        }
    }
    if !names.keys().any(|n| annotations.contains_key(n)) {
        bail!(
            "--boxes {}: none of the {} photos has an entry (entries are matched by file name)",
            boxes.display(),
            paths.len()
        );
    }
    // Each entry against its photo's size (headers only), before any map is computed.
    upright_annotations(&annotations, names.into_values())
        .with_context(|| format!("--boxes {}", boxes.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Score `maps` ([N, H, W], normalised, at the network's input size) of the photos `paths`
/// against their `annotations` (see [`annotations_for`]), as `method`, beside each of `baselines`;
/// photos without an entry are skipped and counted. Returns the path of the JSON written to
/// `out_dir`.
pub fn score(
    annotations: &UprightAnnotations,
    method: &str,
    maps: &[f32],
    [height, width]: [usize; 2],
    paths: &[Option<PathBuf>],
    baselines: &[Baseline],
    out_dir: &Path,
) -> Result<PathBuf> {
    // (map index, annotation and size in the upright photo's pixels) of each scored photo.
    let mut scored: Vec<(usize, Annotation, (usize, usize))> = Vec::new();
    let mut skipped = 0;
    for (i, path) in paths.iter().enumerate() {
        let Some(path) = path else {
            bail!("--boxes needs photos (boxes are matched by file name), not a tensor file");
        };
        let Some((truth, size)) = annotations.get(path) else {
            skipped += 1;
            continue;
        };
        scored.push((i, truth.clone(), *size));
    }
    let truths: Vec<Annotation> = scored.iter().map(|(_, t, _)| t.clone()).collect();
    let plane = height * width;
    let ours = score_photos(&LocalizationReport::default(), &truths, |k| {
        let (i, _, (w, h)) = scored[k];
        Map {
            width,
            height,
            values: maps[i * plane..(i + 1) * plane].to_vec(),
        }
        .resize(w, h)
    });
    let mut report: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut summaries = vec![(method, ours.summary())];
    for baseline in baselines {
        let summary = score_photos(&LocalizationReport::default(), &truths, |k| {
            let (w, h) = scored[k].2;
            baseline.map(w, h)
        })
        .summary();
        summaries.push((baseline.name(), summary));
    }
    for (key, summary) in summaries {
        print_summary(key, &summary);
        report.insert(key.to_string(), serde_json::to_value(summary)?);
    }
    report.insert("photos_without_entry".into(), skipped.into());
    if skipped > 0 {
        println!("{skipped} photos have no entry in the boxes file (skipped)");
    }
    let out = out_dir.join("localization.json");
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

fn print_summary(key: &str, s: &LocalizationSummary) {
    let wsol = match (s.maxboxacc_v2, s.pxap) {
        (Some(v2), Some(pxap)) => format!(", MaxBoxAccV2 {v2:.3}, PxAP {pxap:.3}"),
        _ => String::from(" (no outlines: no MaxBoxAcc or PxAP)"),
    };
    println!(
        "{key:<20} pointing game {:.3} (15 px: {:.3}), energy in box {:.3}{wsol}, {} photos",
        s.pointing_game, s.pointing_game_15px, s.energy_in_box, s.images
    );
}
