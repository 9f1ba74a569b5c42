//! The localization scores of the weakly-supervised-localization literature, as defined by
//! their reference code: MaxBoxAcc / MaxBoxAccV2 and PxAP (Choe et al., CVPR 2020,
//! `clovaai/wsolevaluation`, `evaluation.py`), and TorchRay's pointing game with a 15-pixel
//! tolerance (Zhang et al. 2016).
//!
//! Maps are normalised to [0, 1] and at the photo's size; boxes are inclusive pixel boxes
//! `[x0, y0, x1, y1]`.
//!
//! **MaxBoxAcc.** The map is quantised to uint8 (`(v·255) as u8`, truncating). For each
//! threshold τ = 0.00, 0.01, …, 0.99 it is binarised at `int(τ·max)`, strictly greater. Each
//! contour OpenCV's `findContours(RETR_TREE)` would return gives a box: the outer border of each
//! 8-connected foreground region (its bounding box), and the border of each hole — a
//! 4-connected background region that does not reach the image's edge — whose bounding box is
//! the hole's grown by one pixel. As in the reference, a box's right and bottom edges are
//! `x + w` and `y + h` (one past the region), clipped to the image. An image is a hit at IoU δ
//! when its best box at that τ reaches δ (IoU on inclusive boxes, `+ 1`). MaxBoxAcc(δ) is the
//! best-τ share of hits; V2 is the mean over δ ∈ {0.3, 0.5, 0.7} (multi-contour evaluation).
//!
//! **PxAP.** Histograms of the map's values at mask and non-mask pixels in bins
//! [0, 0.01), …, [0.99, 1), [1, 2), [2, 3], pooled over all images; true and false positives
//! counted from the top bin down; AP = Σ precision[i]·(recall[i] − recall[i−1]) over the bins
//! with at least one positive prediction, as a fraction.

mod regions;

use regions::{regions, Regions};

/// The CAM thresholds τ = i / 100, i = 0..100.
pub const THRESHOLDS: usize = 100;
/// The IoU levels δ of MaxBoxAccV2.
pub const IOU_LEVELS: [f64; 3] = [0.3, 0.5, 0.7];

/// An inclusive pixel box `[x0, y0, x1, y1]`.
pub type PixelBox = [i64; 4];

/// IoU of two inclusive pixel boxes; 0 for a degenerate union (as the reference).
pub fn iou(a: PixelBox, b: PixelBox) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1).max(0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1).max(0);
    let intersection = w * h;
    let area = |r: PixelBox| (r[2] - r[0] + 1) * (r[3] - r[1] + 1);
    let union = area(a) + area(b) - intersection;
    if union <= 0 {
        0.0
    } else {
        intersection as f64 / union as f64
    }
}

/// The map quantised as the reference does: `(v·255) as u8`, truncating (NaN → 0).
pub fn quantise(map: &[f32]) -> Vec<u8> {
    map.iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8)
        .collect()
}

/// The reference's box of a region with inclusive bounds `b`: right and bottom are one past
/// the region (`x + w`, `y + h`), clipped to width − 1 and height − 1.
fn reference_box([x0, y0, x1, y1]: [i64; 4], width: usize, height: usize) -> PixelBox {
    [
        x0,
        y0,
        (x1 + 1).min(width as i64 - 1),
        (y1 + 1).min(height as i64 - 1),
    ]
}

/// The box of the contour around a hole with inclusive bounds `b`: the border pixels around a
/// hole extend one pixel beyond it on every side.
fn hole_box([x0, y0, x1, y1]: [i64; 4], width: usize, height: usize) -> PixelBox {
    reference_box([x0 - 1, y0 - 1, x1 + 1, y1 + 1], width, height)
}

/// The boxes of every contour of `binary` (row-major, `width × height`), with the reference's
/// right/bottom convention; `[[0, 0, 0, 0]]` when there is no contour.
pub fn contour_boxes(binary: &[bool], width: usize, height: usize) -> Vec<PixelBox> {
    assert_eq!(
        binary.len(),
        width * height,
        "binary map must be width × height"
    );
    let mut boxes = Vec::new();
    // Outer borders: 8-connected foreground regions.
    for (region, _) in regions(width, height, |i| binary[i], true) {
        boxes.push(reference_box(region, width, height));
    }
    // Hole borders: 4-connected background regions that do not touch the edge.
    for (region, touches_edge) in regions(width, height, |i| !binary[i], false) {
        if !touches_edge {
            boxes.push(hole_box(region, width, height));
        }
    }
    if boxes.is_empty() {
        boxes.push([0, 0, 0, 0]);
    }
    boxes
}

/// The best IoU with any of `truth` over the boxes of the map at each of the
/// [`THRESHOLDS`] thresholds: the same boxes as [`contour_boxes`] at every threshold, found in
/// two sweeps instead of 200 labellings. Foreground regions only grow as the threshold falls
/// and background regions as it rises, so each sweep adds pixels in value order to a
/// union-find (8-connected foreground, 4-connected background) that keeps each region's
/// bounding box and whether it touches the edge.
pub fn best_iou_per_threshold(
    map: &[f32],
    width: usize,
    height: usize,
    truth: &[PixelBox],
) -> Vec<f64> {
    assert_eq!(map.len(), width * height, "map must be width × height");
    let quantised = quantise(map);
    let max = quantised.iter().copied().max().unwrap_or(0) as f64;
    let cuts: Vec<i64> = (0..THRESHOLDS)
        .map(|i| (i as f64 * 0.01 * max) as i64)
        .collect();
    // Pixels by value (counting sort on the 256 levels).
    let mut by_value: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, v) in quantised.iter().enumerate() {
        by_value[*v as usize].push(i);
    }
    let best_of = |boxes: &mut dyn Iterator<Item = PixelBox>| {
        boxes
            .flat_map(|b| truth.iter().map(move |t| iou(b, *t)))
            .fold(0.0, f64::max)
    };
    let mut best = vec![0.0f64; THRESHOLDS];
    let mut any_foreground = [false; THRESHOLDS];
    // Foreground: value > cut, thresholds from the highest cut down.
    let mut regions = Regions::new(width, height, true);
    let mut level = 256usize;
    for i in (0..THRESHOLDS).rev() {
        while level as i64 > cuts[i] + 1 {
            level -= 1;
            for &p in &by_value[level] {
                regions.add(p);
            }
        }
        any_foreground[i] = !regions.is_empty();
        best[i] = best_of(
            &mut regions
                .boxes()
                .map(|(b, _)| reference_box(b, width, height)),
        );
    }
    // Holes: background (value ≤ cut) regions off the edge, thresholds from the lowest cut up.
    let mut regions = Regions::new(width, height, false);
    let mut level = 0usize;
    for i in 0..THRESHOLDS {
        while level < 256 && level as i64 <= cuts[i] {
            for &p in &by_value[level] {
                regions.add(p);
            }
            level += 1;
        }
        let holes = regions.boxes().filter(|(_, edge)| !edge);
        let grown = holes.map(|(b, _)| hole_box(b, width, height));
        best[i] = best[i].max(best_of(&mut grown.into_iter()));
        if !any_foreground[i] {
            // No contour at all: the reference's box [0, 0, 0, 0].
            best[i] = best_of(&mut std::iter::once([0, 0, 0, 0]));
        }
    }
    best
}

/// MaxBoxAcc over a set of images, accumulated one image at a time.
#[derive(Debug, Clone)]
pub struct MaxBoxAcc {
    /// hits[δ][τ]: images whose best box at τ reaches δ.
    hits: [[usize; THRESHOLDS]; 3],
    images: usize,
}

impl Default for MaxBoxAcc {
    fn default() -> Self {
        Self {
            hits: [[0; THRESHOLDS]; 3],
            images: 0,
        }
    }
}

impl MaxBoxAcc {
    /// Add one image: its map (normalised, `width × height`) and its ground-truth boxes.
    pub fn add(&mut self, map: &[f32], width: usize, height: usize, truth: &[PixelBox]) {
        let best = best_iou_per_threshold(map, width, height, truth);
        for (level, hits) in IOU_LEVELS.iter().zip(&mut self.hits) {
            for (hit, iou) in hits.iter_mut().zip(&best) {
                *hit += usize::from(*iou >= *level);
            }
        }
        self.images += 1;
    }

    /// MaxBoxAcc at δ = 0.3, 0.5, 0.7 (fractions; 0 with no image).
    pub fn at_levels(&self) -> [f64; 3] {
        let n = self.images.max(1) as f64;
        self.hits
            .map(|hits| hits.iter().copied().max().unwrap_or(0) as f64 / n)
    }

    /// MaxBoxAccV2: the mean over the three levels.
    pub fn v2(&self) -> f64 {
        self.at_levels().iter().sum::<f64>() / 3.0
    }

    /// Images added.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Add another set's images (the result is as if they had been added one by one).
    pub fn merge(&mut self, other: &MaxBoxAcc) {
        for (mine, theirs) in self.hits.iter_mut().zip(&other.hits) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        self.images += other.images;
    }
}

/// Bins of PxAP's histograms: [0, 0.01), …, [0.99, 1), [1, 2), [2, 3].
const PXAP_BINS: usize = THRESHOLDS + 2;

/// Pixel average precision over a set of images, accumulated one image at a time.
#[derive(Debug, Clone)]
pub struct PxAp {
    positives: [u64; PXAP_BINS],
    negatives: [u64; PXAP_BINS],
}

impl Default for PxAp {
    fn default() -> Self {
        Self {
            positives: [0; PXAP_BINS],
            negatives: [0; PXAP_BINS],
        }
    }
}

/// numpy.histogram's bin of `v` for the right edges 0.00, 0.01, …, 0.99, 1, 2, 3 (the last bin
/// closed); `None` outside [0, 3] (or NaN).
fn pxap_bin(v: f32) -> Option<usize> {
    let v = v as f64;
    if !(0.0..=3.0).contains(&v) {
        return None;
    }
    if v >= 1.0 {
        return Some(if v >= 2.0 { THRESHOLDS + 1 } else { THRESHOLDS });
    }
    // The largest i with i·0.01 ≤ v (the edges are numpy's arange(0, 1, 0.01) values).
    let mut i = ((v / 0.01) as usize).min(THRESHOLDS - 1);
    while i + 1 < THRESHOLDS && ((i + 1) as f64) * 0.01 <= v {
        i += 1;
    }
    while i > 0 && (i as f64) * 0.01 > v {
        i -= 1;
    }
    Some(i)
}

impl PxAp {
    /// Add one image: its map and mask (same length; `true` = object).
    pub fn add(&mut self, map: &[f32], mask: &[bool]) {
        assert_eq!(map.len(), mask.len(), "map and mask sizes differ");
        for (v, m) in map.iter().zip(mask) {
            if let Some(bin) = pxap_bin(*v) {
                let hist = if *m {
                    &mut self.positives
                } else {
                    &mut self.negatives
                };
                hist[bin] += 1;
            }
        }
    }

    /// Add another set's pixels (the result is as if they had been added one by one).
    pub fn merge(&mut self, other: &PxAp) {
        for (a, b) in self.positives.iter_mut().zip(&other.positives) {
            *a += b;
        }
        for (a, b) in self.negatives.iter_mut().zip(&other.negatives) {
            *a += b;
        }
    }

    /// The average precision, as a fraction; 0 when no pixel is positive or none is predicted.
    pub fn value(&self) -> f64 {
        let total_positives: u64 = self.positives.iter().sum();
        if total_positives == 0 {
            return 0.0;
        }
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut previous_recall = 0.0;
        let mut ap = 0.0;
        for bin in (0..PXAP_BINS).rev() {
            tp += self.positives[bin];
            fp += self.negatives[bin];
            let recall = tp as f64 / total_positives as f64;
            // The top bin has no previous recall: the reference starts at precision[1:].
            if bin < PXAP_BINS - 1 && tp + fp > 0 {
                ap += tp as f64 / (tp + fp) as f64 * (recall - previous_recall);
            }
            previous_recall = recall;
        }
        ap
    }
}

/// TorchRay's pointing game: a hit when the map's maximum (the first, in row-major order) lies
/// within `tolerance` pixels (Euclidean) of the inclusive box; `tolerance` 0 is the strict game.
/// A constant map (an all-zero one included) points nowhere: a miss.
pub fn pointing_hit(map: &[f32], width: usize, truth: PixelBox, tolerance: f64) -> bool {
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // A constant map (or one of NaN) has no maximum to point with.
    if max.partial_cmp(&min) != Some(std::cmp::Ordering::Greater) {
        return false;
    }
    let Some((index, _)) =
        map.iter()
            .enumerate()
            .fold(None, |best: Option<(usize, f32)>, (i, v)| match best {
                Some((_, b)) if *v <= b => best,
                _ if v.is_nan() => best,
                _ => Some((i, *v)),
            })
    else {
        return false;
    };
    let (x, y) = ((index % width) as i64, (index / width) as i64);
    let dx = (truth[0] - x).max(x - truth[2]).max(0) as f64;
    let dy = (truth[1] - y).max(y - truth[3]).max(0) as f64;
    (dx * dx + dy * dy).sqrt() <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map of `width × height` with value `v` inside each of the given inclusive boxes.
    fn blobs(width: usize, height: usize, parts: &[(PixelBox, f32)]) -> Vec<f32> {
        let mut map = vec![0.0f32; width * height];
        for ([x0, y0, x1, y1], v) in parts {
            for y in *y0..=*y1 {
                for x in *x0..=*x1 {
                    map[y as usize * width + x as usize] = *v;
                }
            }
        }
        map
    }

    #[test]
    fn only_multi_contour_evaluation_finds_the_smaller_blob() {
        // A big bright blob on the left and the object's blob on the right, equally bright:
        // the largest contour alone misses the truth, every contour's box finds it.
        let map = blobs(40, 20, &[([1, 1, 20, 18], 1.0), ([30, 5, 35, 10], 1.0)]);
        let truth = [[30, 5, 36, 11]];
        let mut acc = MaxBoxAcc::default();
        acc.add(&map, 40, 20, &truth);
        assert_eq!(acc.at_levels(), [1.0, 1.0, 1.0]);
        // The right blob's box is [30, 5, 36, 11] (one past, as the reference): IoU 1.
        let best = best_iou_per_threshold(&map, 40, 20, &truth);
        assert!((best[50] - 1.0).abs() < 1e-12, "{}", best[50]);
    }

    #[test]
    fn a_hole_gives_its_own_box() {
        // A ring: foreground border with a 4x4 hole inside.
        let mut binary = vec![true; 8 * 8];
        for y in 2..6 {
            for x in 2..6 {
                binary[y * 8 + x] = false;
            }
        }
        let boxes = contour_boxes(&binary, 8, 8);
        // The hole's border runs from x = 1 to 6: x1 = x + w = 7 (one past, as the reference).
        assert_eq!(boxes, vec![[0, 0, 7, 7], [1, 1, 7, 7]]);
    }

    #[test]
    fn a_perfect_map_has_pxap_one_and_a_constant_map_the_prior() {
        let mask: Vec<bool> = (0..100).map(|i| i % 10 < 3).collect();
        let perfect: Vec<f32> = mask.iter().map(|m| if *m { 1.0 } else { 0.0 }).collect();
        let mut ap = PxAp::default();
        ap.add(&perfect, &mask);
        assert!((ap.value() - 1.0).abs() < 1e-12, "{}", ap.value());
        let mut constant = PxAp::default();
        constant.add(&[1.0; 100], &mask);
        assert!(
            (constant.value() - 0.3).abs() < 1e-12,
            "{}",
            constant.value()
        );
    }

    #[test]
    fn an_all_zero_map_scores_zero_without_nan() {
        let map = vec![0.0f32; 30 * 20];
        let mut acc = MaxBoxAcc::default();
        acc.add(&map, 30, 20, &[[5, 5, 10, 10]]);
        assert_eq!(acc.at_levels(), [0.0, 0.0, 0.0]);
        let mut ap = PxAp::default();
        let mask: Vec<bool> = (0..600).map(|i| i % 7 == 0).collect();
        ap.add(&map, &mask);
        assert!(ap.value().is_finite());
        // A constant map ranks nothing: PxAP is the prior (1/7 of the pixels), as the reference.
        assert!((ap.value() - 86.0 / 600.0).abs() < 1e-12, "{}", ap.value());
        assert!(
            !pointing_hit(&map, 30, [0, 0, 29, 19], 15.0),
            "an all-zero map points nowhere"
        );
        assert!(!pointing_hit(&[f32::NAN; 4], 2, [0, 0, 1, 1], 15.0));
    }

    #[test]
    fn pointing_game_tolerance_is_inclusive_at_fifteen_pixels() {
        let mut map = vec![0.0f32; 100 * 10];
        map[5 * 100 + 65] = 1.0; // maximum at x = 65, y = 5
        let truth = [10, 0, 50, 9];
        assert!(
            pointing_hit(&map, 100, truth, 15.0),
            "exactly 15 px to the right"
        );
        assert!(!pointing_hit(&map, 100, [10, 0, 49, 9], 15.0), "16 px");
        assert!(!pointing_hit(&map, 100, truth, 0.0), "strict");
        assert!(pointing_hit(&map, 100, [60, 0, 70, 9], 0.0));
    }

    #[test]
    fn the_sweeps_find_the_same_boxes_as_labelling_every_threshold() {
        // Noisy and smooth maps, odd sizes; the slow definition: label each binary map.
        let mut seed = 9u64;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        for (width, height, smooth) in [(13, 9, false), (31, 17, true), (8, 23, false)] {
            let map: Vec<f32> = (0..width * height)
                .map(|i| {
                    let (x, y) = ((i % width) as f32, (i / width) as f32);
                    match smooth {
                        true => ((x * 0.4).sin() * (y * 0.3).cos()).abs(),
                        false => rand(),
                    }
                })
                .collect();
            let truth = [[2, 1, 7, 6], [0, 0, 3, 3]];
            let fast = best_iou_per_threshold(&map, width, height, &truth);
            let quantised = quantise(&map);
            let max = *quantised.iter().max().unwrap() as f64;
            for (i, got) in fast.iter().enumerate() {
                let cut = (i as f64 * 0.01 * max) as i64;
                let binary: Vec<bool> = quantised.iter().map(|v| *v as i64 > cut).collect();
                let want = contour_boxes(&binary, width, height)
                    .into_iter()
                    .flat_map(|b| truth.iter().map(move |t| iou(b, *t)))
                    .fold(0.0, f64::max);
                assert_eq!(*got, want, "{width}x{height} threshold {i}");
            }
        }
    }

    #[test]
    fn iou_uses_inclusive_boxes() {
        assert_eq!(iou([0, 0, 0, 0], [0, 0, 0, 0]), 1.0);
        assert!((iou([0, 0, 1, 1], [1, 1, 2, 2]) - 1.0 / 7.0).abs() < 1e-12);
        assert_eq!(iou([0, 0, 1, 1], [3, 3, 4, 4]), 0.0);
    }
}
