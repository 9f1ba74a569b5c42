//! Line charts (plotters) as PNG (with the DejaVu Sans font embedded, so no system fonts are
//! needed) or SVG (text left to the browser). Every series has its own colour, dash pattern and
//! marker shape, so identical series (CAM exactly under Grad-CAM) stay visible; the y axis is
//! never zoomed below a minimum span, so a flat line does not look like a dramatic one.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

mod draw;

use draw::draw;

/// One line of a chart.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// (x, y) points; non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
    /// Error bar half-heights (± std), one per point; empty: no bars.
    pub errors: Vec<f64>,
}

/// A horizontal reference line (a threshold), in the legend under its label.
pub struct Rule {
    /// The y value.
    pub value: f64,
    /// Legend text.
    pub label: String,
}

/// How a chart's y axis is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YAxis {
    /// The data's range, widened to [`MIN_RELATIVE_SPAN`] of its magnitude (at least
    /// [`MIN_SPAN`]).
    Auto,
    /// At least this range (a score known to lie in it), widened to data outside it.
    Within(f64, f64),
}

/// An automatic y axis spans at least this fraction of the largest |value|…
pub const MIN_RELATIVE_SPAN: f64 = 0.1;
/// …and at least this much.
pub const MIN_SPAN: f64 = 1e-3;

/// A line chart.
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// Tick labels for integer x positions (categorical axes), if any.
    pub x_names: Option<Vec<String>>,
    /// The lines.
    pub series: Vec<Series>,
    /// The y axis rule.
    pub y_axis: YAxis,
    /// Reference lines.
    pub rules: Vec<Rule>,
}

/// A line's dash pattern: solid, or (dash, gap) in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed(u32, u32),
}

impl Dash {
    /// The fraction of the line that is drawn.
    fn ink(self) -> f64 {
        match self {
            Dash::Solid => 1.0,
            Dash::Dashed(on, off) => f64::from(on) / f64::from(on + off),
        }
    }
}

/// A point marker's shape (all but the circle hollow, so shapes on one point all show).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Diamond,
}

/// Colours of series (Tableau 10: distinct, none pale on white).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the series at one index.
pub fn series_color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// Dash pattern and marker of the series at one index (4 dashes × 5 markers: the first 20
/// series all differ, besides their colour).
pub fn series_style(index: usize) -> (Dash, Marker) {
    const DASHES: [Dash; 4] = [
        Dash::Solid,
        Dash::Dashed(8, 5),
        Dash::Dashed(2, 4),
        Dash::Dashed(16, 6),
    ];
    const MARKERS: [Marker; 5] = [
        Marker::Circle,
        Marker::Triangle,
        Marker::Square,
        Marker::Cross,
        Marker::Diamond,
    ];
    (DASHES[index % 4], MARKERS[index % 5])
}

/// The order series are drawn in: the most ink first (solid lines at the bottom), so a line
/// on top of an identical one leaves gaps it shows through.
fn draw_order(count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&a, &b| series_style(b).0.ink().total_cmp(&series_style(a).0.ink()));
    order
}

/// The y axis range for data spanning `data` (None: no finite data), padded by 4 %.
pub fn y_range(data: Option<(f64, f64)>, axis: YAxis) -> (f64, f64) {
    let (lo, hi) = match (axis, data) {
        (YAxis::Within(a, b), Some((y0, y1))) => (a.min(y0), b.max(y1)),
        (YAxis::Within(a, b), None) => (a, b),
        (YAxis::Auto, None) => (0.0, 1.0),
        (YAxis::Auto, Some((y0, y1))) => {
            let span = (y1 - y0)
                .max(MIN_RELATIVE_SPAN * y0.abs().max(y1.abs()))
                .max(MIN_SPAN);
            let mid = (y0 + y1) / 2.0;
            let (lo, hi) = (mid - span / 2.0, mid + span / 2.0);
            // Non-negative data (a loss, seconds) gets no negative axis.
            if y0 >= 0.0 && lo < 0.0 {
                (0.0, hi - lo)
            } else {
                (lo, hi)
            }
        }
    };
    let pad = (hi - lo) * 0.04;
    (lo - pad, hi + pad)
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TTF shipped by the `dejavu` crate; failure would leave text out.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Reference lines: dark grey, dashed.
const RULE_COLOR: RGBColor = RGBColor(80, 80, 80);
const RULE_DASH: Dash = Dash::Dashed(6, 4);

/// Charts side by side in one image of `width` x `height` pixels per chart.
pub fn render(charts: &[LineChart], (width, height): (u32, u32)) -> Result<image::RgbImage> {
    register_font();
    let total = (width * charts.len().max(1) as u32, height);
    let mut pixels = vec![255u8; (total.0 * total.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, total).into_drawing_area();
        for (chart, area) in charts
            .iter()
            .zip(root.split_evenly((1, charts.len().max(1))))
        {
            draw(chart, &area)?;
        }
        root.present().map_err(|e| anyhow!("drawing: {e:?}"))?;
    }
    image::RgbImage::from_raw(total.0, total.1, pixels)
        .ok_or_else(|| anyhow!("plot buffer has the wrong size"))
}

/// Charts side by side in one PNG of `width` x `height` pixels per chart.
pub fn png(charts: &[LineChart], size: (u32, u32), path: &Path) -> Result<()> {
    render(charts, size)?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One chart as an SVG file.
pub fn svg(chart: &LineChart, size: (u32, u32), path: &Path) -> Result<()> {
    // Text is laid out with the font's metrics even in SVG.
    register_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(chart, &root)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `text` (black, `size` px) into `image` with its top left corner at `at`.
pub fn label(image: &mut image::RgbImage, text: &str, size: u32, at: (i32, i32)) -> Result<()> {
    label_in(image, text, size, at, BLACK)
}

/// [`label`] in `colour`.
pub fn label_in(
    image: &mut image::RgbImage,
    text: &str,
    size: u32,
    at: (i32, i32),
    colour: RGBColor,
) -> Result<()> {
    register_font();
    let dims = image.dimensions();
    let root = BitMapBackend::with_buffer(image, dims).into_drawing_area();
    let font = TextStyle::from(("sans-serif", size).into_font()).color(&colour);
    root.draw_text(text, &font, at)
        .map_err(|e| anyhow!("drawing the label {text}: {e:?}"))?;
    root.present()
        .map_err(|e| anyhow!("drawing the label {text}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>, y_axis: YAxis) -> LineChart {
        LineChart {
            title: "t".into(),
            x_label: "epoch".into(),
            y_label: "y".into(),
            x_names: None,
            series,
            y_axis,
            rules: vec![],
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
            errors: vec![],
        }
    }

    fn stages(rules: Vec<Rule>) -> LineChart {
        LineChart {
            title: "Spearman".into(),
            x_label: "stage".into(),
            y_label: "ρ".into(),
            x_names: Some(vec!["head".into(), "block5".into(), "block4".into()]),
            series: vec![Series {
                name: "cam".into(),
                points: vec![(0.0, 0.9), (1.0, f64::NAN), (2.0, 0.1)],
                errors: vec![0.05, 0.1, f64::NAN],
            }],
            y_axis: YAxis::Within(0.0, 1.0),
            rules,
        }
    }

    #[test]
    fn png_and_svg_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let flag = || Rule {
            value: 0.5,
            label: "flag".into(),
        };
        let png_path = dir.path().join("a.png");
        png(&[stages(vec![flag()])], (400, 300), &png_path).unwrap();
        let image = image::open(&png_path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (400, 300));
        // Something besides white was drawn (axes, text, the line).
        let dark = image
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "only {dark} dark pixels");
        // The rule: a dashed line across the plot in its colour.
        let rule_pixels = |image: &image::RgbImage| {
            let c = RULE_COLOR;
            image.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
        };
        let without = rule_pixels(&render(&[stages(vec![])], (400, 300)).unwrap());
        let with = rule_pixels(&image);
        assert!(
            with > without + 300,
            "{with} rule pixels, {without} without"
        );
        // Error bars: a bar's colour above and below the first point's marker.
        let blue = series_color(0);
        let bars = render(&[stages(vec![])], (400, 300)).unwrap();
        let mut no_bars = stages(vec![]);
        no_bars.series[0].errors.clear();
        let no_bars = render(&[no_bars], (400, 300)).unwrap();
        let count = |image: &image::RgbImage| {
            image
                .pixels()
                .filter(|p| p.0 == [blue.0, blue.1, blue.2])
                .count()
        };
        assert!(count(&bars) > count(&no_bars) + 20, "no error bars drawn");
        let svg_path = dir.path().join("b.svg");
        svg(&chart_empty(), (400, 300), &svg_path).unwrap();
        assert!(std::fs::read_to_string(&svg_path).unwrap().contains("<svg"));
    }

    fn chart_empty() -> LineChart {
        chart(vec![], YAxis::Auto)
    }

    #[test]
    fn flat_lines_get_a_minimum_span() {
        // Validation accuracy 0.994–0.996 as an unbounded value: at least 10 % of 0.996.
        let (lo, hi) = y_range(Some((0.994, 0.996)), YAxis::Auto);
        assert!(hi - lo >= 0.0996, "{lo}..{hi}");
        assert!(lo <= 0.994 && hi >= 0.996, "{lo}..{hi}");
        // A constant line gets the span too, centred on it.
        let (lo, hi) = y_range(Some((2.0, 2.0)), YAxis::Auto);
        assert!(hi - lo >= 0.2 && (lo + hi) / 2.0 - 2.0 < 1e-9, "{lo}..{hi}");
        // Values near zero get the absolute minimum, and no negative axis when non-negative.
        let (lo, hi) = y_range(Some((1e-5, 2e-5)), YAxis::Auto);
        assert!(hi - lo >= MIN_SPAN && lo >= -1e-4, "{lo}..{hi}");
        // A wide range is kept as it is (plus padding).
        let (lo, hi) = y_range(Some((0.1, 2.5)), YAxis::Auto);
        assert!(lo < 0.1 && lo > 0.0 && hi > 2.5 && hi < 2.7, "{lo}..{hi}");
        let (lo, hi) = y_range(Some((-3.0, -2.9)), YAxis::Auto);
        assert!(hi - lo >= 0.3 && lo < -3.0 && hi > -2.9, "{lo}..{hi}");
    }

    #[test]
    fn bounded_scores_get_the_unit_range() {
        let unit = YAxis::Within(0.0, 1.0);
        for data in [Some((0.994, 0.996)), Some((0.0, 0.0)), None] {
            let (lo, hi) = y_range(data, unit);
            assert!(
                (-0.1..=0.0).contains(&lo) && (1.0..1.1).contains(&hi),
                "{lo}..{hi}"
            );
        }
        // Data outside the bounds (a negative Spearman) widen it.
        let (lo, hi) = y_range(Some((-0.4, 0.9)), unit);
        assert!(lo <= -0.4 && hi >= 1.0, "{lo}..{hi}");
    }

    #[test]
    fn series_styles_differ() {
        for i in 0..20 {
            for j in 0..i {
                assert_ne!(series_style(i), series_style(j), "{i} {j}");
            }
        }
        let (dash0, marker0) = series_style(0);
        let (dash1, marker1) = series_style(1);
        assert!(dash0 != dash1 && marker0 != marker1);
        assert_ne!(series_color(0), series_color(1));
        // Solid lines are drawn first, the sparsest dashes last.
        assert_eq!(draw_order(4), vec![0, 3, 1, 2]);
    }

    #[test]
    fn identical_series_both_stay_visible() {
        // Pixels of the first series' colour with the second series on top of it, compared
        // with the second series drawn elsewhere: a solid line of equal width on top would
        // leave only the legend sample.
        let line = [(0.0, 0.2), (5.0, 0.3), (10.0, 0.4)];
        let count = |second: &[(f64, f64)]| {
            let image = render(
                &[chart(
                    vec![series("cam", &line), series("gradcam", second)],
                    YAxis::Within(0.0, 1.0),
                )],
                (500, 360),
            )
            .unwrap();
            let colors = [0, 1].map(|i| {
                let c = series_color(i);
                image.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count()
            });
            colors
        };
        let apart = count(&[(0.0, 0.8), (5.0, 0.8), (10.0, 0.8)]);
        let same = count(&line);
        assert!(apart[0] > 500, "{apart:?}");
        assert!(
            same[0] * 10 > apart[0] * 4 && same[1] * 10 > apart[1] * 4,
            "identical: {same:?}, apart: {apart:?}"
        );
    }

    #[test]
    fn labels_are_drawn() {
        let mut image = image::RgbImage::from_pixel(80, 20, image::Rgb([255, 255, 255]));
        label(&mut image, "epoch 3", 12, (2, 2)).unwrap();
        let dark = image.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 10, "{dark}");
    }
}
