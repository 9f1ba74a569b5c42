//! Ranks of map values: the saliency order deletion and insertion follow, and the agreement of
//! two maps (Spearman rank correlation, ties averaged; IoU of their top pixels).

/// Pixel indices sorted by map value, highest first (ties keep index order).
pub fn saliency_order(map: &[f32]) -> Vec<usize> {
    // Sorting (key, index) words directly is several times faster than sorting indices with
    // a comparison that looks the values up; the order is the same.
    let mut keys: Vec<u64> = map
        .iter()
        .enumerate()
        .map(|(i, &v)| ((!total_order_key(v)) as u64) << 32 | i as u64)
        .collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| (k & 0xffff_ffff) as usize)
        .collect()
}

/// A u32 whose unsigned order is `f32::total_cmp`'s order of `v`.
fn total_order_key(v: f32) -> u32 {
    let bits = v.to_bits();
    match bits >> 31 {
        1 => !bits,
        _ => bits | 0x8000_0000,
    }
}

/// Ranks with ties averaged (1-based).
fn ranks(values: &[f32]) -> Vec<f64> {
    let order: Vec<usize> = {
        let mut keys: Vec<u64> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (total_order_key(v) as u64) << 32 | i as u64)
            .collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|k| (k & 0xffff_ffff) as usize)
            .collect()
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
