//! Every localization score of a set of photos, for one method or baseline: the pointing game
//! (strict and with TorchRay's 15-px tolerance) and the energy in the head box, and — where the
//! annotations have the whole animal's outline — MaxBoxAcc (V2 and per IoU level) against its
//! bounding box and PxAP against its filled mask ([`crate::scores::wsol`]).
//!
//! Maps are at the photo's own size (upright); boxes and outlines in the same pixels.

use rayon::prelude::*;
use serde::Serialize;

use crate::scores::localization::{box_iou, energy_in_box, BoxXyxy, Map};
use crate::scores::wsol::{pointing_hit, MaxBoxAcc, PixelBox, PxAp};

/// TorchRay's pointing-game tolerance, in pixels.
pub const POINTING_TOLERANCE: f64 = 15.0;

/// One photo's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The head box `[x0, y0, x1, y1]` (continuous pixel coordinates).
    pub head: BoxXyxy,
    /// The whole animal's outline, `(x, y)` vertices, when the annotations have it.
    pub body: Option<Vec<(f32, f32)>>,
    /// A spurious cue's box (a mark the model should not look at), when the photo has one.
    pub cue: Option<BoxXyxy>,
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
    /// Mean share of the map's mass inside the cue's box, over the photos with one (`None`
    /// when none has a cue): how much the map looks at a spurious mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_in_cue_box: Option<f64>,
    /// Mean IoU of the head box with the box around the map's largest region (the CAM paper's
    /// score; only when the report was made [`with_box_iou`](LocalizationReport::with_box_iou)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub box_iou: Option<f64>,
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
    /// The energy in the cue's box summed, and the photos with a cue.
    cue_energy: f64,
    cued: usize,
    boxes: MaxBoxAcc,
    pixels: PxAp,
    outlined: usize,
    /// The box-IoU threshold and the IoUs' sum, when box IoU is scored.
    box_iou: Option<(f32, f64)>,
}

impl LocalizationReport {
    /// A report that also scores box IoU at `threshold`·max (see [`box_iou`]).
    pub fn with_box_iou(threshold: f32) -> Self {
        Self {
            box_iou: Some((threshold, 0.0)),
            ..Self::default()
        }
    }

    /// Add another report's photos (same settings), as if they had been added one by one.
    pub fn merge(&mut self, other: &LocalizationReport) {
        debug_assert_eq!(
            self.box_iou.map(|(t, _)| t),
            other.box_iou.map(|(t, _)| t),
            "merging reports with different box-IoU settings"
        );
        self.strict_hits += other.strict_hits;
        self.tolerant_hits += other.tolerant_hits;
        self.energy += other.energy;
        self.images += other.images;
        self.cue_energy += other.cue_energy;
        self.cued += other.cued;
        self.boxes.merge(&other.boxes);
        self.pixels.merge(&other.pixels);
        self.outlined += other.outlined;
        if let (Some((_, sum)), Some((_, theirs))) = (&mut self.box_iou, other.box_iou) {
            *sum += theirs;
        }
    }

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
        if let Some(cue) = &truth.cue {
            self.cue_energy += energy_in_box(map, cue) as f64;
            self.cued += 1;
        }
        if let Some((threshold, sum)) = &mut self.box_iou {
            *sum += box_iou(map, &truth.head, *threshold) as f64;
        }
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
            energy_in_cue_box: (self.cued > 0).then(|| self.cue_energy / self.cued as f64),
            box_iou: self.box_iou.map(|(_, sum)| sum / n),
            images: self.images,
            images_with_outline: self.outlined,
        }
    }
}

impl LocalizationSummary {
    /// The head-box scores' names, as [`scores`](Self::scores) gives them.
    pub const HEAD_SCORES: [&'static str; 3] =
        ["pointing_game", "pointing_game_15px", "energy_in_box"];
    /// The whole-animal scores' names, present when some photo had an outline.
    pub const OUTLINE_SCORES: [&'static str; 5] = [
        "maxboxacc_v2",
        "maxboxacc_0.3",
        "maxboxacc_0.5",
        "maxboxacc_0.7",
        "pxap",
    ];

    /// Every score present, as (name, value): the head-box scores, `energy_in_cue_box` when
    /// some photo had a cue, `box_iou` when scored, then the outline scores when some photo had
    /// an outline (the loggers' scalar names).
    pub fn scores(&self) -> Vec<(&'static str, f64)> {
        let mut out: Vec<(&'static str, f64)> = Self::HEAD_SCORES
            .into_iter()
            .zip([
                self.pointing_game,
                self.pointing_game_15px,
                self.energy_in_box,
            ])
            .collect();
        if let Some(v) = self.energy_in_cue_box {
            out.push(("energy_in_cue_box", v));
        }
        if let Some(v) = self.box_iou {
            out.push(("box_iou", v));
        }
        if let (Some(v2), Some(levels), Some(pxap)) =
            (self.maxboxacc_v2, &self.maxboxacc, self.pxap)
        {
            let level = |k: &str| levels.get(k).copied().unwrap_or(0.0);
            out.extend(Self::OUTLINE_SCORES.into_iter().zip([
                v2,
                level("0.3"),
                level("0.5"),
                level("0.7"),
                pxap,
            ]));
        }
        out
    }
}

/// Score a set of photos in parallel: photo `i`'s map, at the photo's own size, is `map_of(i)`.
/// The per-photo reports are merged in order, so the result does not depend on the thread
/// count. `template` gives the settings (e.g. [`LocalizationReport::with_box_iou`]).
pub fn score_photos(
    template: &LocalizationReport,
    truths: &[Annotation],
    map_of: impl Fn(usize) -> Map + Sync,
) -> LocalizationReport {
    let blank = LocalizationReport {
        box_iou: template.box_iou.map(|(t, _)| (t, 0.0)),
        ..LocalizationReport::default()
    };
    let per_photo: Vec<LocalizationReport> = (0..truths.len())
        .into_par_iter()
        .map(|i| {
            let mut one = blank.clone();
            one.add(&map_of(i), &truths[i]);
            one
        })
        .collect();
    let mut report = template.clone();
    for one in &per_photo {
        report.merge(one);
    }
    report
}

/// A map that knows nothing of the photo, scored beside every method to say what a score is
/// worth: on centred photos a centre prior already points at the animal most of the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// A Gaussian at the centre ([`centre_baseline`]).
    Centre,
    /// A constant map: each score's chance level (its prior).
    Uniform,
}

impl Baseline {
    /// Every baseline.
    pub const ALL: [Baseline; 2] = [Baseline::Centre, Baseline::Uniform];

    /// The baselines scored beside a method: the centre one always, the uniform one on request
    /// (`[data] uniform_baseline`, `train explain --baselines`).
    pub fn scored(uniform: bool) -> Vec<Baseline> {
        match uniform {
            true => vec![Baseline::Centre, Baseline::Uniform],
            false => vec![Baseline::Centre],
        }
    }

    /// The name its scores are logged under (`baseline_centre/<score>`).
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Centre => "baseline_centre",
            Baseline::Uniform => "baseline_uniform",
        }
    }

    /// The baseline's map for a `width × height` photo.
    pub fn map(self, width: usize, height: usize) -> Map {
        match self {
            Baseline::Centre => centre_baseline(width, height),
            Baseline::Uniform => Map {
                width,
                height,
                values: vec![1.0; width * height],
            },
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
            cue: None,
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
            cue: None,
        };
        report.add(&map, &truth);
        let s = report.summary();
        assert_eq!(
            (s.pointing_game, s.pointing_game_15px, s.energy_in_box),
            (0.0, 0.0, 0.0)
        );
        assert_eq!((s.maxboxacc_v2, s.pxap), (None, None));
    }

    /// Photos of several sizes, with and without outlines, and maps of several shapes.
    fn photos() -> (Vec<Annotation>, Vec<Map>) {
        let mut truths = Vec::new();
        let mut maps = Vec::new();
        for i in 0..7usize {
            let (w, h) = (20 + 3 * i, 15 + 2 * i);
            let (fw, fh) = (w as f32, h as f32);
            truths.push(Annotation {
                head: [fw * 0.2, fh * 0.1, fw * 0.5, fh * 0.4],
                body: (i % 3 != 0).then(|| {
                    vec![
                        (fw * 0.1, fh * 0.1),
                        (fw * 0.8, fh * 0.2),
                        (fw * 0.6, fh * 0.9),
                    ]
                }),
                cue: (i % 2 == 0).then_some([fw * 0.6, fh * 0.6, fw * 0.9, fh * 0.9]),
            });
            let values = (0..w * h)
                .map(|k| {
                    let (x, y) = ((k % w) as f32, (k / w) as f32);
                    ((x * (i + 1) as f32 * 0.37).sin() * (y * 0.21).cos()).max(0.0)
                })
                .collect();
            maps.push(Map {
                width: w,
                height: h,
                values,
            });
        }
        (truths, maps)
    }

    #[test]
    fn scoring_in_parallel_equals_adding_one_by_one_and_scores_are_named() {
        let (truths, maps) = photos();
        let mut serial = LocalizationReport::with_box_iou(0.2);
        for (map, truth) in maps.iter().zip(&truths) {
            serial.add(map, truth);
        }
        let parallel = score_photos(&LocalizationReport::with_box_iou(0.2), &truths, |i| {
            maps[i].clone()
        });
        let (a, b) = (serial.summary(), parallel.summary());
        assert_eq!(a, b);
        assert_eq!((a.images, a.images_with_outline), (7, 4));
        let names: Vec<&str> = a.scores().iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "pointing_game",
                "pointing_game_15px",
                "energy_in_box",
                "energy_in_cue_box",
                "box_iou",
                "maxboxacc_v2",
                "maxboxacc_0.3",
                "maxboxacc_0.5",
                "maxboxacc_0.7",
                "pxap"
            ]
        );
        let levels = a.maxboxacc.as_ref().unwrap();
        assert_eq!(a.scores()[7].1, levels["0.5"]);
        // The cue's energy is a mean over the 4 photos with a cue, not all 7.
        let cued: Vec<f64> = (0..7)
            .filter(|i| i % 2 == 0)
            .map(|i| energy_in_box(&maps[i], &truths[i].cue.unwrap()) as f64)
            .collect();
        let mean = cued.iter().sum::<f64>() / 4.0;
        assert!((a.energy_in_cue_box.unwrap() - mean).abs() < 1e-9);
        assert!(a.scores().iter().all(|(_, v)| v.is_finite()));
        // Without box IoU or outlines, those names are absent.
        let heads: Vec<Annotation> = truths
            .iter()
            .map(|t| Annotation {
                head: t.head,
                body: None,
                cue: None,
            })
            .collect();
        let plain = score_photos(&LocalizationReport::default(), &heads, |i| maps[i].clone());
        let names: Vec<&str> = plain.summary().scores().iter().map(|s| s.0).collect();
        assert_eq!(names, LocalizationSummary::HEAD_SCORES);
    }

    #[test]
    fn the_uniform_baseline_scores_each_metrics_prior() {
        // A constant map points nowhere, has the box's share of the mass, and its one region is
        // the whole photo; its PxAP is the share of object pixels.
        let truth = Annotation {
            head: [0.0, 0.0, 5.0, 4.0],
            body: Some(vec![(0.0, 0.0), (10.0, 0.0), (10.0, 8.0), (0.0, 8.0)]),
            cue: None,
        };
        let mut report = LocalizationReport::with_box_iou(0.2);
        report.add(&Baseline::Uniform.map(20, 10), &truth);
        let s = report.summary();
        assert_eq!((s.pointing_game, s.pointing_game_15px), (0.0, 0.0));
        assert!((s.energy_in_box - 20.0 / 200.0).abs() < 1e-6, "{s:?}");
        assert!((s.box_iou.unwrap() - 20.0 / 200.0).abs() < 1e-6, "{s:?}");
        assert!((s.pxap.unwrap() - 80.0 / 200.0).abs() < 1e-9, "{s:?}");
        // IoU of the whole photo [0, 19] x [0, 9] with the outline's [0, 9] x [0, 7]: 0.4.
        let levels = s.maxboxacc.unwrap();
        assert_eq!((levels["0.3"], levels["0.5"]), (1.0, 0.0));
        assert_eq!(Baseline::Centre.name(), "baseline_centre");
        assert_eq!(Baseline::Uniform.name(), "baseline_uniform");
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
