//! The activations that follow a convolution and its batch norm.

use burn::prelude::*;

/// The activation after a convolution and its batch norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Activation {
    Identity,
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

impl Activation {
    pub(crate) fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Activation::Identity => x,
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::Relu6 => relu6(x),
        }
    }

    /// The clamp that is this activation.
    pub(crate) fn bounds(self) -> (f64, f64) {
        match self {
            Activation::Identity => (f64::NEG_INFINITY, f64::INFINITY),
            Activation::Relu => (0.0, f64::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }
}

/// min(max(x, 0), 6), as relu then clamp_max: burn's autodiff has no clamp of its own, and
/// `clamp(0, 6)` costs two comparisons and two mask fills each way, where relu is one fused
/// pass forward and one backward (bench/NOTES.md). MobileNetV2's and EfficientNet-Lite's activation.
fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    burn::tensor::activation::relu(x).clamp_max(6.0)
}
