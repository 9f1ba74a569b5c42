//! The explanation methods, each a few lines on the pipeline of [`crate::engine::pipeline`]: a method gives
//! the per-channel terms [N, C, h, w] of its map (most are channel weights times the
//! activations), and the pipeline sums them over channels — or, for the principal-component
//! methods and `eigen_smooth`, projects them on their first principal component.

use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

use model::rng::SplitMix64;

use crate::engine::inputs::{MapInputs, EPS};
use crate::engine::method::Method;

/// How a method's terms become its raw map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Σ over channels (the CAM family).
    Sum,
    /// The projection on the terms' first principal component over pixels (EigenCAM).
    PrincipalComponent,
}

/// One explanation method: the per-channel terms of its map.
pub trait CamMethod {
    /// The terms [N, C, h, w] whose channel sum (or first principal component, see
    /// [`reduction`](Self::reduction)) is the raw map, before the pipeline's ReLU and
    /// normalisation.
    ///
    /// # Panics
    /// When a needed input is missing ([`needs_gradients`](Self::needs_gradients),
    /// [`needs_images`](Self::needs_images)); the engine checks first and returns an error.
    fn terms(&self, inputs: &MapInputs) -> Tensor<4>;

    /// Whether [`terms`](Self::terms) reads ∂y/∂A.
    fn needs_gradients(&self) -> bool {
        true
    }

    /// Whether [`terms`](Self::terms) runs the whole network on the input images (Score-CAM).
    fn needs_images(&self) -> bool {
        false
    }

    /// Sum (default) or first principal component.
    fn reduction(&self) -> Reduction {
        Reduction::Sum
    }
}

/// w[n,k]·A[n,k]: weights [N, C], activations [N, C, h, w] → terms [N, C, h, w].
pub fn weighted(weights: Tensor<2>, activations: Tensor<4>) -> Tensor<4> {
    let [n, c] = weights.dims();
    weights.reshape([n, c, 1, 1]) * activations
}

/// Σ over h, w: [N, C, h, w] → [N, C].
fn spatial_sum(x: Tensor<4>) -> Tensor<2> {
    let [n, c, _, _] = x.dims();
    x.sum_dim(3).sum_dim(2).reshape([n, c])
}

/// CAM (Zhou et al. 2016): the head's class weights times the pooled layer's channels.
pub struct Cam;
impl CamMethod for Cam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let weights = x.class_weights.clone();
        weighted(
            weights.expect("CAM needs class weights (checked by the engine)"),
            x.activations.clone(),
        )
    }
    fn needs_gradients(&self) -> bool {
        false
    }
}

/// Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient.
pub struct GradCam;
impl CamMethod for GradCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let [_, _, h, w] = x.activations.dims();
        weighted(
            spatial_sum(x.gradients()) / (h * w) as f32,
            x.activations.clone(),
        )
    }
}

/// Grad-CAM++ (Chattopadhay et al. 2018), pytorch-grad-cam's closed form:
/// α = g² / (2g² + ΣA·g³ + 1e-6), weights = Σ_ij ReLU(g)·α.
pub struct GradCamPlusPlus;

/// The ε of pytorch-grad-cam's Grad-CAM++ denominator (it matters: squared gradients are small).
const GRADCAM_PP_EPS: f32 = 1e-6;
impl CamMethod for GradCamPlusPlus {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let [n, c, _, _] = x.activations.dims();
        let g = x.gradients();
        let g2 = g.clone().powi_scalar(2);
        let g3 = g2.clone() * g.clone();
        let sum_a = spatial_sum(x.activations.clone()).reshape([n, c, 1, 1]);
        let alpha = g2.clone() / (g2 * 2.0 + sum_a * g3 + GRADCAM_PP_EPS);
        let alpha = alpha.mask_fill(g.clone().equal_elem(0.0), 0.0);
        weighted(spatial_sum(relu(g) * alpha), x.activations.clone())
    }
}

/// XGradCAM (Fu et al. 2020): weights = Σ_ij g·A / (Σ_ij A + ε).
pub struct XGradCam;
impl CamMethod for XGradCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let [n, c, _, _] = x.activations.dims();
        let a = x.activations.clone();
        let sum_a = spatial_sum(a.clone()).reshape([n, c, 1, 1]);
        weighted(spatial_sum(x.gradients() * a.clone() / (sum_a + EPS)), a)
    }
}

/// LayerCAM (Jiang et al. 2021): ReLU(g)⊙A, element-wise.
pub struct LayerCam;
impl CamMethod for LayerCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        relu(x.gradients()) * x.activations.clone()
    }
}

/// HiResCAM (Draelos & Carin 2020): g⊙A, element-wise.
pub struct HiResCam;
impl CamMethod for HiResCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        x.gradients() * x.activations.clone()
    }
}

/// pytorch-grad-cam's GradCAMElementWise: ReLU(g⊙A), element-wise.
pub struct GradCamElementWise;
impl CamMethod for GradCamElementWise {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        relu(x.gradients() * x.activations.clone())
    }
}

/// EigenCAM (Muhammad & Yeasin 2020): the activations' first principal component.
pub struct EigenCam;
impl CamMethod for EigenCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        x.activations.clone()
    }
    fn needs_gradients(&self) -> bool {
        false
    }
    fn reduction(&self) -> Reduction {
        Reduction::PrincipalComponent
    }
}

/// EigenGradCAM: the first principal component of g⊙A.
pub struct EigenGradCam;
impl CamMethod for EigenGradCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        x.gradients() * x.activations.clone()
    }
    fn reduction(&self) -> Reduction {
        Reduction::PrincipalComponent
    }
}

/// Channels masked and scored together by Score-CAM and Ablation-CAM (bounds their memory:
/// Score-CAM holds this many images of the input's size at a time).
pub const CHANNEL_CHUNK: usize = 16;

/// Score-CAM (Wang et al. 2020), as pytorch-grad-cam: each channel upsampled to the input
/// size with align_corners = true, min-max normalised (ε 1e-8), multiplied into the input
/// image, the whole network run on it; weights = softmax over channels of the target scores.
pub struct ScoreCam;
impl CamMethod for ScoreCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let images = x
            .images
            .clone()
            .expect("Score-CAM needs the images (checked by the engine)");
        let [n, c, _, _] = x.activations.dims();
        let [_, _, height, width] = images.dims();
        let upsample = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(true)
            .with_output_size([height, width]);
        let mut scores = Vec::with_capacity(n * c);
        for i in 0..n {
            let image = images.clone().narrow(0, i, 1);
            let target = x.target_weights.clone().narrow(0, i, 1);
            for c0 in (0..c).step_by(CHANNEL_CHUNK) {
                let len = CHANNEL_CHUNK.min(c - c0);
                let channels = x.activations.clone().narrow(0, i, 1).narrow(1, c0, len);
                let masks = interpolate(channels, upsample.clone()).reshape([len, height * width]);
                let min = masks.clone().min_dim(1);
                let max = masks.clone().max_dim(1);
                let masks = (masks - min.clone()) / (max - min + 1e-8);
                let masked = image.clone() * masks.reshape([len, 1, height, width]);
                let logits = x.model.forward(masked);
                scores.push((logits * target.clone()).sum_dim(1).reshape([len]));
            }
        }
        let scores = Tensor::cat(scores, 0).reshape([n, c]);
        weighted(softmax(scores, 1), x.activations.clone())
    }
    fn needs_gradients(&self) -> bool {
        false
    }
    fn needs_images(&self) -> bool {
        true
    }
}

/// Ablation-CAM (Desai & Ramaswamy 2020), as pytorch-grad-cam: each channel in turn set to
/// 0 (or to min − 1e7 when the image's activations are not ≥ 0 with a 0), the network run from
/// the layer on; weight = (score − ablated score) / score (0 when the score is exactly 0).
///
/// One difference on layers whose minimum is not 0 (not VGG's or EfficientNet's ReLU outputs):
/// pytorch-grad-cam 1.5.7 edits its batch in place and recomputes the minimum for every row,
/// so its k-th row in a batch gets min − k·1e7; here every channel gets min − 1e7.
pub struct AblationCam;

/// pytorch-grad-cam's ablation offset below the minimum for layers that can be negative.
const ABLATION_OFFSET: f32 = 1e7;
impl CamMethod for AblationCam {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let [n, c, h, w] = x.activations.dims();
        let device = x.activations.device();
        let original = (x.model.logits_from(x.layer_index, x.activations.clone())
            * x.target_weights.clone())
        .sum_dim(1)
        .reshape([n]);
        let mut ablated = Vec::with_capacity(n * c);
        for i in 0..n {
            let a = x.activations.clone().narrow(0, i, 1);
            let target = x.target_weights.clone().narrow(0, i, 1);
            let min: f32 = a.clone().min().into_scalar();
            let value = if min == 0.0 {
                0.0
            } else {
                min - ABLATION_OFFSET
            };
            for c0 in (0..c).step_by(CHANNEL_CHUNK) {
                let len = CHANNEL_CHUNK.min(c - c0);
                // keep[r, k] = 0 where row r ablates channel c0 + r.
                let keep: Vec<f32> = (0..len * c)
                    .map(|j| if j % c == c0 + j / c { 0.0 } else { 1.0 })
                    .collect();
                let keep = Tensor::<2>::from_data(TensorData::new(keep, [len, c]), &device)
                    .cast(x.activations.dtype())
                    .reshape([len, c, 1, 1]);
                let batch = a.clone().repeat_dim(0, len);
                let batch = batch * keep.clone() + (keep.neg() + 1.0) * value;
                let logits = x
                    .model
                    .logits_from(x.layer_index, batch.reshape([len, c, h, w]));
                ablated.push((logits * target.clone()).sum_dim(1).reshape([len]));
            }
        }
        let ablated = Tensor::cat(ablated, 0).reshape([n, c]);
        let original = original.reshape([n, 1]);
        // A target score of exactly 0 would divide by zero: its weights are 0 (a blank map),
        // not ±∞.
        let zero = original.clone().equal_elem(0.0);
        let weights = ((original.clone() - ablated) / original).mask_fill(zero, 0.0);
        weighted(weights, x.activations.clone())
    }
    fn needs_gradients(&self) -> bool {
        false
    }
}

/// A baseline, not an explanation: uniform random channel weights in [−1, 1), as
/// pytorch-grad-cam's RandomCAM, seeded by the options' seed and each image's activations (so
/// an image gets the same map alone or in a batch). It shows what chance scores look like.
pub struct RandomBaseline;
impl CamMethod for RandomBaseline {
    fn terms(&self, x: &MapInputs) -> Tensor<4> {
        let [n, c, h, w] = x.activations.dims();
        let values = x.activations_on_host();
        let weights: Vec<f32> = values
            .chunks(c * h * w)
            .flat_map(|image| {
                let hash = image.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
                    (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
                });
                let mut rng = SplitMix64::new(hash ^ x.seed);
                (0..c).map(move |_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            })
            .collect();
        let device = x.activations.device();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, c]), &device)
            .cast(x.activations.dtype());
        weighted(weights, x.activations.clone())
    }
    fn needs_gradients(&self) -> bool {
        false
    }
}

impl Method {
    /// The implementation.
    pub fn implementation(self) -> &'static dyn CamMethod {
        match self {
            Method::Cam => &Cam,
            Method::GradCam => &GradCam,
            Method::GradCamPlusPlus => &GradCamPlusPlus,
            Method::LayerCam => &LayerCam,
            Method::HiResCam => &HiResCam,
            Method::XGradCam => &XGradCam,
            Method::GradCamElementWise => &GradCamElementWise,
            Method::EigenCam => &EigenCam,
            Method::EigenGradCam => &EigenGradCam,
            Method::ScoreCam => &ScoreCam,
            Method::AblationCam => &AblationCam,
            Method::Random => &RandomBaseline,
        }
    }
}
