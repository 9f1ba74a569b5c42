//! Every TensorBoard tag and metrics.csv column name of a run, built in one place: [`Metric`]
//! names a scalar both ways (tag and column, and back, for `train compare`); the functions below
//! name the images and texts. Tags: `loss/<set>`, `accuracy/<set>`, `<method>/<score>`,
//! `agreement/<a>_vs_<b>/<measure>`, `seconds/<part>`; images `<method>/<image>`,
//! `<method>/grid`, `<method>/evolution/<image>`, `originals/<image>`.

use tensorboard::{exact_tag, Category, Chart, Layout};

use crate::engine::method::Method;
use crate::scores::localization_report::Baseline;

/// A metric of a run, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// `loss/<set>` ↔ `<set>_loss` (set: train, val or a `[[data.eval]]` name).
    Loss(String),
    /// `accuracy/<set>` ↔ `<set>_accuracy`.
    Accuracy(String),
    /// `accuracy/<set>/<class>` ↔ `<set>_accuracy_<class>`: the share of the class's images
    /// predicted as it.
    ClassAccuracy {
        /// The set.
        set: String,
        /// The class's name.
        class: String,
    },
    /// `<method>/<score>` ↔ `<method>_<score>` (localization and faithfulness scores; the
    /// localization baselines' scores too, with `baseline_centre` or `baseline_uniform` as the
    /// method).
    Score {
        /// The method's name.
        method: String,
        /// The score's name.
        score: String,
    },
    /// `agreement/<a>_vs_<b>/<measure>` ↔ `<a>_vs_<b>_<measure>`.
    Agreement {
        /// `<a>_vs_<b>`.
        pair: String,
        /// `spearman` or `top20_iou`.
        measure: String,
    },
    /// `seconds/<part>` ↔ `<part>_seconds` (train, head, callback, epoch).
    Seconds(String),
}

/// The agreement measures.
/// In the order the agreement callback computes them: Spearman ρ, top-20 % IoU.
pub const AGREEMENT_MEASURES: [&str; 2] = ["spearman", "top20_iou"];

impl Metric {
    /// The metric a TensorBoard tag names.
    pub fn from_tag(tag: &str) -> Option<Metric> {
        let (first, rest) = tag.split_once('/')?;
        Some(match first {
            "loss" => Metric::Loss(rest.into()),
            "accuracy" => match rest.split_once('/') {
                Some((set, class)) => Metric::ClassAccuracy {
                    set: set.into(),
                    class: class.into(),
                },
                None => Metric::Accuracy(rest.into()),
            },
            "seconds" => Metric::Seconds(rest.into()),
            "agreement" => {
                let (pair, measure) = rest.rsplit_once('/')?;
                Metric::Agreement {
                    pair: pair.into(),
                    measure: measure.into(),
                }
            }
            method => Metric::Score {
                method: method.into(),
                score: rest.into(),
            },
        })
    }

    /// The metric a metrics.csv column names (`None` for `epoch` and unknown columns).
    pub fn from_column(column: &str) -> Option<Metric> {
        if let Some(m) = AGREEMENT_MEASURES.iter().find_map(|m| {
            let pair = column.strip_suffix(m)?.strip_suffix('_')?;
            pair.contains("_vs_").then(|| Metric::Agreement {
                pair: pair.into(),
                measure: (*m).into(),
            })
        }) {
            return Some(m);
        }
        // Longest method name first: `gradcam++_x` is not `gradcam` + `++_x`.
        let mut methods: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        // The localization baselines' scores are columns as a method's.
        methods.extend(Baseline::ALL.map(|b| b.name()));
        methods.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for method in methods {
            if let Some(score) = column
                .strip_prefix(method)
                .and_then(|r| r.strip_prefix('_'))
            {
                return Some(Metric::Score {
                    method: method.into(),
                    score: score.into(),
                });
            }
        }
        if let Some((set, class)) = column.split_once("_accuracy_") {
            return Some(Metric::ClassAccuracy {
                set: set.into(),
                class: class.into(),
            });
        }
        let suffixed = |suffix: &str| column.strip_suffix(suffix).map(String::from);
        suffixed("_loss")
            .map(Metric::Loss)
            .or_else(|| suffixed("_accuracy").map(Metric::Accuracy))
            .or_else(|| suffixed("_seconds").map(Metric::Seconds))
    }

    /// The TensorBoard tag.
    pub fn tag(&self) -> String {
        match self {
            Metric::Loss(set) => format!("loss/{set}"),
            Metric::Accuracy(set) => format!("accuracy/{set}"),
            Metric::ClassAccuracy { set, class } => format!("accuracy/{set}/{class}"),
            Metric::Score { method, score } => format!("{method}/{score}"),
            Metric::Agreement { pair, measure } => format!("agreement/{pair}/{measure}"),
            Metric::Seconds(part) => format!("seconds/{part}"),
        }
    }

    /// The metrics.csv column.
    pub fn column(&self) -> String {
        match self {
            Metric::Loss(set) => format!("{set}_loss"),
            Metric::Accuracy(set) => format!("{set}_accuracy"),
            Metric::ClassAccuracy { set, class } => format!("{set}_accuracy_{class}"),
            Metric::Score { method, score } => format!("{method}_{score}"),
            Metric::Agreement { pair, measure } => format!("{pair}_{measure}"),
            Metric::Seconds(part) => format!("{part}_seconds"),
        }
    }
}

/// Class `class`'s name in captions and tables: `class_names[class]`, or its index when the
/// names are unknown.
pub fn class_name(class_names: &[String], class: usize) -> String {
    class_names
        .get(class)
        .cloned()
        .unwrap_or_else(|| class.to_string())
}

/// Why `name` cannot name an evaluation set (`None` when it can): the sets `train` and `val`
/// are built in; a method's or a baseline's name would mix the set's scores with the method's;
/// and the set's columns and tags must read back as its own loss and accuracy (a name such as
/// `cam_x` makes the column `cam_x_loss`, which reads as a score of `cam`).
pub fn set_name_clash(name: &str) -> Option<String> {
    if name == "train" || name == "val" {
        return Some(format!("`{name}` is the built-in {name} set"));
    }
    if Method::ALL.iter().any(|m| m.name() == name) {
        return Some(format!("`{name}` is a method's name"));
    }
    if Baseline::ALL.iter().any(|b| b.name() == name) {
        return Some(format!("`{name}` is a localization baseline's name"));
    }
    for metric in [Metric::Loss(name.into()), Metric::Accuracy(name.into())] {
        let column = metric.column();
        if Metric::from_column(&column).as_ref() != Some(&metric)
            || Metric::from_tag(&metric.tag()).as_ref() != Some(&metric)
        {
            return Some(format!(
                "its metrics.csv column `{column}` would read as another metric's"
            ));
        }
    }
    None
}

/// The tag of something a method logs about its images: a score, an image's overlay, the grid,
/// the captions, the drifts, the evolution strips (`<method>/<name>`).
pub fn method_tag(method: &str, name: &str) -> String {
    format!("{method}/{name}")
}

/// The tag of an image's evolution strip.
pub fn evolution_tag(method: &str, image: &str) -> String {
    method_tag(method, &format!("evolution/{image}"))
}

/// The tag of a logged photo as it is given to the network.
pub fn original_tag(image: &str) -> String {
    format!("originals/{image}")
}

/// The name of a pair of callbacks in agreement tags (`<a>_vs_<b>`).
pub fn agreement_pair(a: &str, b: &str) -> String {
    format!("{a}_vs_{b}")
}
/// The charts that draw a run's scalars (`tags`) together: every set's accuracy in one chart
/// and its loss in another, then per method each score with its baselines' values of the same
/// score (TensorBoard's custom scalars tab; the baselines stay tags of the run, not runs).
pub fn scalar_layout(tags: &[String]) -> Layout {
    let metrics: Vec<Metric> = tags.iter().filter_map(|t| Metric::from_tag(t)).collect();
    let (mut accuracy, mut loss) = (Vec::new(), Vec::new());
    for metric in &metrics {
        match metric {
            Metric::Accuracy(_) => accuracy.push(exact_tag(&metric.tag())),
            Metric::Loss(_) => loss.push(exact_tag(&metric.tag())),
            _ => {}
        }
    }
    let sets = Category {
        title: "accuracy and loss by set".into(),
        charts: [("accuracy", accuracy), ("loss", loss)]
            .into_iter()
            .filter(|(_, tags)| !tags.is_empty())
            .map(|(title, tags)| Chart {
                title: title.into(),
                tags,
            })
            .collect(),
    };
    let baselines = Baseline::ALL.map(|b| b.name());
    let mut categories = vec![sets];
    for metric in &metrics {
        let Metric::Score { method, score } = metric else {
            continue;
        };
        if baselines.contains(&method.as_str()) {
            continue;
        }
        let title = format!("{method}: scores and their baselines");
        let at = match categories.iter().position(|c| c.title == title) {
            Some(at) => at,
            None => {
                categories.push(Category {
                    title,
                    charts: Vec::new(),
                });
                categories.len() - 1
            }
        };
        let mut chart_tags = vec![exact_tag(&metric.tag())];
        for baseline in baselines {
            let tag = method_tag(baseline, score);
            if tags.contains(&tag) {
                chart_tags.push(exact_tag(&tag));
            }
        }
        categories[at].charts.push(Chart {
            title: metric.tag(),
            tags: chart_tags,
        });
    }
    categories.retain(|c| !c.charts.is_empty());
    Layout { categories }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_puts_each_score_with_its_baselines_and_the_sets_together() {
        let tags: Vec<String> = [
            "loss/train",
            "accuracy/train",
            "accuracy/val",
            "accuracy/clean",
            "accuracy/val/cat",
            "cam/pointing_game",
            "cam/drift",
            "baseline_centre/pointing_game",
            "baseline_uniform/pointing_game",
            "gradcam++/energy_in_cue_box",
            "baseline_centre/energy_in_cue_box",
            "seconds/train",
        ]
        .map(String::from)
        .to_vec();
        let layout = scalar_layout(&tags);
        let titles: Vec<&str> = layout.categories.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "accuracy and loss by set",
                "cam: scores and their baselines",
                "gradcam++: scores and their baselines"
            ]
        );
        let sets = &layout.categories[0].charts;
        assert_eq!(
            sets[0].tags,
            ["^accuracy/train$", "^accuracy/val$", "^accuracy/clean$"]
        );
        assert_eq!(sets[1].tags, ["^loss/train$"]);
        let cam = &layout.categories[1].charts;
        assert_eq!(cam[0].title, "cam/pointing_game");
        assert_eq!(
            cam[0].tags,
            [
                "^cam/pointing_game$",
                "^baseline_centre/pointing_game$",
                "^baseline_uniform/pointing_game$"
            ]
        );
        assert_eq!(cam[1].tags, ["^cam/drift$"]);
        let plus = &layout.categories[2].charts[0];
        assert_eq!(
            plus.tags,
            [
                r"^gradcam\+\+/energy_in_cue_box$",
                "^baseline_centre/energy_in_cue_box$"
            ]
        );
    }
}
