//! Tiling equal-size images into one picture (the loggers' grids, sanity and compare views).

use image::{Rgb, RgbImage};

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
