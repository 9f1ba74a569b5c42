//! Turning normalised maps into pictures: colormaps and heatmap overlays.

use std::fmt;
use std::str::FromStr;

use image::{Rgb, RgbImage};

mod caption;
pub use caption::{caption_text, draw_caption, draw_label, CAPTION_BAND};

/// A 256-entry RGB lookup table.
pub type Lut = [[u8; 3]; 256];

/// The colormaps a heatmap can be drawn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    /// OpenCV's `COLORMAP_JET`, exactly (what pytorch-grad-cam and the seed blog use).
    #[default]
    Jet,
    /// Google's Turbo (an improved rainbow).
    Turbo,
    /// matplotlib's Viridis (perceptually uniform).
    Viridis,
}

impl Colormap {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Jet => "jet",
            Colormap::Turbo => "turbo",
            Colormap::Viridis => "viridis",
        }
    }

    /// The lookup table, index 0 = map value 0.
    pub fn lut(self) -> Lut {
        match self {
            Colormap::Jet => jet_lut(),
            Colormap::Turbo => gradient_lut(colorous::TURBO),
            Colormap::Viridis => gradient_lut(colorous::VIRIDIS),
        }
    }
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "jet" => Ok(Colormap::Jet),
            "turbo" => Ok(Colormap::Turbo),
            "viridis" => Ok(Colormap::Viridis),
            _ => Err(format!(
                "unknown colormap `{s}` (expected jet, turbo or viridis)"
            )),
        }
    }
}

/// OpenCV's `COLORMAP_JET` as RGB. OpenCV's table is the piecewise-linear jet sampled at 256
/// points with half-level offsets; in closed form each channel is `clamp(min(4k − a, b − 4k))`.
/// OpenCV's stored table differs from that closed form in one entry (k = 159, blue 1 not 2),
/// which is reproduced so the LUT equals OpenCV's byte for byte (tested against the fixture).
pub fn jet_lut() -> Lut {
    let channel =
        |rise: i32, fall: i32, k: i32| (4 * k - rise).min(fall - 4 * k).clamp(0, 255) as u8;
    let mut lut = [[0u8; 3]; 256];
    for (k, entry) in lut.iter_mut().enumerate() {
        let k = k as i32;
        *entry = [
            channel(382, 1148, k),
            channel(128, 892, k),
            channel(-128, 638, k),
        ];
    }
    lut[159][2] = 1;
    lut
}

fn gradient_lut(gradient: colorous::Gradient) -> Lut {
    let mut lut = [[0u8; 3]; 256];
    for (i, entry) in lut.iter_mut().enumerate() {
        let c = gradient.eval_rational(i, 256);
        *entry = [c.r, c.g, c.b];
    }
    lut
}

/// How an overlay is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayStyle {
    /// The colormap.
    pub colormap: Colormap,
    /// Weight of the photo: pixel = round((1 − α)·heat + α·photo). 0.5 by default.
    pub alpha: f32,
    /// Heat below this fraction of the map's maximum is not drawn (the photo shows through).
    /// 0 draws everything; the CAM paper and the seed blog used 0.2.
    pub threshold: f32,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        Self {
            colormap: Colormap::Jet,
            alpha: 0.5,
            threshold: 0.0,
        }
    }
}

impl OverlayStyle {
    /// Check the numbers are in range.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!(
                "threshold must be in [0, 1], got {}",
                self.threshold
            ));
        }
        Ok(())
    }
}

/// Colour a normalised map (values in [0, 1], row-major, `width × height`) with a LUT. The
/// LUT index truncates (`floor(255·v)`), as OpenCV's pipeline on a uint8 cast does.
pub fn colorize(map: &[f32], width: u32, height: u32, lut: &Lut) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(lut[lut_index(map[(y * width + x) as usize])])
    })
}

fn lut_index(v: f32) -> usize {
    // NaN maps to 0 (`as` saturates and sends NaN to 0).
    (255.0 * v.clamp(0.0, 1.0)) as usize
}

/// Draw a normalised map over a photo of the same size: no wrap-around, every channel is a
/// rounded convex combination of heat and photo.
pub fn overlay(map: &[f32], photo: &RgbImage, style: &OverlayStyle) -> RgbImage {
    let (width, height) = photo.dimensions();
    assert_eq!(
        map.len(),
        (width * height) as usize,
        "map and photo sizes differ"
    );
    let lut = style.colormap.lut();
    let max = map.iter().copied().fold(0.0f32, f32::max);
    let cutoff = style.threshold * max;
    let a = style.alpha;
    RgbImage::from_fn(width, height, |x, y| {
        let v = map[(y * width + x) as usize];
        let p = photo.get_pixel(x, y).0;
        if style.threshold > 0.0 && v < cutoff {
            return Rgb(p);
        }
        let heat = lut[lut_index(v)];
        Rgb(std::array::from_fn(|c| {
            ((1.0 - a) * heat[c] as f32 + a * p[c] as f32)
                .round_ties_even()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// A guided-backpropagation image [3, H, W] (channels first, RGB) shown the usual way
/// (pytorch-grad-cam's `deprocess_image`): over the whole image, (x − mean) / (std + 1e-5) ·
/// 0.1 + 0.5, clipped to [0, 1]; beside `photo` (same size) on its left.
pub fn guided_beside_photo(values: &[f32], photo: &RgbImage) -> RgbImage {
    let (width, height) = photo.dimensions();
    let plane = (width * height) as usize;
    assert_eq!(
        values.len(),
        3 * plane,
        "values must be [3, H, W] of the photo's size"
    );
    let n = values.len() as f64;
    let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (*v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let scale = 0.1 / (var.sqrt() + 1e-5);
    let shown = |v: f32| ((((v as f64 - mean) * scale + 0.5).clamp(0.0, 1.0)) * 255.0) as u8;
    RgbImage::from_fn(2 * width, height, |x, y| {
        if x < width {
            return *photo.get_pixel(x, y);
        }
        let i = (y * width + x - width) as usize;
        Rgb(std::array::from_fn(|c| shown(values[c * plane + i])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_images_are_standardised_over_the_whole_image_and_clipped() {
        let photo = RgbImage::from_pixel(2, 1, Rgb([9, 8, 7]));
        // Mean 0, std 1 over the 6 values: ±1 → 0.5 ± 0.1; one outlier would clip.
        let values = [1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
        let image = guided_beside_photo(&values, &photo);
        assert_eq!(image.dimensions(), (4, 1));
        assert_eq!(image.get_pixel(0, 0).0, [9, 8, 7]);
        // 0.6·255 truncates to 152 (std + 1e-5 is a hair above 1), as np.uint8 does.
        assert_eq!(image.get_pixel(2, 0).0, [152, 152, 152]);
        assert_eq!(image.get_pixel(3, 0).0, [102, 102, 102]);
        let flat = guided_beside_photo(&[0.0; 6], &photo);
        assert_eq!(
            flat.get_pixel(2, 0).0,
            [127, 127, 127],
            "a zero image is mid-grey, no NaN"
        );
    }

    #[test]
    fn jet_endpoints_and_middle() {
        let lut = jet_lut();
        assert_eq!(lut[0], [0, 0, 128]);
        assert_eq!(lut[255], [128, 0, 0]);
        assert_eq!(lut[128], [130, 255, 126]);
    }

    #[test]
    fn overlay_never_wraps() {
        let photo = RgbImage::from_pixel(2, 1, Rgb([255, 255, 255]));
        let out = overlay(&[1.0, 0.0], &photo, &OverlayStyle::default());
        // dark red (128,0,0) half-blended with white, not wrapped past 255
        assert_eq!(out.get_pixel(0, 0).0, [192, 128, 128]);
        assert_eq!(out.get_pixel(1, 0).0, [128, 128, 192]);
    }

    #[test]
    fn threshold_shows_the_photo() {
        let photo = RgbImage::from_pixel(2, 1, Rgb([10, 20, 30]));
        let style = OverlayStyle {
            threshold: 0.2,
            ..OverlayStyle::default()
        };
        let out = overlay(&[1.0, 0.1], &photo, &style);
        assert_eq!(out.get_pixel(1, 0).0, [10, 20, 30]);
        assert_ne!(out.get_pixel(0, 0).0, [10, 20, 30]);
    }

    #[test]
    fn alpha_extremes() {
        let photo = RgbImage::from_pixel(1, 1, Rgb([10, 20, 30]));
        let only_photo = OverlayStyle {
            alpha: 1.0,
            ..OverlayStyle::default()
        };
        assert_eq!(
            overlay(&[0.7], &photo, &only_photo).get_pixel(0, 0).0,
            [10, 20, 30]
        );
        let only_heat = OverlayStyle {
            alpha: 0.0,
            colormap: Colormap::Viridis,
            ..OverlayStyle::default()
        };
        let lut = Colormap::Viridis.lut();
        assert_eq!(
            overlay(&[1.0], &photo, &only_heat).get_pixel(0, 0).0,
            lut[255]
        );
        assert!(only_heat.validate().is_ok());
        assert!(OverlayStyle {
            alpha: 1.5,
            ..OverlayStyle::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn names_round_trip() {
        for c in [Colormap::Jet, Colormap::Turbo, Colormap::Viridis] {
            assert_eq!(c.name().parse::<Colormap>(), Ok(c));
        }
        assert!("hot".parse::<Colormap>().is_err());
    }
}
