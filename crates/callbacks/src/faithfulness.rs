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
//! - **Agreement** between two methods' maps: Spearman rank correlation (ties get average ranks)
//!   and the IoU of their top-20 % pixels.

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

/// Pixel indices sorted by map value, highest first (ties keep index order).
pub fn saliency_order(map: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    order
}

/// How many pixels are perturbed at each of the `steps + 1` points (0 … all).
pub fn step_counts(pixels: usize, steps: usize) -> Vec<usize> {
    (0..=steps)
        .map(|k| (k * pixels).div_ceil(steps.max(1)))
        .collect()
}

/// Ranks with ties averaged (1-based).
fn ranks(values: &[f32]) -> Vec<f64> {
    let order = {
        let mut o: Vec<usize> = (0..values.len()).collect();
        o.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        o
    };
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation of two equally long maps (0 when either is constant).
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (ra, rb) = (ranks(&a[..n]), ranks(&b[..n]));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (ra[i] - mean, rb[i] - mean);
        cov += x * y;
        va += x * x;
        vb += y * y;
    }
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        (cov / (va * vb).sqrt()) as f32
    }
}

/// IoU of the top `fraction` pixels of two maps.
pub fn top_fraction_iou(a: &[f32], b: &[f32], fraction: f32) -> f32 {
    let n = a.len().min(b.len());
    let k = ((n as f32 * fraction).round() as usize).clamp(1, n.max(1));
    if n == 0 {
        return 0.0;
    }
    let top = |m: &[f32]| {
        let mut mask = vec![false; n];
        for &i in saliency_order(&m[..n]).iter().take(k) {
            mask[i] = true;
        }
        mask
    };
    let (ta, tb) = (top(a), top(b));
    let inter = ta.iter().zip(&tb).filter(|(x, y)| **x && **y).count();
    let union = ta.iter().zip(&tb).filter(|(x, y)| **x || **y).count();
    inter as f32 / union.max(1) as f32
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
        assert_eq!(step_counts(10, 4), vec![0, 3, 5, 8, 10]);
        assert_eq!(step_counts(3, 3), vec![0, 1, 2, 3]);
    }

    #[test]
    fn spearman_by_hand() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-6);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        // Ties: ranks [1.5, 1.5, 3] vs [1, 2, 3] → ρ = 0.866.
        assert!((spearman(&[0.0, 0.0, 1.0], &[1.0, 2.0, 3.0]) - 0.866_025_4).abs() < 1e-5);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn top_iou_by_hand() {
        let a = [0.9, 0.8, 0.1, 0.0, 0.0];
        let b = [0.9, 0.0, 0.8, 0.0, 0.0];
        // top 40 % = 2 pixels: {0, 1} vs {0, 2} → IoU 1/3.
        assert!((top_fraction_iou(&a, &b, 0.4) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(top_fraction_iou(&a, &a, 0.2), 1.0);
    }
}
