//! naevus architectures as burn modules, and the registry that names them.
//!
//! Models know nothing of files or datasets: they map normalised image tensors to logits
//! (and attention maps where the architecture has them).

mod activation;
pub mod attention;
pub mod backbone;
mod conv;
pub mod efficientnet;
pub mod heads;
pub mod inverted_residual;
pub mod layers;
pub mod mobilenet_v2;
pub mod network;
pub mod onnx;
pub mod registry;
pub mod resnet;
pub mod small_cnn;
pub mod timm;
pub mod vgg;

#[cfg(feature = "flex")]
mod flex_kernels;
#[cfg(not(feature = "flex"))]
mod flex_kernels {
    //! Without flex there are no own kernels: burn's modules as they are.
    use burn::nn::{BatchNorm, conv::Conv2d};
    use burn::prelude::Tensor;

    pub(crate) fn conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        conv.forward(x)
    }

    pub(crate) fn conv_bn(conv: &Conv2d, bn: &BatchNorm, activation: crate::activation::Activation, x: Tensor<4>) -> Tensor<4> {
        batch_norm(bn, activation, conv.forward(x))
    }

    pub(crate) fn depthwise(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        conv.forward(x)
    }

    pub(crate) fn batch_norm(bn: &BatchNorm, activation: crate::activation::Activation, x: Tensor<4>) -> Tensor<4> {
        activation.apply(bn.forward(x))
    }
}

pub use layers::{Layer, LayerHook, UnknownLayer};
/// The flex kernels' layer map (`naevus bench --layers`).
#[cfg(feature = "flex")]
pub use flex_kernels::{LayerShape, Operands, Pass, SquareGemm, record_layers};
pub use network::{Network, Output};
pub use registry::{HeadOptions, MODELS, ModelSpec, PretrainedWeights, UnknownModel, spec};
