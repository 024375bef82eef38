//! The mobile inverted bottleneck (Sandler et al. 2018), which EfficientNet calls MBConv:
//! 1x1 expansion, depthwise kxk convolution, 1x1 linear projection, ReLU6 after the first
//! two, and a residual when the block keeps the shape. EfficientNet-Lite (no
//! squeeze-excitation) and MobileNetV2 share it; they differ only in their [`ConvStyle`].

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::activation::Activation;
use crate::conv::ConvStyle;
use crate::flex_kernels::{batch_norm, conv_bn, depthwise};
use crate::onnx::Graph;

/// One inverted residual block; no expansion layers when the expansion factor is 1.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand_conv: Option<Conv2d>,
    expand_bn: Option<BatchNorm>,
    depthwise_conv: Conv2d,
    depthwise_bn: BatchNorm,
    project_conv: Conv2d,
    project_bn: BatchNorm,
    residual: bool,
    /// 2 when the block halves the resolution.
    stride: usize,
}

impl InvertedResidual {
    pub(crate) fn new(style: ConvStyle, channels_in: usize, channels_out: usize, kernel: usize, stride: usize, expand: usize, device: &Device) -> Self {
        let hidden = channels_in * expand;
        Self {
            expand_conv: (expand != 1).then(|| style.conv(channels_in, hidden, 1, 1, 1, device)),
            expand_bn: (expand != 1).then(|| style.batch_norm(hidden, device)),
            depthwise_conv: style.conv(hidden, hidden, kernel, stride, hidden, device),
            depthwise_bn: style.batch_norm(hidden, device),
            project_conv: style.conv(hidden, channels_out, 1, 1, 1, device),
            project_bn: style.batch_norm(channels_out, device),
            residual: stride == 1 && channels_in == channels_out,
            stride,
        }
    }

    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    pub(crate) fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.expand_bn) {
            x = conv_bn(conv, bn, Activation::Relu6, x);
        }
        x = batch_norm(&self.depthwise_bn, Activation::Relu6, depthwise(&self.depthwise_conv, x));
        // Linear bottleneck: no activation after the projection.
        x = conv_bn(&self.project_conv, &self.project_bn, Activation::Identity, x);
        if self.residual { x + input } else { x }
    }

    pub(crate) fn to_onnx(&self, graph: &mut Graph, input: &str) -> Result<String, String> {
        let mut x = input.to_string();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.expand_bn) {
            x = graph.conv_bn(&x, conv, Some(bn), Activation::Relu6)?;
        }
        x = graph.conv_bn(&x, &self.depthwise_conv, Some(&self.depthwise_bn), Activation::Relu6)?;
        x = graph.conv_bn(&x, &self.project_conv, Some(&self.project_bn), Activation::Identity)?;
        Ok(if self.residual { graph.add(&x, input) } else { x })
    }
}

/// How timm names `blocks` (see [`crate::timm`]): nested by stage, `blocks.S.I`, a stage
/// starting at each block that changes the shape (the first of a stage never has the
/// residual; the others always do). A block without expansion is timm's
/// DepthwiseSeparableConv (`conv_dw`, `bn1`, `conv_pw`, `bn2`), the others its
/// InvertedResidual (`conv_pw`, `bn1`, `conv_dw`, `bn2`, `conv_pwl`, `bn3`). `prefix` is the
/// blocks' path in naevus's keys, as a regex (`^backbone\.MobileNetV2\.blocks\.`).
pub(crate) fn timm_block_keys(blocks: &[InvertedResidual], prefix: &str) -> Vec<(String, String)> {
    let mut rewrites = Vec::new();
    let (mut stage, mut index) = (0, 0);
    for (n, block) in blocks.iter().enumerate() {
        if n > 0 {
            (stage, index) = if block.residual { (stage, index + 1) } else { (stage + 1, 0) };
        }
        let names: &[(&str, &str)] = if block.expand_conv.is_some() {
            &[("expand_conv", "conv_pw"), ("expand_bn", "bn1"), ("depthwise_conv", "conv_dw"), ("depthwise_bn", "bn2"), ("project_conv", "conv_pwl"), ("project_bn", "bn3")]
        } else {
            &[("depthwise_conv", "conv_dw"), ("depthwise_bn", "bn1"), ("project_conv", "conv_pw"), ("project_bn", "bn2")]
        };
        for (ours, theirs) in names {
            rewrites.push((format!(r"{prefix}{n}\.{ours}\."), format!("blocks.{stage}.{index}.{theirs}.")));
        }
    }
    rewrites
}

/// Rewrites of the keys of EfficientNet-Lite weights named as lukemelas's EfficientNet-PyTorch
/// names a block's BatchNorms (`bn0`, `bn1`, `bn2`), onto this block's names. They serve both
/// the ImageNet checkpoint and naevus runs saved before the two networks shared this block.
pub const EFFICIENTNET_BLOCK_KEYS: [(&str, &str); 3] = [
    (r"(\.blocks\.\d+)\.bn0\.", "${1}.expand_bn."),
    (r"(\.blocks\.\d+)\.bn1\.", "${1}.depthwise_bn."),
    (r"(\.blocks\.\d+)\.bn2\.", "${1}.project_bn."),
];
