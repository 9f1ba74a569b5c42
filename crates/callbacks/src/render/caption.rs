//! A caption band over the top of an overlay — the image's true and predicted class, and the
//! probability — so every TensorBoard image says what it shows (8x8 bitmap glyphs from
//! `font8x8`; no font files). The band darkens the picture under it to a third and the text is
//! green when the prediction is right, red when it is wrong.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Glyph side in pixels.
const GLYPH: u32 = 8;
/// Band height: the glyph and a 2 px margin above and below (the rows of an image that the
/// caption covers).
pub const CAPTION_BAND: u32 = GLYPH + 4;
const BAND: u32 = CAPTION_BAND;

/// The caption of an image of class `truth` predicted as `predicted` with probability `p`:
/// `true cat  pred dog 0.83`, or where that does not fit `width` the shorter
/// `T:cat P:dog 0.83` (fits 160 px), or `cat>dog 0.83`.
pub fn caption_text(truth: &str, predicted: &str, p: f32, width: u32) -> String {
    let fits = |text: &String| text.chars().count() as u32 * GLYPH + 4 <= width;
    let long = format!("true {truth}  pred {predicted} {p:.2}");
    let short = format!("T:{truth} P:{predicted} {p:.2}");
    if fits(&long) {
        long
    } else if fits(&short) {
        short
    } else {
        format!("{truth}>{predicted} {p:.2}")
    }
}

/// Draw `text` in a band over the top of `image` (cut at the image's width; characters outside
/// ASCII become `?`): green when the prediction is `right`, red when not. Images under 24 px a
/// side are left alone.
pub fn draw_caption(image: &mut RgbImage, text: &str, right: bool) {
    let colour = if right {
        Rgb([120, 255, 120])
    } else {
        Rgb([255, 110, 110])
    };
    draw_label(image, text, colour);
}

/// Draw `text` in `colour` in a band over the top of `image`, as [`draw_caption`] does.
pub fn draw_label(image: &mut RgbImage, text: &str, colour: Rgb<u8>) {
    let (width, height) = image.dimensions();
    if width < 24 || height < 24 {
        return;
    }
    for y in 0..BAND {
        for x in 0..width {
            let pixel = image.get_pixel_mut(x, y);
            pixel.0 = pixel.0.map(|v| v / 3);
        }
    }
    let fits = ((width - 4) / GLYPH) as usize;
    for (i, ch) in text.chars().take(fits).enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8]);
        let x0 = 2 + i as u32 * GLYPH;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH {
                // font8x8 stores each row's leftmost pixel in the lowest bit.
                if bits >> col & 1 == 1 {
                    image.put_pixel(x0 + col, 2 + row as u32, colour);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caption_is_drawn_in_the_band_only_and_fits() {
        let mut image = RgbImage::from_pixel(64, 40, Rgb([90, 90, 90]));
        draw_caption(&mut image, "cat>dog", false);
        // Below the band: untouched.
        assert!((BAND..40).all(|y| (0..64).all(|x| image.get_pixel(x, y).0 == [90, 90, 90])));
        // In the band: darkened, with red text somewhere.
        let band: Vec<[u8; 3]> = (0..BAND)
            .flat_map(|y| (0..64).map(move |x| (x, y)))
            .map(|(x, y)| image.get_pixel(x, y).0)
            .collect();
        assert!(band.contains(&[30, 30, 30]));
        assert!(band.contains(&[255, 110, 110]));
        assert!(!band.contains(&[120, 255, 120]));
        // The long form when it fits, the short one otherwise.
        assert_eq!(
            caption_text("cat", "dog", 0.834, 224),
            "true cat  pred dog 0.83"
        );
        assert_eq!(caption_text("cat", "dog", 0.834, 160), "T:cat P:dog 0.83");
        assert_eq!(caption_text("cat", "dog", 0.834, 96), "cat>dog 0.83");
        // Tiny images and non-ASCII names do not panic.
        let mut tiny = RgbImage::new(10, 10);
        draw_caption(&mut tiny, "x", true);
        let mut image = RgbImage::new(32, 32);
        draw_caption(&mut image, "chat noir → é", true);
    }
}
