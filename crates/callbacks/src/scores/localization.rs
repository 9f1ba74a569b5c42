//! Localization scores of a heatmap against a ground-truth box, measured in the photo's own
//! pixels (the map is resized to the original width × height first):
//!
//! - **pointing game** (Zhang et al. 2016): 1 if the map's arg-max lies inside the box, else 0;
//! - **energy in box** (Wang et al., Score-CAM): the share of the map's mass inside the box;
//! - **box IoU** (CAM paper): IoU of the box with the bounding box of the largest 4-connected
//!   region where the map is ≥ `threshold`·max (CAM: 0.2, Grad-CAM: 0.15).
//!
//! An all-zero map scores 0 on all three (no NaN).

/// A box in pixels: `[x0, y0, x1, y1]`, x1/y1 exclusive (a pixel (x, y) is inside when
/// x0 ≤ x + 0.5 < x1 and y0 ≤ y + 0.5 < y1: its centre is in the box).
pub type BoxXyxy = [f32; 4];

/// A map of `width × height` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Values, row-major.
    pub values: Vec<f32>,
}

impl Map {
    /// Bilinear resize with half-pixel centres (as OpenCV / PyTorch `align_corners=False`).
    pub fn resize(&self, width: usize, height: usize) -> Map {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let sample = |src: usize, dst: usize, i: usize| {
            let x = ((i as f32 + 0.5) * src as f32 / dst as f32 - 0.5).max(0.0);
            let x0 = (x.floor() as usize).min(src - 1);
            let x1 = (x0 + 1).min(src - 1);
            (x0, x1, x - x0 as f32)
        };
        let xs: Vec<_> = (0..width).map(|i| sample(self.width, width, i)).collect();
        let mut values = Vec::with_capacity(width * height);
        for j in 0..height {
            let (y0, y1, fy) = sample(self.height, height, j);
            for &(x0, x1, fx) in &xs {
                let at = |y: usize, x: usize| self.values[y * self.width + x];
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                values.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        Map {
            width,
            height,
            values,
        }
    }

    fn inside(b: &BoxXyxy, x: usize, y: usize) -> bool {
        let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
        b[0] <= cx && cx < b[2] && b[1] <= cy && cy < b[3]
    }

    fn max(&self) -> f32 {
        self.values.iter().copied().fold(0.0, f32::max)
    }
}

/// Pointing game: 1.0 when the (first) arg-max is inside the box.
pub fn pointing_game(map: &Map, b: &BoxXyxy) -> f32 {
    if map.max() <= 0.0 {
        return 0.0;
    }
    let (index, _) =
        map.values.iter().enumerate().fold(
            (0, f32::MIN),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        );
    f32::from(u8::from(Map::inside(
        b,
        index % map.width,
        index / map.width,
    )))
}

/// Share of the map's (non-negative) mass inside the box.
pub fn energy_in_box(map: &Map, b: &BoxXyxy) -> f32 {
    let (mut inside, mut total) = (0.0f64, 0.0f64);
    for (i, &v) in map.values.iter().enumerate() {
        let v = v.max(0.0) as f64;
        total += v;
        if Map::inside(b, i % map.width, i / map.width) {
            inside += v;
        }
    }
    if total > 0.0 {
        (inside / total) as f32
    } else {
        0.0
    }
}

/// Bounding box (pixel-edge coordinates) of the largest 4-connected region ≥ threshold·max; of
/// equal sizes, the region whose first pixel (row-major) comes first.
///
/// Row by row, the runs of pixels at or above the cutoff are joined to the runs of the row
/// above that they touch (union-find): one pass over the pixels, no per-pixel stack.
pub fn largest_region_box(map: &Map, threshold: f32) -> Option<BoxXyxy> {
    let max = map.max();
    if max <= 0.0 {
        return None;
    }
    let cutoff = threshold * max;
    let w = map.width;
    // Runs (row, first column, end column exclusive) and their union-find parents.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut above = 0..0;
    for (y, row) in map.values.chunks(w.max(1)).enumerate() {
        let first_of_row = runs.len();
        let mut j = above.start;
        let mut x = 0;
        while x < w {
            if row[x] < cutoff {
                x += 1;
                continue;
            }
            let x0 = x;
            while x < w && row[x] >= cutoff {
                x += 1;
            }
            let id = runs.len();
            runs.push((y, x0, x));
            parent.push(id);
            // Runs above that share a column with [x0, x).
            while j < above.end && runs[j].2 <= x0 {
                j += 1;
            }
            let mut k = j;
            while k < above.end && runs[k].1 < x {
                let (a, b) = (find(&mut parent, id), find(&mut parent, k));
                parent[a.max(b)] = a.min(b);
                k += 1;
            }
        }
        above = first_of_row..runs.len();
    }
    // Per region: size, box, first pixel.
    let mut regions: std::collections::HashMap<usize, (usize, [usize; 4], usize)> =
        std::collections::HashMap::new();
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let root = find(&mut parent, i);
        let r = regions
            .entry(root)
            .or_insert((0, [usize::MAX, usize::MAX, 0, 0], usize::MAX));
        r.0 += x1 - x0;
        r.1 = [
            r.1[0].min(x0),
            r.1[1].min(y),
            r.1[2].max(x1),
            r.1[3].max(y + 1),
        ];
        r.2 = r.2.min(y * w + x0);
    }
    regions
        .into_values()
        .max_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)))
        .map(|(_, bx, _)| bx.map(|v| v as f32))
}

/// Intersection over union of two boxes.
pub fn iou(a: &BoxXyxy, b: &BoxXyxy) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: &BoxXyxy| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// IoU of the box with the box around the largest region ≥ threshold·max (0 for an empty map).
pub fn box_iou(map: &Map, b: &BoxXyxy, threshold: f32) -> f32 {
    largest_region_box(map, threshold).map_or(0.0, |r| iou(&r, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> Map {
        let values = (0..width * height)
            .map(|i| f(i % width, i / width))
            .collect();
        Map {
            width,
            height,
            values,
        }
    }

    #[test]
    fn a_known_peak() {
        // 10x10, peak at (7, 2), a small bump at (1, 8).
        let m = map(10, 10, |x, y| match (x, y) {
            (7, 2) => 1.0,
            (1, 8) => 0.5,
            _ => 0.0,
        });
        assert_eq!(pointing_game(&m, &[6.0, 1.0, 9.0, 4.0]), 1.0);
        assert_eq!(pointing_game(&m, &[0.0, 6.0, 4.0, 10.0]), 0.0);
        assert!((energy_in_box(&m, &[6.0, 1.0, 9.0, 4.0]) - 1.0 / 1.5).abs() < 1e-6);
        // Region ≥ 0.2·max: two single pixels; the first found of equal size wins: (7,2).
        assert_eq!(largest_region_box(&m, 0.2), Some([7.0, 2.0, 8.0, 3.0]));
        assert!((box_iou(&m, &[7.0, 2.0, 9.0, 3.0], 0.2) - 0.5).abs() < 1e-6);
    }

    /// The flood fill the run-based labelling replaced: the reference it is checked against.
    fn flood_fill_box(map: &Map, threshold: f32) -> Option<BoxXyxy> {
        let max = map.max();
        if max <= 0.0 {
            return None;
        }
        let cutoff = threshold * max;
        let (w, h) = (map.width, map.height);
        let mut seen = vec![false; w * h];
        let mut best: Option<(usize, BoxXyxy)> = None;
        let mut stack = Vec::new();
        for start in 0..w * h {
            if seen[start] || map.values[start] < cutoff {
                continue;
            }
            let (mut size, mut bx) = (0, [usize::MAX, usize::MAX, 0, 0]);
            seen[start] = true;
            stack.push(start);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                size += 1;
                bx = [
                    bx[0].min(x),
                    bx[1].min(y),
                    bx[2].max(x + 1),
                    bx[3].max(y + 1),
                ];
                let neighbours = [
                    (x > 0).then(|| i - 1),
                    (x + 1 < w).then(|| i + 1),
                    (y > 0).then(|| i - w),
                    (y + 1 < h).then(|| i + w),
                ];
                for n in neighbours.into_iter().flatten() {
                    if !seen[n] && map.values[n] >= cutoff {
                        seen[n] = true;
                        stack.push(n);
                    }
                }
            }
            if best.as_ref().is_none_or(|(s, _)| size > *s) {
                best = Some((size, bx.map(|v| v as f32)));
            }
        }
        best.map(|(_, b)| b)
    }

    #[test]
    fn run_labelling_equals_the_flood_fill() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for case in 0..300 {
            let (w, h) = (1 + case % 17, 1 + case % 13);
            // Blobs: a coarse random field, so regions of many shapes and sizes occur.
            let coarse: Vec<f32> = (0..16).map(|_| next()).collect();
            let noise: Vec<f32> = (0..w * h).map(|_| next()).collect();
            let m = map(w, h, |x, y| {
                coarse[(x * 4 / w) * 4 + y * 4 / h] * 0.7 + noise[y * w + x] * 0.3
            });
            for threshold in [0.2, 0.5, 0.8] {
                assert_eq!(
                    largest_region_box(&m, threshold),
                    flood_fill_box(&m, threshold),
                    "case {case} ({w}x{h}), threshold {threshold}"
                );
            }
        }
    }

    #[test]
    fn a_box_at_the_edge() {
        // Mass in the last column; the box covers exactly that column.
        let m = map(8, 4, |x, _| if x == 7 { 2.0 } else { 0.1 });
        let b = [7.0, 0.0, 8.0, 4.0];
        assert_eq!(pointing_game(&m, &b), 1.0);
        let expected = 8.0 / (8.0 + 28.0 * 0.1);
        assert!((energy_in_box(&m, &b) - expected).abs() < 1e-6);
        assert_eq!(largest_region_box(&m, 0.2), Some(b));
        assert_eq!(box_iou(&m, &b, 0.2), 1.0);
    }

    #[test]
    fn an_all_zero_map_scores_zero() {
        let m = map(5, 5, |_, _| 0.0);
        let b = [0.0, 0.0, 5.0, 5.0];
        assert_eq!(
            (
                pointing_game(&m, &b),
                energy_in_box(&m, &b),
                box_iou(&m, &b, 0.2)
            ),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn resizing_measures_in_original_pixels() {
        // A 2x2 map with the hot cell top-right, scored on a 100x60 photo.
        let m = Map {
            width: 2,
            height: 2,
            values: vec![0.0, 1.0, 0.0, 0.0],
        };
        let big = m.resize(100, 60);
        assert_eq!((big.width, big.height), (100, 60));
        assert_eq!(pointing_game(&big, &[50.0, 0.0, 100.0, 30.0]), 1.0);
        let b = [50.0, 0.0, 100.0, 30.0];
        assert!(energy_in_box(&big, &b) > 0.5 && box_iou(&big, &b, 0.5) > 0.3);
        assert_eq!(iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 1.0, 3.0, 3.0]), 1.0 / 7.0);
    }
}
