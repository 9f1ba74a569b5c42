//! The convs under autodiff: each records one backward step ([`ConvBackward`]) that calls the
//! inner backend's gradient kernels.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::Autodiff;

use super::MobileConvOps;

/// Which conv a backward step differentiates, with its non-tensor arguments.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Depthwise { stride: usize, padding: [usize; 4] },
    Pointwise,
}

/// The backward step both convs record: inputs (x, weight, bias); state (x, weight, the output
/// when ReLU6 is fused, which conv).
#[derive(Debug)]
struct ConvBackward;

impl<B: MobileConvOps> Backward<B, 3> for ConvBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, Kind);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let (x, weight, relu6_output, kind) = ops.state;
        let mut grad = grads.consume::<B>(&ops.node);
        if let Some(output) = relu6_output {
            grad = B::relu6_grad(grad, output);
        }
        if let Some(node) = node_x {
            let dx = match kind {
                Kind::Depthwise { stride, padding } => B::depthwise_input_grad(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    stride,
                    padding,
                ),
                Kind::Pointwise => B::pointwise_input_grad(x.clone(), weight.clone(), grad.clone()),
            };
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = match kind {
                Kind::Depthwise { stride, padding } => {
                    B::depthwise_weight_grad(x, weight, grad.clone(), stride, padding)
                }
                Kind::Pointwise => B::pointwise_weight_grad(x, weight, grad.clone()),
            };
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, B::channel_sums(grad));
        }
    }
}

/// Run the conv on the inner backend and record its backward step when any input tracks
/// gradients.
fn record<B: MobileConvOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    kind: Kind,
    relu6: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let run = |x: FloatTensor<B>, w: FloatTensor<B>, b: FloatTensor<B>| match kind {
        Kind::Depthwise { stride, padding } => B::depthwise_conv(x, w, b, stride, padding, relu6),
        Kind::Pointwise => B::pointwise_conv(x, w, b, relu6),
    };
    let (x_inner, w_inner, b_inner) = (
        x.primitive().clone(),
        weight.primitive().clone(),
        bias.primitive().clone(),
    );
    match ConvBackward
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = run(x_inner.clone(), w_inner.clone(), b_inner);
            let output = relu6.then(|| y.clone());
            prep.finish((x_inner, w_inner, output, kind), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x_inner, w_inner, b_inner)),
    }
}

/// Gradient ops are only ever called on the inner backend, inside [`ConvBackward`].
fn not_differentiable(op: &str) -> ! {
    panic!("mobile_conv: `{op}` is a backward kernel and is not itself differentiable")
}

impl<B: MobileConvOps, C: CheckpointStrategy> MobileConvOps for Autodiff<B, C> {
    fn depthwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: [usize; 4],
        relu6: bool,
    ) -> FloatTensor<Self> {
        record::<B, C>(x, weight, bias, Kind::Depthwise { stride, padding }, relu6)
    }

    fn depthwise_input_grad(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: usize,
        _: [usize; 4],
    ) -> FloatTensor<Self> {
        not_differentiable("depthwise_input_grad")
    }

    fn depthwise_weight_grad(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: usize,
        _: [usize; 4],
    ) -> FloatTensor<Self> {
        not_differentiable("depthwise_weight_grad")
    }

    fn pointwise_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu6: bool,
    ) -> FloatTensor<Self> {
        record::<B, C>(x, weight, bias, Kind::Pointwise, relu6)
    }

    fn pointwise_input_grad(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        not_differentiable("pointwise_input_grad")
    }

    fn pointwise_weight_grad(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        not_differentiable("pointwise_weight_grad")
    }

    fn channel_sums(_: FloatTensor<Self>) -> FloatTensor<Self> {
        not_differentiable("channel_sums")
    }

    fn relu6_grad(_: FloatTensor<Self>, _: FloatTensor<Self>) -> FloatTensor<Self> {
        not_differentiable("relu6_grad")
    }
}
