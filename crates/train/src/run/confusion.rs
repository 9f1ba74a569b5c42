//! Each evaluated set's per-class accuracy (`accuracy/<set>/<class>`, metrics.csv
//! `<set>_accuracy_<class>`) and confusion matrix: a TensorBoard image `confusion/<set>` (rows:
//! the true class, columns: the predicted one, each cell shaded by its share of the row, with
//! its count; up to [`MAX_IMAGE_CLASSES`] classes) and `confusion/<set>-epoch-NNN.csv` in the run
//! directory.

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use plotters::style::{BLACK, WHITE};

use crate::learn::epoch::Score;
use crate::run::files::write_atomic;
use crate::run::metrics::Metric;
use crate::run::session::Session;

/// A cell's side in the image, in pixels.
const CELL: u32 = 56;
/// The most classes drawn as a TensorBoard image (56 px a cell: 2,900 px a side).
pub const MAX_IMAGE_CLASSES: usize = 50;
/// Room for the class names left of and above the cells.
const MARGIN: u32 = 90;

/// Log `scores` (set name, score) of `epoch`: per-class accuracy, the matrix image and CSV.
pub fn log(s: &mut Session, scores: &[(String, Score)], epoch: usize) -> Result<()> {
    let classes = s.class_names.clone();
    for (set, score) in scores {
        for (c, class) in classes.iter().enumerate() {
            if let Some(accuracy) = score.confusion.class_accuracy(c) {
                let metric = Metric::ClassAccuracy {
                    set: set.clone(),
                    class: class.clone(),
                };
                s.scalar(&metric.tag(), accuracy, epoch)?;
            }
        }
        let matrix = score.confusion.padded(classes.len());
        // Above MAX_IMAGE_CLASSES the picture would be unreadable (and huge): the CSV only.
        if matrix.len() <= MAX_IMAGE_CLASSES {
            let image = render(&matrix, &classes)?;
            let tag = format!("confusion/{set}");
            s.each_sink(|sink| sink.images(&tag, std::slice::from_ref(&image), epoch as i64))?;
        }
        let dir = s.run_dir.join("confusion");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{set}-epoch-{epoch:03}.csv"));
        write_atomic(&path, csv(&matrix, &classes).as_bytes())?;
    }
    Ok(())
}

/// The matrix as CSV: a header `true\predicted,<class>…`, then one row per true class.
pub fn csv(matrix: &[Vec<usize>], classes: &[String]) -> String {
    let name = |i: usize| {
        classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class{i}"))
    };
    let mut out = String::from("true\\predicted");
    for p in 0..matrix.len() {
        out.push(',');
        out.push_str(&name(p));
    }
    out.push('\n');
    for (t, row) in matrix.iter().enumerate() {
        out.push_str(&name(t));
        for count in row {
            out.push_str(&format!(",{count}"));
        }
        out.push('\n');
    }
    out
}

/// The matrix as an image: white (0 % of the row) to dark blue (100 %), the diagonal outlined
/// in green, each cell's count written in it, the class names along both axes (at most 12
/// characters each).
pub fn render(matrix: &[Vec<usize>], classes: &[String]) -> Result<RgbImage> {
    let n = matrix.len() as u32;
    let side = MARGIN + n * CELL + 8;
    let mut image = RgbImage::from_pixel(side, side, Rgb([255, 255, 255]));
    for (t, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f32 / total as f32
            };
            let shade = |light: f32, dark: f32| (light + (dark - light) * share).round() as u8;
            let colour = Rgb([shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0)]);
            let (x0, y0) = (MARGIN + p as u32 * CELL, MARGIN + t as u32 * CELL);
            for y in y0..y0 + CELL {
                for x in x0..x0 + CELL {
                    let edge = x < x0 + 2 || y < y0 + 2 || x >= x0 + CELL - 2 || y >= y0 + CELL - 2;
                    let outline = if t == p {
                        Rgb([0, 160, 0])
                    } else {
                        Rgb([200, 200, 200])
                    };
                    image.put_pixel(x, y, if edge { outline } else { colour });
                }
            }
        }
    }
    // The counts: white on a dark cell (more than half of its row), black on a light one.
    for (t, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (p, count) in row.iter().enumerate() {
            let (x0, y0) = (MARGIN + p as u32 * CELL, MARGIN + t as u32 * CELL);
            let dark = total > 0 && 2 * count > total;
            let colour = if dark { WHITE } else { BLACK };
            let at = (x0 as i32 + 10, (y0 + CELL / 2) as i32 - 8);
            crate::plot::label_in(&mut image, &count.to_string(), 15, at, colour)?;
        }
    }
    let name = |i: usize| {
        let full = classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class{i}"));
        full.chars().take(12).collect::<String>()
    };
    for i in 0..n as usize {
        let at = MARGIN as i32 + (i as u32 * CELL) as i32;
        crate::plot::label(&mut image, &name(i), 13, (4, at + CELL as i32 / 2 - 7))?;
        crate::plot::label(&mut image, &name(i), 13, (at + 4, MARGIN as i32 - 20))?;
    }
    crate::plot::label(&mut image, "true ↓  predicted →", 12, (4, 4))?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_image_show_every_cell() {
        let classes: Vec<String> = ["cat", "dog", "fox"].map(String::from).to_vec();
        let matrix = vec![vec![5, 1, 0], vec![0, 7, 2], vec![1, 0, 9]];
        let text = csv(&matrix, &classes);
        assert_eq!(
            text,
            "true\\predicted,cat,dog,fox\ncat,5,1,0\ndog,0,7,2\nfox,1,0,9\n"
        );
        let image = render(&matrix, &classes).unwrap();
        assert_eq!(image.width(), MARGIN + 3 * CELL + 8);
        // The fox row's own cell (9 of 10) is darker than its cat cell (1 of 10).
        let inside =
            |t: u32, p: u32| *image.get_pixel(MARGIN + p * CELL + 4, MARGIN + t * CELL + 4);
        assert!(inside(2, 2)[0] < inside(2, 0)[0]);
        // A row without images stays white rather than dividing by zero.
        let empty = render(&[vec![0, 0], vec![0, 3]], &classes[..2]).unwrap();
        let white = *empty.get_pixel(MARGIN + 4, MARGIN + 4);
        assert_eq!(white, Rgb([255, 255, 255]));
    }
}
