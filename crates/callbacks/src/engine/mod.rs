//! The explanation engine, as pytorch-grad-cam's `BaseCAM`: one batched [`pipeline`]
//! (activations → each method's terms → sum or first principal component → ReLU → normalise →
//! resize). [`method`] names the methods (a leaf); [`methods`] holds each one's override of
//! [`CamMethod::terms`](methods::CamMethod::terms), a few lines each; [`inputs`] is what they
//! read; [`projection`] the principal-component maps; [`guided`] guided backpropagation.

pub mod error;
pub mod guided;
pub mod inputs;
pub mod method;
pub mod methods;
pub mod pipeline;
pub mod projection;
