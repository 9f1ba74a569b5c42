//! The custom scalars layout: charts that draw several tags of one run together (TensorBoard's
//! CUSTOM SCALARS tab), e.g. a score and its baselines, or the accuracy of every evaluated set.
//!
//! Written once per run as the `custom_scalars__config__` tag: a string tensor holding a
//! serialised `tensorboard.Layout` (`tensorboard/plugins/custom_scalar/layout.proto`), with the
//! `custom_scalars` plugin's metadata.

use crate::proto::{LayoutCategory, LayoutChart, LayoutProto, MultilineChartContent};

/// The tag TensorBoard's custom scalars plugin reads its layout from.
pub const LAYOUT_TAG: &str = "custom_scalars__config__";

/// Charts grouped in collapsible categories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// The categories, in display order.
    pub categories: Vec<Category>,
}

/// A titled group of charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    /// Shown as the group's heading.
    pub title: String,
    /// The charts, in display order.
    pub charts: Vec<Chart>,
}

/// One multi-line chart: every scalar tag matching one of `tags` (regular expressions) is a
/// line of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The chart's title.
    pub title: String,
    /// Regular expressions over tags (anchor them: `^cam/pointing_game$`).
    pub tags: Vec<String>,
}

impl Layout {
    pub(crate) fn to_proto(&self) -> LayoutProto {
        LayoutProto {
            version: 0,
            category: self
                .categories
                .iter()
                .map(|c| LayoutCategory {
                    title: c.title.clone(),
                    chart: c
                        .charts
                        .iter()
                        .map(|chart| LayoutChart {
                            title: chart.title.clone(),
                            multiline: Some(MultilineChartContent {
                                tag: chart.tags.clone(),
                            }),
                        })
                        .collect(),
                    closed: false,
                })
                .collect(),
        }
    }
}

/// A regular expression matching exactly `tag` (its metacharacters escaped).
pub fn exact_tag(tag: &str) -> String {
    let mut out = String::from("^");
    for c in tag.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_tags_escape_metacharacters() {
        assert_eq!(
            exact_tag("gradcam++/pointing_game"),
            r"^gradcam\+\+/pointing_game$"
        );
        assert_eq!(exact_tag("cam/maxboxacc_0.5"), r"^cam/maxboxacc_0\.5$");
    }
}
