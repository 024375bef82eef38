//! Convolution layers as the model files declare them, so that each architecture states only
//! what is its own (kernel, stride, groups, how it pads).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Padding {
    /// kernel / 2 on every side (torchvision's ResNets and MobileNetV2).
    Symmetric,
    /// TensorFlow's "SAME": the output is input / stride, the odd pixel padded after
    /// (EfficientNet-Lite's weights were trained so).
    TensorFlowSame,
}

impl Padding {
    fn config(self, kernel: usize, stride: usize) -> PaddingConfig2d {
        match self {
            Padding::Symmetric => {
                let pad = kernel / 2;
                PaddingConfig2d::Explicit(pad, pad, pad, pad)
            }
            Padding::TensorFlowSame => {
                let total = if stride == 1 { kernel - 1 } else { kernel.saturating_sub(stride) };
                let (before, after) = (total / 2, total - total / 2);
                PaddingConfig2d::Explicit(before, before, after, after)
            }
        }
    }
}

/// A square-kernel convolution without bias (a BatchNorm follows it); `groups` = channels
/// makes it depthwise.
pub(crate) fn conv_without_bias(channels_in: usize, channels_out: usize, kernel: usize, stride: usize, groups: usize, padding: Padding, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(padding.config(kernel, stride))
        .with_bias(false)
        .init(device)
}

/// The 3x3 convolution (padding 1, with bias) and BatchNorm of a conv-BN-ReLU layer, as
/// torchvision's VGG-BN and the small CNN of seed 003 have them.
pub(crate) fn conv3x3_and_batch_norm(channels_in: usize, channels_out: usize, device: &Device) -> (Conv2d, BatchNorm) {
    let conv = Conv2dConfig::new([channels_in, channels_out], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
    (conv, BatchNormConfig::new(channels_out).init(device))
}
