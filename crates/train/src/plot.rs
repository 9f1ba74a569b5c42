//! Line charts (plotters) as PNG (with the DejaVu Sans font embedded, so no system fonts are
//! needed) or SVG (text left to the browser).

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a chart.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// (x, y) points; non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
}

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

fn draw<DB: DrawingBackend>(chart: &LineChart, area: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let points = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    // Categorical axes get room for their first and last names.
    let x_pad = if chart.x_names.is_some() || x1 == x0 {
        0.3
    } else {
        0.0
    };
    let err = |e: &dyn std::fmt::Debug| anyhow!("drawing {}: {e:?}", chart.title);
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let mut plot = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x0 - x_pad)..(x1 + x_pad), (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    let names = chart.x_names.clone();
    let format_x = move |x: &f64| match &names {
        Some(names) if (x - x.round()).abs() < 1e-9 => {
            names.get(x.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        None => format!("{x}"),
    };
    let ticks = chart.x_names.as_ref().map_or(10, |n| n.len().max(2));
    plot.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_labels(ticks)
        .x_label_formatter(&format_x)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, series) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        plot.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(&series.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        plot.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    plot.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    area.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Charts side by side in one PNG of `width` x `height` pixels per chart.
pub fn png(charts: &[LineChart], (width, height): (u32, u32), path: &Path) -> Result<()> {
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
        root.present()
            .map_err(|e| anyhow!("drawing {}: {e:?}", path.display()))?;
    }
    let image = image::RgbImage::from_raw(total.0, total.1, pixels)
        .ok_or_else(|| anyhow!("plot buffer has the wrong size"))?;
    image
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_svg_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let chart = LineChart {
            title: "Spearman".into(),
            x_label: "stage".into(),
            y_label: "ρ".into(),
            x_names: Some(vec!["head".into(), "block5".into(), "block4".into()]),
            series: vec![Series {
                name: "cam".into(),
                points: vec![(0.0, 0.9), (1.0, f64::NAN), (2.0, 0.1)],
            }],
        };
        let png_path = dir.path().join("a.png");
        png(&[chart], (400, 300), &png_path).unwrap();
        let image = image::open(&png_path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (400, 300));
        // Something besides white was drawn (axes, text, the line).
        let dark = image
            .pixels()
            .filter(|p| p.0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 500, "only {dark} dark pixels");
        let chart = LineChart {
            title: "loss".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            x_names: None,
            series: vec![],
        };
        let svg_path = dir.path().join("b.svg");
        svg(&chart, (400, 300), &svg_path).unwrap();
        assert!(std::fs::read_to_string(&svg_path).unwrap().contains("<svg"));
    }
}
