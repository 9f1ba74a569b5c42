//! Faithfulness and agreement scores of heatmaps (pure functions; the logger feeds them).
//!
//! - **Average Drop** (Chattopadhay et al. 2018, Grad-CAM++): mean over images of
//!   max(0, Y − O) / Y, with Y the explained class's probability on the image and O its
//!   probability on the image multiplied by the (upsampled, [0,1]) map. Lower is better.
//! - **Increase in Confidence**: the share of images with O > Y. Higher is better.
//! - **Deletion / insertion AUC** (Petsiuk et al. 2018, RISE): pixels are removed from the image
//!   (deletion; replaced by the baseline) or revealed on the baseline (insertion) in the order of
//!   the map, most salient first, in `steps` equal steps; the class probability after each step
//!   is integrated over the fraction removed/revealed (trapezoid rule, x from 0 to 1). A faithful
//!   map has a low deletion AUC and a high insertion AUC.
//! - **Agreement** between two methods' maps: see [`crate::scores::ranks`].
//!
//! [`evaluate`] runs the classifier on the perturbed images (pixels in [0, 1], perturbed before
//! ImageNet normalisation), batched: per image the photo, photo ⊙ map, the baseline, and the
//! `steps − 1` intermediate deletion and insertion images — `2·steps + 1` forward passes.

use std::collections::HashMap;
use std::str::FromStr;

use burn::tensor::Device;
use image::RgbImage;
use model::Explainable;

use crate::scores::probabilities::probabilities;
use crate::scores::ranks::saliency_order;

/// Average Drop: mean of max(0, y − o) / y (images with y = 0 count as 0).
pub fn average_drop(y: &[f32], o: &[f32]) -> f32 {
    let n = y.len().min(o.len());
    if n == 0 {
        return 0.0;
    }
    let total: f32 = y
        .iter()
        .zip(o)
        .map(|(&y, &o)| if y > 0.0 { (y - o).max(0.0) / y } else { 0.0 })
        .sum();
    total / n as f32
}

/// Increase in Confidence: share of images with o > y.
pub fn increase_in_confidence(y: &[f32], o: &[f32]) -> f32 {
    let n = y.len().min(o.len());
    if n == 0 {
        return 0.0;
    }
    y.iter().zip(o).filter(|(y, o)| o > y).count() as f32 / n as f32
}

/// Area under a curve sampled at equally spaced x in [0, 1] (trapezoid rule).
pub fn auc(curve: &[f32]) -> f32 {
    if curve.len() < 2 {
        return curve.first().copied().unwrap_or(0.0);
    }
    let dx = 1.0 / (curve.len() - 1) as f32;
    curve.windows(2).map(|w| (w[0] + w[1]) * 0.5 * dx).sum()
}

/// How many pixels are perturbed at each of the `steps + 1` points (0 … all).
pub fn step_counts(pixels: usize, steps: usize) -> Vec<usize> {
    (0..=steps)
        .map(|k| (k * pixels).div_ceil(steps.max(1)))
        .collect()
}

/// What removed pixels are replaced with (deletion), and what insertion starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Black pixels.
    Zeros,
    /// The photo blurred with a Gaussian of σ = width / 32 (RISE's insertion baseline).
    Blur,
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Baseline::Zeros => "zeros",
            Baseline::Blur => "blur",
        })
    }
}

impl FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zeros" => Ok(Baseline::Zeros),
            "blur" => Ok(Baseline::Blur),
            _ => Err(format!("unknown baseline `{s}` (zeros | blur)")),
        }
    }
}

impl Baseline {
    /// The baseline image of `photo`, as [`planes`].
    pub fn of(self, photo: &RgbImage) -> Vec<f32> {
        match self {
            Baseline::Zeros => vec![0.0; photo.len()],
            Baseline::Blur => {
                let sigma = (photo.width() as f32 / 32.0).max(1.0);
                planes(&image::imageops::blur(photo, sigma))
            }
        }
    }
}

/// A photo as three planes [3, H, W] in [0, 1].
pub fn planes(photo: &RgbImage) -> Vec<f32> {
    let plane = (photo.width() * photo.height()) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, pixel) in photo.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = pixel.0[c] as f32 / 255.0;
        }
    }
    out
}

/// Mean faithfulness scores over a set of images.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaithfulnessScores {
    /// Average Drop (lower is better).
    pub average_drop: f32,
    /// Increase in Confidence (higher is better).
    pub increase_in_confidence: f32,
    /// Deletion AUC (lower is better).
    pub deletion_auc: f32,
    /// Insertion AUC (higher is better).
    pub insertion_auc: f32,
}

impl FaithfulnessScores {
    /// Names of the scores, as in tags and CSV columns, in the order of [`values`](Self::values).
    pub const NAMES: [&'static str; 4] = [
        "average_drop",
        "increase_in_confidence",
        "deletion_auc",
        "insertion_auc",
    ];

    /// The scores in the order of [`NAMES`](Self::NAMES).
    pub fn values(&self) -> [f32; 4] {
        [
            self.average_drop,
            self.increase_in_confidence,
            self.deletion_auc,
            self.insertion_auc,
        ]
    }
}

/// The probabilities of the images that depend on a map only through its saliency order —
/// the photo, the baseline, the deletion and the insertion steps — for each (photo, baseline,
/// steps, class). Within one drawing the model is the same for every callback, so two methods
/// whose maps rank the pixels alike share these 2·steps − 1 forward passes; only x ⊙ map runs
/// again. "Alike" is either of:
/// - every pixel goes in the same step (e.g. one map a scaled copy of the other);
/// - the maps differ by at most [`SAME_MAP`] at every pixel. CAM and Grad-CAM on a GAP-linear
///   head give the same map up to float rounding, but bilinear upsampling makes many pixels
///   tie to within rounding, so their orders still differ by a few swapped pixels at step
///   edges: such a map gets the curves of the first one.
///
/// Keep one per drawing (the model changes between drawings).
#[derive(Debug, Default)]
pub struct CurveCache {
    curves: HashMap<u64, Vec<CachedCurve>>,
    /// Images whose curves were found here rather than computed.
    pub reused: usize,
}

/// Largest per-pixel difference (on the [0, 1] map) under which two maps share their curves.
pub const SAME_MAP: f32 = 1e-5;

/// One map's curves, with what identifies the map.
#[derive(Debug)]
struct CachedCurve {
    /// Hash of the step each pixel goes in.
    steps_hash: u64,
    map: Vec<f32>,
    curve: Vec<f32>,
}

impl CurveCache {
    /// The curve of a map alike to `map` under `key`, if one was computed.
    fn find(&self, key: u64, steps_hash: u64, map: &[f32]) -> Option<&Vec<f32>> {
        let same_map = |other: &[f32]| {
            other.len() == map.len()
                && other
                    .iter()
                    .zip(map)
                    .all(|(a, b)| (a - b).abs() <= SAME_MAP)
        };
        self.curves
            .get(&key)?
            .iter()
            .find(|c| c.steps_hash == steps_hash || same_map(&c.map))
            .map(|c| &c.curve)
    }
}

/// A 64-bit FNV-1a hash of `words`.
fn hash_words(hash: u64, words: impl IntoIterator<Item = u64>) -> u64 {
    words.into_iter().fold(hash, |h, w| {
        w.to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
    })
}

/// Score `maps` ([N·H·W] in [0, 1], at the photos' size) of `photos` explaining `classes`:
/// Average Drop, Increase in Confidence and deletion/insertion AUC over `steps` steps.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &dyn Explainable,
    photos: &[RgbImage],
    maps: &[f32],
    classes: &[usize],
    baseline: Baseline,
    steps: usize,
    device: &Device,
    cache: &mut CurveCache,
) -> Result<FaithfulnessScores, String> {
    if classes.len() < photos.len() {
        return Err("fewer classes than photos".into());
    }
    let tags: Vec<u64> = classes.iter().map(|&c| c as u64).collect();
    evaluate_with(
        photos,
        maps,
        baseline,
        steps,
        (cache, &tags),
        |owners, images, size| {
            let classes: Vec<usize> = owners.iter().map(|&i| classes[i]).collect();
            probabilities(model, images, size, &classes, device)
        },
    )
}

/// [`evaluate`] with any `probability(owners, images as [3, H, W] planes, [H, W])`, where
/// `owners[j]` is the photo image j was made from (its class decides the probability);
/// `tags[i]` is what else photo i's probabilities depend on (its class), for the cache. The
/// photos must all have one size (the maps are [N·H·W]).
pub fn evaluate_with(
    photos: &[RgbImage],
    maps: &[f32],
    baseline: Baseline,
    steps: usize,
    (cache, tags): (&mut CurveCache, &[u64]),
    mut probability: impl FnMut(&[usize], &[Vec<f32>], [usize; 2]) -> Result<Vec<f32>, String>,
) -> Result<FaithfulnessScores, String> {
    let steps = steps.max(1);
    let Some(first) = photos.first() else {
        return Ok(FaithfulnessScores::default());
    };
    let (w, h) = (first.width() as usize, first.height() as usize);
    let plane = w * h;
    let (mut curves, mut masked) = (Vec::new(), Vec::new());
    for (i, photo) in photos.iter().enumerate() {
        if photo.dimensions() != first.dimensions() {
            return Err("photos of different sizes".into());
        }
        let map = maps
            .get(i * plane..(i + 1) * plane)
            .ok_or("fewer maps than photos")?;
        let x = planes(photo);
        let order = saliency_order(map);
        let counts = step_counts(plane, steps);
        let step_of = pixel_steps(&order, &counts, plane);
        let tag = *tags.get(i).ok_or("fewer tags than photos")?;
        let key = photo_key(
            photo,
            [tag, steps as u64, baseline as u64, w as u64, h as u64],
        );
        let steps_hash = hash_words(0xcbf2_9ce4_8422_2325, step_of);
        // x, baseline, deletion 1..steps−1, insertion 1..steps−1: functions of the order.
        let curve = match cache.find(key, steps_hash, map).cloned() {
            Some(curve) => {
                cache.reused += 1;
                curve
            }
            None => {
                let batch = order_images(&x, &baseline.of(photo), &order, &counts[1..steps], plane);
                let curve = probability(&vec![i; batch.len()], &batch, [h, w])?;
                check_count(&curve, batch.len())?;
                cache.curves.entry(key).or_default().push(CachedCurve {
                    steps_hash,
                    map: map.to_vec(),
                    curve: curve.clone(),
                });
                curve
            }
        };
        masked.push(
            (0..3 * plane)
                .map(|k| x[k] * map[k % plane])
                .collect::<Vec<f32>>(),
        );
        curves.push(curve);
    }
    // x ⊙ map of every photo in one batch (one forward pass each would be batches of one).
    let owners: Vec<usize> = (0..photos.len()).collect();
    let p_maps = probability(&owners, &masked, [h, w])?;
    check_count(&p_maps, photos.len())?;
    Ok(scores(&curves, p_maps, steps))
}

/// The step (0-based) each of `plane` pixels is removed (inserted) in, the pixels taken in
/// `order` at the `counts` boundaries. The images depend on the order only through this: two
/// maps that differ by rounding inside a step share them.
fn pixel_steps(order: &[usize], counts: &[usize], plane: usize) -> Vec<u64> {
    let mut step_of = vec![0u64; plane];
    for (j, window) in counts.windows(2).enumerate() {
        for &p in &order[window[0]..window[1]] {
            step_of[p] = j as u64;
        }
    }
    step_of
}

/// The cache key of a photo: a hash of `words` (tag, steps, baseline, width, height) and the
/// photo's bytes.
fn photo_key(photo: &RgbImage, words: [u64; 5]) -> u64 {
    hash_words(
        0xcbf2_9ce4_8422_2325,
        words.into_iter().chain(
            photo
                .as_raw()
                .chunks(8)
                .map(|c| c.iter().fold(0u64, |v, &b| (v << 8) | b as u64)),
        ),
    )
}

/// The images whose probabilities are the curves, all [3, H, W] planes: the photo `x`, the
/// baseline `b`, then for deletion and for insertion one image per count in `counts` (steps
/// 1..steps−1).
fn order_images(
    x: &[f32],
    b: &[f32],
    order: &[usize],
    counts: &[usize],
    plane: usize,
) -> Vec<Vec<f32>> {
    let mut batch: Vec<Vec<f32>> = Vec::with_capacity(counts.len() * 2 + 2);
    batch.push(x.to_vec());
    batch.push(b.to_vec());
    for (from, onto) in [(b, x), (x, b)] {
        for &count in counts {
            // The `count` most salient pixels taken from `from`, the rest from `onto`.
            let mut image = onto.to_vec();
            for &p in &order[..count] {
                for c in 0..3 {
                    image[c * plane + p] = from[c * plane + p];
                }
            }
            batch.push(image);
        }
    }
    batch
}

/// An error unless there is one probability per image.
fn check_count(probabilities: &[f32], images: usize) -> Result<(), String> {
    if probabilities.len() != images {
        return Err(format!(
            "{} probabilities for {} images",
            probabilities.len(),
            images
        ));
    }
    Ok(())
}

/// The mean scores from each photo's `curves` (x, baseline, deletion and insertion steps) and
/// its probability on x ⊙ map.
fn scores(curves: &[Vec<f32>], p_maps: Vec<f32>, steps: usize) -> FaithfulnessScores {
    let (mut y, mut o, mut deletion, mut insertion) = (vec![], vec![], vec![], vec![]);
    for (curve, p_map) in curves.iter().zip(p_maps) {
        let (p_x, p_base) = (curve[0], curve[1]);
        let (del, ins) = curve[2..].split_at(steps - 1);
        y.push(p_x);
        o.push(p_map);
        deletion.push(auc(&[&[p_x], del, &[p_base]].concat()));
        insertion.push(auc(&[&[p_base], ins, &[p_x]].concat()));
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    FaithfulnessScores {
        average_drop: average_drop(&y, &o),
        increase_in_confidence: increase_in_confidence(&y, &o),
        deletion_auc: mean(&deletion),
        insertion_auc: mean(&insertion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_drop_and_increase_by_hand() {
        // Drops of 50 % and 0 % (o > y), and an image whose confidence rose.
        let y = [0.8, 0.5, 0.4];
        let o = [0.4, 0.6, 0.4];
        assert!((average_drop(&y, &o) - (0.5 + 0.0 + 0.0) / 3.0).abs() < 1e-6);
        assert!((increase_in_confidence(&y, &o) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(average_drop(&[], &[]), 0.0);
    }

    #[test]
    fn auc_of_simple_curves() {
        assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-6);
        assert!((auc(&[1.0, 0.0]) - 0.5).abs() < 1e-6);
        // A curve that drops at once (faithful deletion) has a small area.
        assert!((auc(&[1.0, 0.0, 0.0, 0.0, 0.0]) - 0.125).abs() < 1e-6);
    }

    #[test]
    fn saliency_order_and_steps() {
        assert_eq!(saliency_order(&[0.1, 0.9, 0.5, 0.9]), vec![1, 3, 2, 0]);
        // Negative values, zeros of both signs and ties: descending by `total_cmp`, ties by
        // index, as a comparison sort does.
        let map: [f32; 9] = [-1.0, 0.0, -0.0, 2.5, -1.0, 0.0, 1e-30, -1e-30, 2.5];
        let mut want: Vec<usize> = (0..map.len()).collect();
        want.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
        assert_eq!(saliency_order(&map), want);
        assert_eq!(step_counts(10, 4), vec![0, 3, 5, 8, 10]);
        assert_eq!(step_counts(3, 3), vec![0, 1, 2, 3]);
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use burn::tensor::Device;
    use model::{Backbone, Classifier, Head, HeadKind};

    #[test]
    fn baselines() {
        let photo = RgbImage::from_fn(64, 64, |x, _| image::Rgb([if x < 32 { 255 } else { 0 }; 3]));
        assert!(Baseline::Zeros.of(&photo).iter().all(|&v| v == 0.0));
        let blurred = Baseline::Blur.of(&photo);
        assert_eq!(blurred.len(), 3 * 64 * 64);
        // Blur softens the edge: values next to it are strictly between 0 and 1.
        assert!(blurred[32 * 64 + 31] < 1.0 && blurred[32 * 64 + 32] > 0.0);
        assert_eq!("blur".parse::<Baseline>(), Ok(Baseline::Blur));
        assert!("gray".parse::<Baseline>().is_err());
    }

    /// A "model" whose probability is the mean of the left half of a white photo: a map marking
    /// the left half deletes the evidence in 2 of 4 steps (curve 1, ½, 0, 0, 0 → AUC ¼) and
    /// inserts it as fast (0, ½, 1, 1, 1 → ¾); the inverted map does the opposite.
    #[test]
    fn deletion_and_insertion_by_hand() {
        let photo = RgbImage::from_pixel(64, 64, image::Rgb([255; 3]));
        let left_half = |images: &[Vec<f32>]| -> Vec<f32> {
            images
                .iter()
                .map(|im| {
                    let sum: f32 = (0..64 * 64).filter(|p| p % 64 < 32).map(|p| im[p]).sum();
                    sum / (64.0 * 32.0)
                })
                .collect()
        };
        let map: Vec<f32> = (0..64 * 64)
            .map(|p| if p % 64 < 32 { 1.0 } else { 0.0 })
            .collect();
        let inverse: Vec<f32> = map.iter().map(|v| 1.0 - v).collect();
        let score = |m: &[f32]| {
            evaluate_with(
                std::slice::from_ref(&photo),
                m,
                Baseline::Zeros,
                4,
                (&mut CurveCache::default(), &[0]),
                |_: &[usize], im: &[Vec<f32>], _| Ok(left_half(im)),
            )
            .unwrap()
        };
        let good = score(&map);
        assert!((good.deletion_auc - 0.25).abs() < 1e-6, "{good:?}");
        assert!((good.insertion_auc - 0.75).abs() < 1e-6, "{good:?}");
        assert_eq!((good.average_drop, good.increase_in_confidence), (0.0, 0.0));
        let bad = score(&inverse);
        assert!((bad.deletion_auc - 0.75).abs() < 1e-6, "{bad:?}");
        assert!((bad.insertion_auc - 0.25).abs() < 1e-6, "{bad:?}");
        assert_eq!(bad.average_drop, 1.0);
    }

    /// The real classifier path: batched forward passes give finite probabilities in [0, 1].
    #[test]
    fn evaluate_runs_the_classifier() {
        let device = Device::default();
        let model = Classifier {
            backbone: Backbone::Vgg16(model::vgg16::Vgg16::random(8, &device)),
            head: Head::new(HeadKind::GapLinear, 64, 1, &device),
        };
        let photo = RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 9]));
        let map: Vec<f32> = (0..64 * 64).map(|i| (i % 64) as f32 / 63.0).collect();
        let mut cache = CurveCache::default();
        let photos = [photo];
        // The photo explained as `class` with `map`, blurred baseline, 20 steps.
        let blurred = |map: &[f32], class: usize, cache: &mut CurveCache| {
            evaluate(
                &model,
                &photos,
                map,
                &[class],
                Baseline::Blur,
                20,
                &device,
                cache,
            )
            .unwrap()
        };
        let s = blurred(&map, 1, &mut cache);
        for v in s.values() {
            assert!((0.0..=1.0).contains(&v), "{s:?}");
        }
        let mut empty = CurveCache::default();
        assert!(evaluate(
            &model,
            &[],
            &[],
            &[],
            Baseline::Zeros,
            20,
            &device,
            &mut empty
        )
        .is_ok());
        // A map ranking the pixels alike (scaled, as Grad-CAM's is CAM's on this head) reuses
        // the curves and gives the same scores up to its own x ⊙ map pass; another class or
        // another order does not reuse them.
        let scaled: Vec<f32> = map.iter().map(|v| v * 0.5).collect();
        let t = blurred(&scaled, 1, &mut cache);
        assert_eq!(cache.reused, 1);
        assert_eq!(
            (t.deletion_auc, t.insertion_auc),
            (s.deletion_auc, s.insertion_auc)
        );
        let fresh = blurred(&scaled, 1, &mut CurveCache::default());
        assert_eq!(t, fresh);
        blurred(&scaled, 0, &mut cache);
        let reversed: Vec<f32> = map.iter().map(|v| 1.0 - v).collect();
        blurred(&reversed, 1, &mut cache);
        assert_eq!(cache.reused, 1);
        // Rounding-sized noise reorders the tied pixels of each column (so pixels change
        // step): within SAME_MAP it reuses the curves, 100 times farther it does not.
        let noisy = |scale: f32| -> Vec<f32> {
            map.iter()
                .enumerate()
                .map(|(i, v)| v + scale * (((i * 7919) % 13) as f32 / 6.0 - 1.0))
                .collect()
        };
        for (scale, reused) in [(SAME_MAP / 2.0, 2), (SAME_MAP * 100.0, 2)] {
            let other = noisy(scale);
            assert_ne!(saliency_order(&other), saliency_order(&map));
            blurred(&other, 1, &mut cache);
            assert_eq!(cache.reused, reused, "noise {scale}");
        }
    }
}
