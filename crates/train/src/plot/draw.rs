//! Drawing one [`LineChart`] onto a plotters area: the axes, the reference lines, the series
//! with their error bars and markers, and the legend, in the corner the lines leave most free.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{
    draw_order, series_color, series_style, y_range, Dash, LineChart, Marker, RULE_COLOR, RULE_DASH,
};

/// Pixel rectangle (left, top, right, bottom).
type PixelBox = (i32, i32, i32, i32);

/// One legend line: text, colour, dash, marker (none for a rule).
type LegendEntry<'a> = (&'a str, RGBAColor, Dash, Option<Marker>);

/// The error of drawing the chart titled `title`.
fn drawing_error(title: &str, e: &dyn std::fmt::Debug) -> anyhow::Error {
    anyhow!("drawing {title}: {e:?}")
}

/// Whether both coordinates of a point are finite (the others are not drawn).
fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The index of the box covering the fewest `points` (the first on ties).
fn least_crowded(boxes: &[PixelBox], points: &[(i32, i32)]) -> usize {
    let inside = |b: &PixelBox| {
        points
            .iter()
            .filter(|p| p.0 >= b.0 && p.0 <= b.2 && p.1 >= b.1 && p.1 <= b.3)
            .count()
    };
    (0..boxes.len())
        .min_by_key(|&i| (inside(&boxes[i]), i))
        .unwrap_or(0)
}

/// Draws a polyline (pixel coordinates of `area`).
fn line<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: Vec<(i32, i32)>,
    dash: Dash,
    style: ShapeStyle,
) -> Result<()> {
    match dash {
        Dash::Solid => area.draw(&PathElement::new(points, style)),
        Dash::Dashed(on, off) => area.draw(&DashedPathElement::new(
            points, on as i32, off as i32, style,
        )),
    }
    .map_err(|e| anyhow!("{e:?}"))
}

/// Draws a marker centred on `at` (pixel coordinates of `area`).
fn marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    shape: Marker,
    color: RGBAColor,
) -> Result<()> {
    match shape {
        Marker::Circle => area.draw(&Circle::new((x, y), 4, color.filled())),
        Marker::Triangle => area.draw(&PathElement::new(
            vec![(x, y - 6), (x + 6, y + 4), (x - 6, y + 4), (x, y - 6)],
            color.stroke_width(2),
        )),
        Marker::Square => area.draw(&Rectangle::new(
            [(x - 4, y - 4), (x + 4, y + 4)],
            color.stroke_width(2),
        )),
        Marker::Cross => area.draw(&Cross::new((x, y), 5, color.stroke_width(2))),
        Marker::Diamond => area.draw(&PathElement::new(
            vec![(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y), (x, y - 6)],
            color.stroke_width(2),
        )),
    }
    .map_err(|e| anyhow!("{e:?}"))
}

/// A data range (min, max); `None` where there is no finite value.
type Range = Option<(f64, f64)>;

/// The ranges of x and of y (error bars and rules included) of the chart's finite data.
fn data_ranges(chart: &LineChart) -> (Range, Range) {
    let mut xs: Range = None;
    let mut ys: Range = None;
    let widen = |r: &mut Range, v: f64| {
        *r = Some(r.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
    };
    for s in &chart.series {
        for (k, p) in s.points.iter().enumerate().filter(|(_, p)| finite(p)) {
            let e = s.errors.get(k).copied().filter(|e| e.is_finite());
            let e = e.unwrap_or(0.0).abs();
            widen(&mut xs, p.0);
            widen(&mut ys, p.1 - e);
            widen(&mut ys, p.1 + e);
        }
    }
    for r in chart.rules.iter().filter(|r| r.value.is_finite()) {
        widen(&mut ys, r.value);
    }
    (xs, ys)
}

/// Draws the chart on `area`.
pub(super) fn draw<DB: DrawingBackend>(
    chart: &LineChart,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (xs, ys) = data_ranges(chart);
    let (x0, x1) = xs.unwrap_or((0.0, 1.0));
    let (y0, y1) = y_range(ys, chart.y_axis);
    // Categorical axes get room for their first and last names.
    let x_pad = if chart.x_names.is_some() || x1 == x0 {
        0.3
    } else {
        0.0
    };
    let err = |e: &dyn std::fmt::Debug| drawing_error(&chart.title, e);
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let mut plot = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((x0 - x_pad)..(x1 + x_pad), y0..y1)
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

    // Everything else in pixels of `area`.
    let base = area.get_base_pixel();
    let px = |p: (f64, f64)| {
        let (x, y) = plot.backend_coord(&p);
        (x - base.0, y - base.1)
    };
    let (left, right) = (px((x0 - x_pad, y0)).0, px((x1 + x_pad, y0)).0);
    let mut legend: Vec<LegendEntry> = Vec::new();
    for r in chart.rules.iter().filter(|r| r.value.is_finite()) {
        let y = px((x0, r.value)).1;
        line(
            area,
            vec![(left, y), (right, y)],
            RULE_DASH,
            RULE_COLOR.stroke_width(2),
        )
        .map_err(|e| err(&e))?;
        legend.push((&r.label, RULE_COLOR.to_rgba(), RULE_DASH, None));
    }
    let occupied = draw_series(chart, area, &px)?;
    for (i, series) in chart.series.iter().enumerate() {
        let (dash, shape) = series_style(i);
        legend.push((&series.name, series_color(i).to_rgba(), dash, Some(shape)));
    }
    if !legend.is_empty() {
        let (xr, yr) = plot.plotting_area().get_pixel_range();
        let inside = (
            xr.start - base.0,
            yr.start - base.1,
            xr.end - base.0,
            yr.end - base.1,
        );
        draw_legend(area, &chart.title, &legend, inside, &occupied)?;
    }
    area.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Draws every series (lines, error bars, markers; in [`draw_order`]) with `px` mapping data to
/// pixels of `area`. Returns the pixels the lines pass through, to keep the legend off them.
fn draw_series<DB: DrawingBackend>(
    chart: &LineChart,
    area: &DrawingArea<DB, Shift>,
    px: &dyn Fn((f64, f64)) -> (i32, i32),
) -> Result<Vec<(i32, i32)>> {
    let err = |e: &dyn std::fmt::Debug| drawing_error(&chart.title, e);
    let mut occupied = Vec::new();
    for (i, series) in draw_order(chart.series.len())
        .into_iter()
        .map(|i| (i, &chart.series[i]))
    {
        let color = series_color(i).to_rgba();
        let (dash, shape) = series_style(i);
        let points: Vec<(usize, (i32, i32))> = series
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| finite(p))
            .map(|(k, &p)| (k, px(p)))
            .collect();
        let path: Vec<(i32, i32)> = points.iter().map(|p| p.1).collect();
        for w in path.windows(2) {
            occupied.extend((0..=8).map(|t| {
                (
                    w[0].0 + (w[1].0 - w[0].0) * t / 8,
                    w[0].1 + (w[1].1 - w[0].1) * t / 8,
                )
            }));
        }
        occupied.extend(&path);
        line(area, path, dash, color.stroke_width(2)).map_err(|e| err(&e))?;
        for &(k, (x, y)) in &points {
            let e = series.errors.get(k).copied().unwrap_or(0.0).abs();
            if e > 0.0 && e.is_finite() {
                let (p, q) = (series.points[k], color.stroke_width(1));
                let (top, bottom) = (px((p.0, p.1 + e)).1, px((p.0, p.1 - e)).1);
                for path in [
                    vec![(x, top), (x, bottom)],
                    vec![(x - 4, top), (x + 4, top)],
                    vec![(x - 4, bottom), (x + 4, bottom)],
                ] {
                    line(area, path, Dash::Solid, q).map_err(|e| err(&e))?;
                }
            }
            marker(area, (x, y), shape, color).map_err(|e| err(&e))?;
        }
    }
    Ok(occupied)
}

/// Draws the legend of the chart titled `title` in the corner of the plotting area `inside`
/// (pixels of `area`) that covers the fewest `occupied` pixels.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[LegendEntry],
    inside: PixelBox,
    occupied: &[(i32, i32)],
) -> Result<()> {
    let err = |e: &dyn std::fmt::Debug| drawing_error(title, e);
    let font = TextStyle::from(("sans-serif", 13).into_font()).color(&BLACK);
    let mut text_width = 0;
    for (name, ..) in legend {
        let (w, _) = area.estimate_text_size(name, &font).map_err(|e| err(&e))?;
        text_width = text_width.max(w as i32);
    }
    let (w, h) = (44 + text_width, 18 * legend.len() as i32 + 8);
    let (l, t) = (inside.0 + 6, inside.1 + 6);
    let (r, b) = (inside.2 - 6 - w, inside.3 - 6 - h);
    let corners = [(r, t), (l, t), (r, b), (l, b)].map(|(x, y)| (x, y, x + w, y + h));
    let (bx, by, ..) = corners[least_crowded(&corners, occupied)];
    area.draw(&Rectangle::new(
        [(bx, by), (bx + w, by + h)],
        WHITE.mix(0.85).filled(),
    ))
    .map_err(|e| err(&e))?;
    area.draw(&Rectangle::new([(bx, by), (bx + w, by + h)], BLACK))
        .map_err(|e| err(&e))?;
    for (j, (name, color, dash, shape)) in legend.iter().enumerate() {
        let y = by + 13 + 18 * j as i32;
        line(
            area,
            vec![(bx + 6, y), (bx + 34, y)],
            *dash,
            color.stroke_width(2),
        )
        .map_err(|e| err(&e))?;
        if let Some(shape) = shape {
            marker(area, (bx + 20, y), *shape, *color).map_err(|e| err(&e))?;
        }
        area.draw_text(name, &font, (bx + 40, y - 7))
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_avoids_the_lines() {
        let boxes = [(80, 0, 100, 20), (0, 0, 20, 20), (80, 80, 100, 100)];
        // A line along the top: the lower box.
        let top: Vec<(i32, i32)> = (0..100).map(|x| (x, 10)).collect();
        assert_eq!(least_crowded(&boxes, &top), 2);
        // Nothing drawn: the first.
        assert_eq!(least_crowded(&boxes, &[]), 0);
    }
}
