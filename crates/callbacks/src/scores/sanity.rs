//! Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"):
//! the similarity of a method's maps on the trained model and on progressively randomised ones.
//! A map that survives randomisation does not explain the model.
//!
//! - Spearman rank correlation of the raw (signed, pre-ReLU) maps, and of their absolute values.
//! - SSIM (structural similarity) of the normalised maps: skimage's defaults as used by the
//!   paper — 7x7 uniform window, data range 1, K1 = 0.01, K2 = 0.03, sample covariances, the
//!   mean over the windows that fit.

use crate::scores::ranks::spearman;

/// A method is flagged when its maps keep at least this Spearman ρ (absolute values) with the
/// trained maps at every randomised stage.
pub const UNCHANGED_SPEARMAN: f32 = 0.5;

/// Mean similarity of one stage's maps to the trained model's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Similarity {
    /// Spearman ρ of the raw maps.
    pub spearman: f32,
    /// Spearman ρ of the raw maps' absolute values.
    pub spearman_abs: f32,
    /// SSIM of the normalised maps.
    pub ssim: f32,
}

/// Mean similarity over images; `raw_*` are [N·h·w], `maps_*` are [N·H·W].
pub fn similarity(
    raw_trained: &[f32],
    raw_random: &[f32],
    raw_size: [usize; 2],
    maps_trained: &[f32],
    maps_random: &[f32],
    map_size: [usize; 2],
) -> Similarity {
    let (raw_plane, plane) = (raw_size[0] * raw_size[1], map_size[0] * map_size[1]);
    let n = (raw_trained.len() / raw_plane.max(1)).min(maps_trained.len() / plane.max(1));
    let mut sum = Similarity::default();
    for i in 0..n {
        let (a, b) = (
            &raw_trained[i * raw_plane..(i + 1) * raw_plane],
            &raw_random[i * raw_plane..(i + 1) * raw_plane],
        );
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
        sum.spearman += spearman(a, b);
        sum.spearman_abs += spearman(&abs(a), &abs(b));
        sum.ssim += ssim(
            &maps_trained[i * plane..(i + 1) * plane],
            &maps_random[i * plane..(i + 1) * plane],
            map_size,
        );
    }
    let n = n.max(1) as f32;
    Similarity {
        spearman: sum.spearman / n,
        spearman_abs: sum.spearman_abs / n,
        ssim: sum.ssim / n,
    }
}

/// SSIM of two [H, W] images with values in [0, 1] (see the module docs).
pub fn ssim(a: &[f32], b: &[f32], [h, w]: [usize; 2]) -> f32 {
    const WIN: usize = 7;
    let (c1, c2) = (0.01f64 * 0.01, 0.03f64 * 0.03);
    if h < WIN || w < WIN || a.len() < h * w || b.len() < h * w {
        return f32::NAN;
    }
    let count = (WIN * WIN) as f64;
    let cov_norm = count / (count - 1.0);
    let mut total = 0.0;
    for y in 0..=h - WIN {
        for x in 0..=w - WIN {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..WIN {
                for dx in 0..WIN {
                    let k = (y + dy) * w + x + dx;
                    let (p, q) = (a[k] as f64, b[k] as f64);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / count, sb / count);
            let va = cov_norm * (saa / count - ma * ma);
            let vb = cov_norm * (sbb / count - mb * mb);
            let vab = cov_norm * (sab / count - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * vab + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        }
    }
    (total / ((h - WIN + 1) * (w - WIN + 1)) as f64) as f32
}

/// Whether a method's maps did not change: every randomised stage kept Spearman ρ (absolute
/// values) ≥ [`UNCHANGED_SPEARMAN`].
pub fn unchanged(stages: &[Similarity]) -> bool {
    !stages.is_empty() && stages.iter().all(|s| s.spearman_abs >= UNCHANGED_SPEARMAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_of_identical_and_different_images() {
        let a: Vec<f32> = (0..16 * 16)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        assert!((ssim(&a, &a, [16, 16]) - 1.0).abs() < 1e-6);
        let inverted: Vec<f32> = a.iter().map(|v| 1.0 - v).collect();
        assert!(ssim(&a, &inverted, [16, 16]) < 0.0);
        // Two constant images: SSIM reduces to the luminance term (2·0.2·0.8 + c1)/(0.04 + 0.64 + c1).
        let (p, q) = (vec![0.2; 64], vec![0.8; 64]);
        let expected = (2.0 * 0.2 * 0.8 + 1e-4) / (0.04 + 0.64 + 1e-4);
        assert!((ssim(&p, &q, [8, 8]) - expected).abs() < 1e-5);
        assert!(ssim(&p, &q, [4, 16]).is_nan());
    }

    #[test]
    fn similarity_and_flag() {
        let raw = [1.0, -2.0, 3.0, -4.0];
        let flipped: Vec<f32> = raw.iter().map(|v| -v).collect();
        let maps = vec![0.5; 64];
        let s = similarity(&raw, &flipped, [2, 2], &maps, &maps, [8, 8]);
        // A sign flip: ρ = −1 on the raw maps, 1 on their absolute values.
        assert!((s.spearman + 1.0).abs() < 1e-6 && (s.spearman_abs - 1.0).abs() < 1e-6);
        assert!((s.ssim - 1.0).abs() < 1e-6);
        assert!(unchanged(&[s, s]));
        let changed = Similarity {
            spearman_abs: 0.1,
            ..s
        };
        assert!(!unchanged(&[s, changed]));
        assert!(!unchanged(&[]));
    }
}
