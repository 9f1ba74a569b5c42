//! Every localization score of a set of photos, for one method or baseline: the pointing game
//! (strict and with TorchRay's 15-px tolerance) and the energy in the head box, and — where the
//! annotations have the whole animal's outline — MaxBoxAcc (V2 and per IoU level) against its
//! bounding box and PxAP against its filled mask ([`crate::wsol`]).
//!
//! Maps are at the photo's own size (upright); boxes and outlines in the same pixels.

use serde::Serialize;

use crate::localization::{energy_in_box, BoxXyxy, Map};
use crate::wsol::{pointing_hit, MaxBoxAcc, PixelBox, PxAp};

/// TorchRay's pointing-game tolerance, in pixels.
pub const POINTING_TOLERANCE: f64 = 15.0;

/// One photo's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The head box `[x0, y0, x1, y1]` (continuous pixel coordinates).
    pub head: BoxXyxy,
    /// The whole animal's outline, `(x, y)` vertices, when the annotations have it.
    pub body: Option<Vec<(f32, f32)>>,
}

/// The scores over a set of photos (means over the photos scored; the WSOL scores over those
/// with an outline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalizationSummary {
    /// Share of maps whose maximum is inside the head box.
    pub pointing_game: f64,
    /// Share of maps whose maximum is within 15 px of the head box.
    pub pointing_game_15px: f64,
    /// Mean share of the map's mass inside the head box (Quantus: relevance mass accuracy).
    pub energy_in_box: f64,
    /// MaxBoxAccV2 against the outline's bounding box (`None` without outlines).
    pub maxboxacc_v2: Option<f64>,
    /// MaxBoxAcc at IoU 0.3, 0.5 and 0.7, keyed "0.3", "0.5", "0.7".
    pub maxboxacc: Option<std::collections::BTreeMap<String, f64>>,
    /// Pixel average precision against the filled outline, as a fraction.
    pub pxap: Option<f64>,
    /// Photos scored.
    pub images: usize,
    /// Of them, photos with an outline (the WSOL scores' set).
    pub images_with_outline: usize,
}

/// Accumulates one method's (or baseline's) scores photo by photo.
#[derive(Debug, Clone, Default)]
pub struct LocalizationReport {
    strict_hits: usize,
    tolerant_hits: usize,
    energy: f64,
    images: usize,
    boxes: MaxBoxAcc,
    pixels: PxAp,
    outlined: usize,
}

impl LocalizationReport {
    /// Score one map (normalised, at the photo's size) against its annotation.
    pub fn add(&mut self, map: &Map, truth: &Annotation) {
        let head = pixel_box(truth.head, map.width, map.height);
        self.strict_hits += usize::from(pointing_hit(&map.values, map.width, head, 0.0));
        self.tolerant_hits += usize::from(pointing_hit(
            &map.values,
            map.width,
            head,
            POINTING_TOLERANCE,
        ));
        self.energy += energy_in_box(map, &truth.head) as f64;
        self.images += 1;
        if let Some(outline) = &truth.body {
            let mask = polygon_mask(outline, map.width, map.height);
            if let Some(body) = mask_box(&mask, map.width) {
                self.boxes.add(&map.values, map.width, map.height, &[body]);
                self.pixels.add(&map.values, &mask);
                self.outlined += 1;
            }
        }
    }

    /// The scores so far.
    pub fn summary(&self) -> LocalizationSummary {
        let n = self.images.max(1) as f64;
        let wsol = self.outlined > 0;
        let levels = self.boxes.at_levels();
        LocalizationSummary {
            pointing_game: self.strict_hits as f64 / n,
            pointing_game_15px: self.tolerant_hits as f64 / n,
            energy_in_box: self.energy / n,
            maxboxacc_v2: wsol.then(|| self.boxes.v2()),
            maxboxacc: wsol.then(|| {
                ["0.3", "0.5", "0.7"]
                    .iter()
                    .zip(levels)
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            }),
            pxap: wsol.then(|| self.pixels.value()),
            images: self.images,
            images_with_outline: self.outlined,
        }
    }
}

/// The pixels whose centres lie in the continuous box `[x0, x1) × [y0, y1)` (as the strict
/// pointing game and energy count them), as an inclusive pixel box.
fn pixel_box(b: BoxXyxy, width: usize, height: usize) -> PixelBox {
    let first = |v: f32| (v - 0.5).ceil() as i64;
    let last = |v: f32| (v - 0.5).ceil() as i64 - 1;
    [
        first(b[0]).max(0),
        first(b[1]).max(0),
        last(b[2]).min(width as i64 - 1),
        last(b[3]).min(height as i64 - 1),
    ]
}

/// The pixels whose centres lie inside the polygon (even-odd rule), row-major.
pub fn polygon_mask(polygon: &[(f32, f32)], width: usize, height: usize) -> Vec<bool> {
    let mut mask = vec![false; width * height];
    if polygon.len() < 3 {
        return mask;
    }
    for y in 0..height {
        let cy = y as f32 + 0.5;
        // Where the row of centres crosses each edge, sorted: inside between pairs.
        let mut crossings: Vec<f32> = polygon
            .iter()
            .zip(polygon.iter().cycle().skip(1))
            .filter(|((_, y0), (_, y1))| (*y0 <= cy) != (*y1 <= cy))
            .map(|((x0, y0), (x1, y1))| x0 + (cy - y0) / (y1 - y0) * (x1 - x0))
            .collect();
        crossings.sort_by(f32::total_cmp);
        for pair in crossings.chunks(2) {
            let [start, end] = pair else { break };
            for x in 0..width {
                let cx = x as f32 + 0.5;
                if *start <= cx && cx < *end {
                    mask[y * width + x] = true;
                }
            }
        }
    }
    mask
}

/// The inclusive bounding box of a mask's pixels; `None` when it is empty.
fn mask_box(mask: &[bool], width: usize) -> Option<PixelBox> {
    let mut b: Option<PixelBox> = None;
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let (x, y) = ((i % width) as i64, (i / width) as i64);
        b = Some(match b {
            None => [x, y, x, y],
            Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
        });
    }
    b
}

/// The centre baseline: a Gaussian at the photo's centre with σ = width/4 and height/4,
/// maximum 1. On centred photos it is what a map scores by knowing nothing but the framing.
pub fn centre_baseline(width: usize, height: usize) -> Map {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let (sx, sy) = (width as f32 / 4.0, height as f32 / 4.0);
    let values = (0..width * height)
        .map(|i| {
            let dx = ((i % width) as f32 + 0.5 - cx) / sx;
            let dy = ((i / width) as f32 + 0.5 - cy) / sy;
            (-(dx * dx + dy * dy) / 2.0).exp()
        })
        .collect();
    Map {
        width,
        height,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_outline_fills_its_pixels_and_a_map_on_it_scores_full_marks() {
        let square = [(2.0, 1.0), (6.0, 1.0), (6.0, 5.0), (2.0, 5.0)];
        let mask = polygon_mask(&square, 8, 6);
        let inside: Vec<usize> = (0..48).filter(|i| mask[*i]).collect();
        assert_eq!(inside.len(), 16, "4 x 4 pixel centres inside");
        assert_eq!(mask_box(&mask, 8), Some([2, 1, 5, 4]));
        let map = Map {
            width: 8,
            height: 6,
            values: mask.iter().map(|m| f32::from(u8::from(*m))).collect(),
        };
        let mut report = LocalizationReport::default();
        let truth = Annotation {
            head: [2.0, 1.0, 6.0, 5.0],
            body: Some(square.to_vec()),
        };
        report.add(&map, &truth);
        let s = report.summary();
        assert_eq!(
            (s.pointing_game, s.pointing_game_15px, s.energy_in_box),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(s.pxap, Some(1.0));
        assert_eq!(s.images_with_outline, 1);
        // The map's box is [2, 1, 6, 5] (one past, as the reference) against [2, 1, 5, 4].
        assert!(s.maxboxacc_v2.unwrap() > 0.6);
    }

    #[test]
    fn without_outlines_only_the_head_scores_exist_and_an_all_zero_map_scores_zero() {
        let mut report = LocalizationReport::default();
        let map = Map {
            width: 10,
            height: 10,
            values: vec![0.0; 100],
        };
        let truth = Annotation {
            head: [1.0, 1.0, 4.0, 4.0],
            body: None,
        };
        report.add(&map, &truth);
        let s = report.summary();
        assert_eq!(
            (s.pointing_game, s.pointing_game_15px, s.energy_in_box),
            (0.0, 0.0, 0.0)
        );
        assert_eq!((s.maxboxacc_v2, s.pxap), (None, None));
    }

    #[test]
    fn the_centre_baseline_peaks_at_the_centre() {
        let map = centre_baseline(9, 5);
        let peak = map
            .values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!((peak % 9, peak / 9), (4, 2));
        assert!((map.values[peak] - 1.0).abs() < 1e-6);
    }
}
