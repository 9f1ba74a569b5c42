//! A classifier's class probabilities: from a row of logits, and from a batch of images (the
//! forward passes of faithfulness and ROAD).

use burn::tensor::{Device, Tensor, TensorData};
use model::Explainable;

/// Images per forward pass.
const BATCH: usize = 32;

/// Probability of `class` from one row of logits (sigmoid for one logit: class 1 = σ(z),
/// class 0 = σ(−z); softmax otherwise).
pub fn class_probability(logits: &[f32], class: usize) -> f32 {
    if let [z] = logits {
        let z = if class == 1 { *z } else { -*z };
        return 1.0 / (1.0 + (-z).exp());
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|v| (v - max).exp()).sum();
    logits.get(class).map_or(0.0, |v| (v - max).exp() / total)
}

/// Predicted class and its probability from one row of logits: a single sigmoid logit
/// predicts class 1 when it is ≥ 0, several logits the arg-max (probabilities as
/// [`class_probability`]).
pub fn prediction(logits: &[f32]) -> (usize, f32) {
    let class = match logits {
        [z] => usize::from(*z >= 0.0),
        _ => {
            logits
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        }
    };
    (class, class_probability(logits, class))
}

/// The model's probability of `classes[j]` for each image j ([3, H, W] planes in [0, 1]).
pub(crate) fn probabilities(
    model: &dyn Explainable,
    images: &[Vec<f32>],
    [h, w]: [usize; 2],
    classes: &[usize],
    device: &Device,
) -> Result<Vec<f32>, String> {
    let plane = h * w;
    let mut out = Vec::with_capacity(images.len());
    for (chunk, chunk_classes) in images.chunks(BATCH).zip(classes.chunks(BATCH)) {
        let mut values = chunk.concat();
        model.normalize(&mut values, plane);
        let batch = Tensor::<4>::from_data(TensorData::new(values, [chunk.len(), 3, h, w]), device);
        out.extend(class_probabilities(model, batch, chunk_classes)?);
    }
    Ok(out)
}

/// The classifier's probability of `classes[i]` for each image i of a normalised `batch`
/// [N, 3, H, W] (see [`class_probability`]).
pub(crate) fn class_probabilities(
    model: &dyn Explainable,
    batch: Tensor<4>,
    classes: &[usize],
) -> Result<Vec<f32>, String> {
    let logits = model.forward(batch);
    let n = logits.dims()[1];
    let logits: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| format!("cannot read logits: {e:?}"))?;
    Ok(logits
        .chunks(n)
        .zip(classes)
        .map(|(row, &class)| class_probability(row, class))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_probabilities() {
        assert!((class_probability(&[0.0], 1) - 0.5).abs() < 1e-6);
        assert!((class_probability(&[2.0], 1) + class_probability(&[2.0], 0) - 1.0).abs() < 1e-6);
        assert!((class_probability(&[1.0, 3.0, 0.0], 1) - 0.843_794_3).abs() < 1e-5);
    }

    #[test]
    fn predictions_of_sigmoid_and_softmax_heads() {
        assert_eq!(prediction(&[0.0]), (1, 0.5));
        let (class, p) = prediction(&[-2.0]);
        assert_eq!(class, 0);
        assert!((p - 0.880_797).abs() < 1e-5);
        let (class, p) = prediction(&[1.0, 3.0, 0.0]);
        assert_eq!(class, 1);
        assert!((p - 0.843_794_3).abs() < 1e-5);
    }
}
