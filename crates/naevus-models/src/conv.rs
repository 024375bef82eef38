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

/// How an architecture builds its bias-free convolutions and their BatchNorms: the padding
/// and BatchNorm settings its ImageNet weights were trained with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvStyle {
    padding: Padding,
    batch_norm_epsilon: f64,
    batch_norm_momentum: f64,
}

impl ConvStyle {
    /// TensorFlow's: "SAME" padding, BatchNorm eps 1e-3 and moving-average decay 0.99
    /// (EfficientNet-Lite).
    pub(crate) const TENSORFLOW: ConvStyle = ConvStyle { padding: Padding::TensorFlowSame, batch_norm_epsilon: 1e-3, batch_norm_momentum: 0.01 };
    /// PyTorch's defaults: symmetric padding, BatchNorm eps 1e-5 and momentum 0.1
    /// (torchvision's MobileNetV2).
    pub(crate) const TORCHVISION: ConvStyle = ConvStyle { padding: Padding::Symmetric, batch_norm_epsilon: 1e-5, batch_norm_momentum: 0.1 };

    /// A bias-free square-kernel convolution; `groups` = channels makes it depthwise.
    pub(crate) fn conv(self, channels_in: usize, channels_out: usize, kernel: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
        conv_without_bias(channels_in, channels_out, kernel, stride, groups, self.padding, device)
    }

    pub(crate) fn batch_norm(self, channels: usize, device: &Device) -> BatchNorm {
        BatchNormConfig::new(channels).with_epsilon(self.batch_norm_epsilon).with_momentum(self.batch_norm_momentum).init(device)
    }
}

/// The 3x3 convolution (padding 1, with bias) and BatchNorm of a conv-BN-ReLU layer, as
/// torchvision's VGG-BN and the small CNN of seed 003 have them.
pub(crate) fn conv3x3_and_batch_norm(channels_in: usize, channels_out: usize, device: &Device) -> (Conv2d, BatchNorm) {
    let conv = Conv2dConfig::new([channels_in, channels_out], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device);
    (conv, BatchNormConfig::new(channels_out).init(device))
}
