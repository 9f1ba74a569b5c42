//! The first principal component of a layer's terms over pixels: EigenCAM, EigenGradCAM and
//! `eigen_smooth` (pytorch-grad-cam's `get_2d_projection`).
//!
//! Per image, the terms [C, h, w] become a matrix M [h·w, C] (NaN and ±∞ read as 0), its columns are
//! centred over the pixels, and M is projected on its first right singular vector: the map is
//! M·v₁ [h·w]. The SVD is nalgebra's, in f64.
//!
//! An SVD's signs are arbitrary: pytorch-grad-cam keeps whatever LAPACK returns, so its map can
//! come out inverted. Our rule, as the library's SegEigenCAM: the projection is negated when its
//! most negative value is larger in magnitude than its most positive one, so the map's
//! strongest response is positive (and survives the pipeline's ReLU).

use burn::tensor::{Tensor, TensorData};
use nalgebra::DMatrix;

use crate::engine::error::ExplainError;
use crate::engine::inputs::host_values;

/// terms [N, C, h, w] → the projection on each image's first principal component [N, h, w].
pub fn first_principal_component(terms: Tensor<4>) -> Result<Tensor<3>, ExplainError> {
    let [n, c, h, w] = terms.dims();
    let (device, dtype) = (terms.device(), terms.dtype());
    let values = host_values(terms, "the terms to project")?;
    let mut projections = Vec::with_capacity(n * h * w);
    for image in values.chunks(c * h * w) {
        let projection = project(image, c, h * w).ok_or(ExplainError::Data {
            what: "the principal component",
            message: "the SVD did not converge".into(),
        })?;
        projections.extend(projection);
    }
    // In the terms' float type (float64 when `train explain` runs a ResNet so).
    Ok(Tensor::<3>::from_data(TensorData::new(projections, [n, h, w]), &device).cast(dtype))
}

/// Iterations allowed to nalgebra's SVD (its default, 0, means no limit: a matrix it cannot
/// diagonalise would hang).
const SVD_MAX_ITERATIONS: usize = 10_000;

/// One image: `terms` [C, P] row-major (P pixels) → its projection [P], sign-fixed; `None` when
/// the SVD does not converge. Non-finite terms (NaN, ±∞) are read as 0.
fn project(terms: &[f32], c: usize, pixels: usize) -> Option<Vec<f32>> {
    let value = |p: usize, k: usize| {
        let v = terms[k * pixels + p] as f64;
        if v.is_finite() {
            v
        } else {
            0.0
        }
    };
    let mut m = DMatrix::<f64>::from_fn(pixels, c, value);
    for mut column in m.column_iter_mut() {
        let mean = column.mean();
        column.add_scalar_mut(-mean);
    }
    if c == 0 || pixels == 0 {
        return Some(vec![0.0; pixels]);
    }
    let svd = nalgebra::SVD::try_new(m.clone(), false, true, f64::EPSILON, SVD_MAX_ITERATIONS)?;
    let v_t = svd.v_t?;
    let (first, _) = svd.singular_values.argmax();
    let projection = &m * v_t.row(first).transpose();
    let (min, max) = projection
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let sign = if min.abs() > max.abs() { -1.0 } else { 1.0 };
    Some(projection.iter().map(|v| (sign * v) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_one_layer_projects_onto_its_spatial_pattern_with_the_positive_sign() {
        // Terms = pattern(p) · loading(k) + an offset per channel: the centred matrix is rank
        // one, so the projection is the centred pattern times |loading|, positive at its peak
        // whichever sign the SVD picks.
        let pattern = [0.0f32, 1.0, 4.0, 2.0, 0.5, 0.0];
        let loading = [0.5f32, -1.0, 2.0];
        let terms: Vec<f32> = loading
            .iter()
            .enumerate()
            .flat_map(|(k, l)| pattern.iter().map(move |p| p * l + k as f32))
            .collect();
        for sign in [1.0f32, -1.0] {
            let flipped: Vec<f32> = terms.iter().map(|v| v * sign).collect();
            let got = project(&flipped, 3, 6).unwrap();
            let mean = pattern.iter().sum::<f32>() / 6.0;
            let norm = loading.iter().map(|l| l * l).sum::<f32>().sqrt();
            let want: Vec<f32> = pattern.iter().map(|p| (p - mean) * norm).collect();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "sign {sign}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn non_finite_terms_are_read_as_zero_and_a_constant_layer_gives_zeros() {
        let got = project(&[f32::NAN, f32::INFINITY, 0.0, 1.0], 1, 4).unwrap();
        assert!(got.iter().all(|v| v.is_finite()), "{got:?}");
        let constant = project(&[3.0; 8], 2, 4).unwrap();
        assert!(constant.iter().all(|v| v.abs() < 1e-6), "{constant:?}");
    }
}
