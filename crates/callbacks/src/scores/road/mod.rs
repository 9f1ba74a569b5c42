//! ROAD, RemOve And Debias (Rong et al., ICML 2022, "A Consistent and Efficient Evaluation
//! Strategy for Attribution Methods"), as pytorch-grad-cam 1.5.7 implements it
//! (`pytorch_grad_cam/metrics/road.py`). Pure functions on slices; [`evaluate`] runs them with
//! a classifier on photos (the per-epoch loggers' entry).
//!
//! **The score.** For a percentile p, MoRF (most relevant first) keeps the pixels whose map value
//! is below `np.percentile(map, p)` (linear interpolation) and imputes the others; LeRF (least
//! relevant first) does the same with `1 − map`. The score of one perturbation is the class
//! probability on the imputed image minus that on the original. ROAD-combined is
//! (mean over p of LeRF − mean over p of MoRF) / 2, p = 10, 20, …, 90: a faithful map loses
//! little when its least relevant pixels go and much when its most relevant ones go, so higher
//! is better.
//!
//! **The imputation** (ROAD's noisy linear imputer). Every removed pixel becomes the weighted
//! mean of its in-image 8 neighbours (weight 1/6 edge, 1/12 diagonal, renormalised at the
//! border), known neighbours entering as constants: a sparse linear system L x = b per channel,
//! the same L for every channel, with L = D − W over the removed pixels (D: the sum of the
//! in-image neighbours' weights; W: the weights between removed pixels) and b the weighted sum of
//! the known neighbours. The reference solves it with scipy's `spsolve`, then adds
//! `noise · N(0, 1)` (default 0.01; [`Imputer::noise`], seeded here).
//!
//! **The solver.** L is symmetric positive definite whenever a pixel is known (every connected
//! component of removed pixels then touches a known one, see below), so it is solved in f64 by
//! conjugate gradients preconditioned with one geometric multigrid V-cycle: Galerkin coarse
//! operators P^T L P on grids halved down to 1×1, P bilinear interpolation masked to the removed
//! pixels (and constant at the far border, so that constants are reproduced there), one forward
//! Gauss–Seidel sweep before and one backward sweep after the coarse correction (a symmetric
//! preconditioner). Convergence test: ‖b − L x‖₂ ≤ [`TOLERANCE`] · ‖b‖₂ (10⁻¹⁰), checked on
//! the recomputed residual; after [`MAX_ITERATIONS`] iterations it gives up with
//! [`RoadError::NotConverged`]. The channels share L, so up to 4 are solved together (f64 lanes
//! through every sweep). The worst case, a 3×224×224 image with a 90 % central blob removed,
//! takes 12 iterations and 89 ms on one core (2-core AMD EPYC, busy with another build; 67 ms
//! with 90 % scattered pixels; `imputation_time_at_224` in tests/road.rs). [`road_scores`]
//! imputes a batch's images in parallel.
//!
//! **Nothing known.** A component of removed pixels with no known neighbour is closed under
//! 8-adjacency, so it is the whole image: that happens exactly when every pixel is removed (a
//! constant map, or a map that is 0 on more than p % of its pixels at MoRF-p — Grad-CAM maps
//! often are). L is then singular and b = 0. scipy 1.17.1's `spsolve` returns 0 there without a
//! warning (in floating point its LU pivots are roundoff, not exact zeros), so the reference
//! imputes 0; here the solver is skipped and the pixels are set to 0 explicitly (the dataset mean
//! of an ImageNet-normalised input), plus the noise.

use model::rng::SplitMix64;
use rayon::prelude::*;

pub mod error;
mod solver;

pub use error::RoadError;
use solver::{neighbour, pcg, Grid, LANES, NEIGHBOURS};

/// Relative residual at which the solver stops: ‖b − L x‖₂ ≤ TOLERANCE · ‖b‖₂.
pub const TOLERANCE: f64 = 1e-10;
/// Conjugate-gradient iterations before [`RoadError::NotConverged`].
pub const MAX_ITERATIONS: usize = 200;
/// The percentiles pytorch-grad-cam's ROAD averages over.
pub const PERCENTILES: [f32; 9] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0];

/// Which pixels a perturbation removes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// MoRF: remove the pixels above the percentile of the map.
    MostRelevantFirst,
    /// LeRF: remove the pixels above the percentile of 1 − map.
    LeastRelevantFirst,
}

/// `np.percentile(values, p)` with linear interpolation, in numpy's own f32 arithmetic (virtual
/// index in f64, interpolation in f32). NaN when a value is NaN or `values` is empty.
pub fn percentile(values: &[f32], p: f32) -> f32 {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let (n, q) = (sorted.len(), f64::from(p) / 100.0);
    let index = n as f64 * q + (1.0 - q) - 1.0;
    let below = index.floor().clamp(0.0, (n - 1) as f64);
    let gamma = index - below;
    let (a, b) = (
        sorted[below as usize],
        sorted[(below as usize + 1).min(n - 1)],
    );
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma) as f32
    } else {
        a + diff * gamma as f32
    }
}

/// The pixels a perturbation keeps (true) at `percentile` (0–100), as pytorch-grad-cam's
/// `RemoveMostRelevantFirst` / `RemoveLeastRelevantFirst`: `map < percentile(map)`, with `1 − map`
/// for [`Order::LeastRelevantFirst`]. A NaN in the map keeps nothing.
pub fn removal_keep_mask(map: &[f32], percentile: f32, order: Order) -> Vec<bool> {
    let values: Vec<f32> = match order {
        Order::MostRelevantFirst => map.to_vec(),
        Order::LeastRelevantFirst => map.iter().map(|v| 1.0 - v).collect(),
    };
    let threshold = self::percentile(&values, percentile);
    values.iter().map(|&v| v < threshold).collect()
}

/// ROAD's noisy linear imputer. `Imputer::default()` is the noise-free one, the reference's
/// `NoisyLinearImputer(noise=0)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Imputer {
    /// Standard deviation of the Gaussian noise added to imputed pixels (the reference: 0.01).
    pub noise: f32,
    /// Seed of the noise: the same seed gives the same noise.
    pub seed: u64,
    /// See [`TOLERANCE`].
    pub tolerance: f64,
    /// See [`MAX_ITERATIONS`].
    pub max_iterations: usize,
}

impl Default for Imputer {
    fn default() -> Self {
        Self {
            noise: 0.0,
            seed: 0,
            tolerance: TOLERANCE,
            max_iterations: MAX_ITERATIONS,
        }
    }
}

/// Noise-free linear imputation of the pixels `keep` marks false in a C×H×W image.
pub fn impute(
    image: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    keep: &[bool],
) -> Result<Vec<f32>, RoadError> {
    Imputer::default().impute(image, channels, height, width, keep)
}

impl Imputer {
    /// Imputes the pixels `keep` (H×W) marks false in `image` (C×H×W); known pixels are copied.
    pub fn impute(
        &self,
        image: &[f32],
        channels: usize,
        height: usize,
        width: usize,
        keep: &[bool],
    ) -> Result<Vec<f32>, RoadError> {
        let plane = height * width;
        check("image", channels * plane, image.len())?;
        check("keep mask", plane, keep.len())?;
        let mut out = image.to_vec();
        if keep.iter().all(|&k| k) {
            return Ok(out);
        }
        let known = keep.iter().any(|&k| k);
        let fine = Grid::from_mask(height, width, keep);
        let s = width + 2;
        let at = |p: usize| (p / width + 1) * s + p % width + 1;
        let mut grids = vec![fine];
        while let Some(g) = grids.last().filter(|g| known && g.h.max(g.w) > 1) {
            let coarse = g.coarsen();
            grids.push(coarse);
        }
        let mut rng = SplitMix64::new(self.seed);
        // Up to LANES channels at a time share every sweep over the grids.
        for group in out.chunks_mut(LANES * plane) {
            let mut b = vec![[0.0; LANES]; grids[0].diag.len()];
            for (p, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
                // A known pixel adds weight · value to each removed neighbour's b.
                let (r, c) = (p / width, p % width);
                for (k, weight) in NEIGHBOURS {
                    if let Some(i) = neighbour(r, c, k, height, width).filter(|&q| !keep[q]) {
                        for (lane, values) in group.chunks(plane).enumerate() {
                            b[at(i)][lane] += weight * f64::from(values[p]);
                        }
                    }
                }
            }
            let x = if known {
                pcg(&grids, &b, self.tolerance, self.max_iterations)?
            } else {
                b
            };
            for (lane, values) in group.chunks_mut(plane).enumerate() {
                for (p, v) in values.iter_mut().enumerate().filter(|&(p, _)| !keep[p]) {
                    *v = x[at(p)][lane] as f32;
                    if self.noise != 0.0 {
                        *v += self.noise * rng.normal();
                    }
                }
            }
        }
        Ok(out)
    }
}

fn check(what: &'static str, expected: usize, got: usize) -> Result<(), RoadError> {
    if expected == got {
        Ok(())
    } else {
        Err(RoadError::Shape {
            what,
            expected,
            got,
        })
    }
}

/// ROAD scores of a batch: per image and percentile, p(imputed) − p(original).
#[derive(Debug, Clone, PartialEq)]
pub struct RoadScores {
    /// The percentiles, in the order of the inner vectors.
    pub percentiles: Vec<f32>,
    /// [image][percentile], most relevant pixels removed (the reference's `ROADMostRelevantFirst`).
    pub morf: Vec<Vec<f32>>,
    /// [image][percentile], least relevant pixels removed.
    pub lerf: Vec<Vec<f32>>,
    /// Per image, (mean LeRF − mean MoRF) / 2 (`ROADCombined`; higher is better).
    pub combined: Vec<f32>,
}

/// ROAD for `n` images (`images`: N×C×H×W) and their maps (N×H×W). `probability` gets a batch
/// of images (k×C×H×W, and k) and returns the explained class's probability for each (or why
/// it cannot); it is
/// called once on the originals and once per order and percentile, on all n images imputed
/// (in parallel). The same seed is used for every image, order and percentile.
pub fn road_scores<F>(
    images: &[f32],
    [n, channels, height, width]: [usize; 4],
    maps: &[f32],
    percentiles: &[f32],
    imputer: &Imputer,
    mut probability: F,
) -> Result<RoadScores, RoadError>
where
    F: FnMut(&[f32], usize) -> Result<Vec<f32>, String>,
{
    let (plane, image_len) = (height * width, channels * height * width);
    check("images", n * image_len, images.len())?;
    check("maps", n * plane, maps.len())?;
    let mut call = |batch: &[f32]| {
        let out = probability(batch, n).map_err(RoadError::Probability)?;
        check("probabilities", n, out.len()).map(|()| out)
    };
    let original = call(images)?;
    let mut scores = [
        vec![vec![0.0; percentiles.len()]; n],
        vec![vec![0.0; percentiles.len()]; n],
    ];
    for (order, table) in [Order::MostRelevantFirst, Order::LeastRelevantFirst]
        .into_iter()
        .zip(&mut scores)
    {
        for (j, &p) in percentiles.iter().enumerate() {
            let imputed: Vec<Vec<f32>> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let keep = removal_keep_mask(&maps[i * plane..(i + 1) * plane], p, order);
                    let image = &images[i * image_len..(i + 1) * image_len];
                    imputer.impute(image, channels, height, width, &keep)
                })
                .collect::<Result<_, _>>()?;
            let after = call(&imputed.concat())?;
            for (i, row) in table.iter_mut().enumerate() {
                row[j] = after[i] - original[i];
            }
        }
    }
    let mean =
        |row: &[f32]| row.iter().map(|&v| f64::from(v)).sum::<f64>() / row.len().max(1) as f64;
    let [morf, lerf] = scores;
    let combined = morf
        .iter()
        .zip(&lerf)
        .map(|(m, l)| ((mean(l) - mean(m)) / 2.0) as f32)
        .collect();
    Ok(RoadScores {
        percentiles: percentiles.to_vec(),
        morf,
        lerf,
        combined,
    })
}

/// The loggers' ROAD scores of a set of photos: means over the photos (and percentiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoadSummary {
    /// Mean MoRF probability change (lower: removing the most relevant pixels hurts more).
    pub morf: f32,
    /// Mean LeRF probability change (higher: removing the least relevant pixels hurts less).
    pub lerf: f32,
    /// Mean ROAD-combined, (LeRF − MoRF) / 2 (higher is better).
    pub combined: f32,
}

impl RoadSummary {
    /// Names of the scores, as the loggers log them (`<method>/road_morf`, …).
    pub const NAMES: [&'static str; 3] = ["road_morf", "road_lerf", "road_combined"];

    /// The values, in [`NAMES`](Self::NAMES)' order.
    pub fn values(&self) -> [f32; 3] {
        [self.morf, self.lerf, self.combined]
    }
}

/// ROAD of `maps` ([N·H·W] in [0, 1], at the photos' size) of `photos` explaining `classes`,
/// at [`PERCENTILES`], with the noise-free imputer, on `model`: the photos are
/// ImageNet-normalised and imputed in that space, as pytorch-grad-cam does with its input
/// tensor; the probability is the explained class's (sigmoid or softmax).
pub fn evaluate(
    model: &dyn model::Explainable,
    photos: &[image::RgbImage],
    maps: &[f32],
    classes: &[usize],
    device: &burn::tensor::Device,
) -> Result<RoadSummary, RoadError> {
    use burn::tensor::{Tensor, TensorData};
    let n = photos.len().min(classes.len());
    let Some(first) = photos.first() else {
        return Ok(RoadSummary {
            morf: 0.0,
            lerf: 0.0,
            combined: 0.0,
        });
    };
    let (w, h) = first.dimensions();
    let (h, w) = (h as usize, w as usize);
    let mut images: Vec<f32> = Vec::with_capacity(n * 3 * h * w);
    for photo in &photos[..n] {
        if photo.dimensions() != first.dimensions() {
            return Err(RoadError::Probability("photos of different sizes".into()));
        }
        images.extend(crate::scores::faithfulness::planes(photo));
    }
    model.normalize(&mut images, h * w);
    let probability = |batch: &[f32], k: usize| -> Result<Vec<f32>, String> {
        let x = Tensor::<4>::from_data(TensorData::new(batch.to_vec(), [k, 3, h, w]), device);
        crate::scores::probabilities::class_probabilities(model, x, classes)
    };
    let maps = maps.get(..n * h * w).ok_or(RoadError::Shape {
        what: "maps",
        expected: n * h * w,
        got: maps.len(),
    })?;
    let scores = road_scores(
        &images,
        [n, 3, h, w],
        maps,
        &PERCENTILES,
        &Imputer::default(),
        probability,
    )?;
    let mean = |values: &mut dyn Iterator<Item = f32>| {
        let (sum, count) = values.fold((0.0f64, 0usize), |(s, c), v| (s + f64::from(v), c + 1));
        (sum / count.max(1) as f64) as f32
    };
    Ok(RoadSummary {
        morf: mean(&mut scores.morf.iter().flatten().copied()),
        lerf: mean(&mut scores.lerf.iter().flatten().copied()),
        combined: mean(&mut scores.combined.iter().copied()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_numpys_bit_for_bit() {
        let a = [0.1f32, 0.7, 0.3, 0.9, 0.5, 0.25, 0.8];
        // np.percentile(np.float32(a), p).view(np.uint32), numpy 2.4.6.
        let numpy = [
            (0.0, 1036831949u32),
            (10.0, 1044549468),
            (35.0, 1050924811),
            (50.0, 1056964608),
            (90.0, 1062668861),
            (100.0, 1063675494),
        ];
        for (p, bits) in numpy {
            assert_eq!(percentile(&a, p).to_bits(), bits, "p = {p}");
        }
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn noise_samples_are_standard_normal() {
        let mut rng = SplitMix64::new(7);
        let x: Vec<f64> = (0..20_000).map(|_| f64::from(rng.normal())).collect();
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
