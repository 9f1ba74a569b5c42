//! The report's charts: one per metric, every run's (and every method's) curve of that metric
//! on it, so frozen and fine-tuned runs' pointing game or drift share one chart. Scores known to
//! lie in [0, 1] are drawn on [0, 1]; the rest on an axis of a minimum span.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::html::{escape, file_safe};
use super::Run;
use crate::plot::{LineChart, Rule, Series, YAxis};
use crate::run::metrics::Metric;

/// A metric column's chart key and series label: method-specific columns of different runs
/// share a chart (`cam_pointing_game` and `gradcam_pointing_game` → `pointing_game`).
pub fn chart_key(column: &str) -> (String, Option<String>) {
    match Metric::from_column(column) {
        Some(Metric::Score { method, score }) => (score, Some(method)),
        Some(Metric::Agreement { pair, measure }) => (format!("agreement_{measure}"), Some(pair)),
        _ => (column.to_string(), None),
    }
}

/// Scores (chart keys) in [0, 1]: localization, faithfulness, map drift (prefixes).
const UNIT_SCORES: [&str; 12] = [
    "pointing_game",
    "energy_in_box",
    "energy_in_cue_box",
    "box_iou",
    "maxboxacc",
    "pxap",
    "drift",
    "average_drop",
    "increase_in_confidence",
    "deletion_auc",
    "insertion_auc",
    "agreement_",
];

/// The y axis of a chart key: [0, 1] for accuracies and the scores of [`UNIT_SCORES`]
/// (a negative Spearman agreement widens it), a minimum-span axis for losses, seconds and
/// anything else.
pub fn y_axis(key: &str) -> YAxis {
    let bounded = matches!(
        Metric::from_column(key),
        Some(Metric::Accuracy(_) | Metric::ClassAccuracy { .. })
    ) || UNIT_SCORES.iter().any(|s| key.starts_with(s));
    if bounded {
        YAxis::Within(0.0, 1.0)
    } else {
        YAxis::Auto
    }
}

/// One chart: its key and its series as (legend name, run index, column).
pub type Group = (String, Vec<(String, usize, String)>);

/// Whether a chart label names a localization baseline (drawn as a rule, not a curve).
fn is_baseline(label: &str) -> bool {
    label.starts_with("baseline_")
}

/// The charts, in order of first appearance of their keys (baselines' columns excepted: see
/// [`baseline_rules`]).
pub fn groups(runs: &[Run]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (ri, r) in runs.iter().enumerate() {
        for c in &r.metrics.columns {
            let (key, label) = chart_key(c);
            if label.as_deref().is_some_and(is_baseline) {
                continue;
            }
            let name = match label {
                Some(l) => format!("{} {l}", r.label),
                None => r.label.clone(),
            };
            let series = (name, ri, c.clone());
            match out.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1.push(series),
                None => out.push((key, vec![series])),
            }
        }
    }
    out
}

/// The baselines' scores on chart `key`, as horizontal lines: each run's last value of each
/// `baseline_<kind>_<key>` column; runs with the same value share one line, which names its
/// runs unless it is every run's.
pub fn baseline_rules(runs: &[Run], key: &str) -> Vec<Rule> {
    let mut rules: Vec<(String, f32, Vec<&str>)> = Vec::new();
    for r in runs {
        for c in &r.metrics.columns {
            let (k, Some(baseline)) = chart_key(c) else {
                continue;
            };
            if k != key || !is_baseline(&baseline) {
                continue;
            }
            let Some((_, value)) = r.metrics.last(c) else {
                continue;
            };
            match rules
                .iter_mut()
                .find(|(b, v, _)| *b == baseline && *v == value)
            {
                Some((_, _, labels)) => labels.push(&r.label),
                None => rules.push((baseline, value, vec![&r.label])),
            }
        }
    }
    rules
        .into_iter()
        .map(|(baseline, value, labels)| Rule {
            value: f64::from(value),
            label: match labels.len() == runs.len() {
                true => format!("{baseline} {value:.3}"),
                false => format!("{baseline} {value:.3} ({})", labels.join(", ")),
            },
        })
        .collect()
}

/// The charts section; SVG files in `plots_dir`.
pub fn section(runs: &[Run], plots_dir: &Path) -> Result<String> {
    let mut out = String::from("<h2>Metrics per epoch</h2>\n<div class=\"charts\">\n");
    for (key, members) in groups(runs) {
        let series = members
            .into_iter()
            .map(|(name, ri, column)| Series {
                name,
                points: runs[ri]
                    .metrics
                    .rows
                    .iter()
                    .map(|row| {
                        let value = row.values.get(&column).map_or(f64::NAN, |&v| f64::from(v));
                        (row.epoch as f64, value)
                    })
                    .collect(),
                errors: vec![],
            })
            .collect();
        let file = format!("{}.svg", file_safe(&key));
        crate::plot::svg(
            &LineChart {
                title: key.replace('_', " "),
                x_label: "epoch".into(),
                y_label: key.replace('_', " "),
                x_names: None,
                series,
                y_axis: y_axis(&key),
                rules: baseline_rules(runs, &key),
            },
            (600, 400),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::compare::tests::run_with;

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
            chart_key("cam_drift_from_start"),
            ("drift_from_start".into(), Some("cam".into()))
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
    fn baselines_are_rules_on_their_scores_chart_not_curves() {
        let columns = [
            "cam_pointing_game",
            "baseline_centre_pointing_game",
            "baseline_uniform_pxap",
            "cam_pxap",
        ];
        let mut frozen = run_with("frozen-20250101-120000", &columns, &[]);
        let tuned = run_with("finetune-20250101-130000", &columns[..2], &[]);
        let names = |runs: &[Run], key: &str| -> Vec<String> {
            let g = groups(runs);
            let g = g.iter().find(|g| g.0 == key).unwrap();
            g.1.iter().map(|s| s.0.clone()).collect()
        };
        let runs = [frozen, tuned];
        assert_eq!(
            names(&runs, "pointing_game"),
            ["frozen cam", "finetune cam"]
        );
        // Same value in both runs (run_with writes 0.5 everywhere): one rule.
        let rules = baseline_rules(&runs, "pointing_game");
        assert_eq!(rules.len(), 1);
        assert_eq!(
            (rules[0].value, rules[0].label.as_str()),
            (0.5, "baseline_centre 0.500")
        );
        let rules = baseline_rules(&runs, "pxap");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].label, "baseline_uniform 0.500 (frozen)");
        // Different values: one rule per run.
        let [f, t] = runs;
        frozen = f;
        for row in &mut frozen.metrics.rows {
            row.values
                .insert("baseline_centre_pointing_game".into(), 0.25);
        }
        let runs = [frozen, t];
        let labels: Vec<String> = baseline_rules(&runs, "pointing_game")
            .into_iter()
            .map(|r| r.label)
            .collect();
        assert_eq!(
            labels,
            [
                "baseline_centre 0.250 (frozen)",
                "baseline_centre 0.500 (finetune)"
            ]
        );
    }

    #[test]
    fn bounded_scores_get_unit_axes() {
        let unit = YAxis::Within(0.0, 1.0);
        for key in [
            "val_accuracy",
            "train_accuracy",
            "pointing_game",
            "energy_in_box",
            "box_iou",
            "pointing_game_15px",
            "maxboxacc_v2",
            "maxboxacc_0.5",
            "pxap",
            "drift",
            "drift_from_start",
            "deletion_auc",
            "insertion_auc",
            "average_drop",
            "agreement_spearman",
            "agreement_top20_iou",
        ] {
            assert_eq!(y_axis(key), unit, "{key}");
        }
        for key in ["train_loss", "val_loss", "epoch_seconds", "head_seconds"] {
            assert_eq!(y_axis(key), YAxis::Auto, "{key}");
        }
    }

    #[test]
    fn pointing_game_and_drift_of_all_runs_share_a_chart() {
        let columns = [
            "train_loss",
            "val_accuracy",
            "cam_pointing_game",
            "gradcam_pointing_game",
            "cam_drift",
            "gradcam_drift",
            "cam_drift_from_start",
        ];
        let frozen = run_with("frozen-20250101-120000", &columns, &[]);
        let tuned = run_with("finetune-20250101-130000", &columns[..5], &[]);
        let runs = [frozen, tuned];
        let groups = groups(&runs);
        let keys: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            keys,
            [
                "train_loss",
                "val_accuracy",
                "pointing_game",
                "drift",
                "drift_from_start"
            ]
        );
        let names = |key: &str| -> Vec<String> {
            let g = groups.iter().find(|g| g.0 == key).unwrap();
            g.1.iter().map(|s| s.0.clone()).collect()
        };
        assert_eq!(
            names("pointing_game"),
            [
                "frozen cam",
                "frozen gradcam",
                "finetune cam",
                "finetune gradcam"
            ]
        );
        assert_eq!(
            names("drift"),
            ["frozen cam", "frozen gradcam", "finetune cam"]
        );
        assert_eq!(names("val_accuracy"), ["frozen", "finetune"]);
        assert!(baseline_rules(&runs, "pointing_game").is_empty());

        let dir = tempfile::tempdir().unwrap();
        let html = section(&runs, dir.path()).unwrap();
        for key in keys {
            assert!(html.contains(&format!("plots/{key}.svg")), "{html}");
            assert!(dir.path().join(format!("{key}.svg")).is_file());
        }
    }
}
