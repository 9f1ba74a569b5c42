//! Tiling equal-size images into one picture (the loggers' grids, sanity and compare views).

use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use crate::render::draw_label;

/// The least side of an evolution strip's frame: smaller photos are scaled up to it.
pub const MIN_FRAME_SIDE: u32 = 112;

/// Frames per row of an evolution strip (more wrap onto the next row). TensorBoard's IMAGES
/// card shows every image 350 px wide (TensorBoard 2.21's `tf-image-loader`), so three frames a
/// row keep each at ~115 px on screen, where a row of 11 showed each at 32.
pub const STRIP_COLUMNS: usize = 3;

/// An evolution strip: each (step, overlay) frame scaled up to at least [`MIN_FRAME_SIDE`] a
/// side, labelled `step N` in a band over its top, [`STRIP_COLUMNS`] to a row, in order.
pub fn evolution_strip(frames: &[(usize, RgbImage)]) -> RgbImage {
    let labelled: Vec<RgbImage> = frames
        .iter()
        .map(|(step, frame)| {
            let (w, h) = frame.dimensions();
            let scale = (MIN_FRAME_SIDE as f64 / w.min(h).max(1) as f64).max(1.0);
            let mut frame = if scale > 1.0 {
                let size = |v: u32| (v as f64 * scale).ceil() as u32;
                image::imageops::resize(frame, size(w), size(h), FilterType::Triangle)
            } else {
                frame.clone()
            };
            draw_label(&mut frame, &format!("step {step}"), Rgb([255, 255, 255]));
            frame
        })
        .collect();
    grid_with_gap(&labelled, STRIP_COLUMNS.min(labelled.len()), 4)
}

/// Tile equal-size images in a near-square grid with 2-pixel white gaps.
pub fn grid(images: &[RgbImage]) -> RgbImage {
    grid_with_columns(images, (images.len() as f64).sqrt().ceil() as usize)
}

/// Tile equal-size images row by row, `columns` per row, with 2-pixel white gaps.
pub fn grid_with_columns(images: &[RgbImage], columns: usize) -> RgbImage {
    grid_with_gap(images, columns, 2)
}

/// Tile equal-size images row by row, `columns` per row, with `gap`-pixel white gaps.
pub fn grid_with_gap(images: &[RgbImage], columns: usize, gap: u32) -> RgbImage {
    let Some(first) = images.first() else {
        return RgbImage::new(1, 1);
    };
    let (w, h) = first.dimensions();
    let columns = columns.max(1) as u32;
    let rows = (images.len() as u32).div_ceil(columns);
    let mut out = RgbImage::from_pixel(
        columns * (w + gap) - gap,
        rows * (h + gap) - gap,
        Rgb([255, 255, 255]),
    );
    for (i, image) in images.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        image::imageops::replace(
            &mut out,
            image,
            (col * (w + gap)) as i64,
            (row * (h + gap)) as i64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_wrap_scale_up_and_label_each_frame() {
        let frames: Vec<(usize, RgbImage)> = (0..11)
            .map(|s| (s, RgbImage::from_pixel(64, 48, Rgb([0, 0, 200]))))
            .collect();
        let strip = evolution_strip(&frames);
        // 48 px → 112 (×7/3): 150x112 frames, 3 to a row, 4 rows, 4-px gaps.
        assert_eq!(strip.dimensions(), (3 * 150 + 2 * 4, 4 * 112 + 3 * 4));
        // Each frame has white label text in its band, and its picture below.
        for i in 0..11u32 {
            let (x0, y0) = ((i % 3) * 154, (i / 3) * 116);
            let band = (0..12).flat_map(|y| (0..150).map(move |x| (x0 + x, y0 + y)));
            let white = band.filter(|&(x, y)| strip.get_pixel(x, y).0 == [255, 255, 255]);
            assert!(white.count() > 10, "frame {i} has no label");
            assert_eq!(strip.get_pixel(x0 + 75, y0 + 80).0, [0, 0, 200]);
        }
        // Large frames keep their size.
        let big = evolution_strip(&[(3, RgbImage::new(160, 160))]);
        assert_eq!(big.dimensions(), (160, 160));
    }

    #[test]
    fn grid_layout() {
        let images = vec![RgbImage::from_pixel(4, 3, Rgb([1, 2, 3])); 5];
        let g = grid(&images);
        // 5 images → 3 columns, 2 rows, 2-px gaps.
        assert_eq!(g.dimensions(), (3 * 4 + 2 * 2, 2 * 3 + 2));
        assert_eq!(g.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(g.get_pixel(4, 0).0, [255, 255, 255]);
        assert_eq!(
            g.get_pixel(g.width() - 1, g.height() - 1).0,
            [255, 255, 255]
        );
    }
}
