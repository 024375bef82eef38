//! EfficientNet-Lite (Tan & Le 2019; the "Lite" variant for edge devices): MBConv blocks
//! without squeeze-excitation, ReLU6 activations, fixed stem (32) and head (1280) widths.
//!
//! Field names follow the lukemelas EfficientNet-PyTorch state dict with the leading
//! underscores dropped (`_blocks.3._depthwise_conv` -> `blocks.3.depthwise_conv`); the blocks
//! are the [`InvertedResidual`] MobileNetV2 shares, whose BatchNorms
//! [`EFFICIENTNET_BLOCK_KEYS`](crate::inverted_residual::EFFICIENTNET_BLOCK_KEYS) renames.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::activation::Activation;
use crate::conv::ConvStyle;
use crate::flex_kernels::conv_bn;
use crate::inverted_residual::InvertedResidual;
use crate::layers::{Layer, LayerHook};
use crate::onnx::Graph;

/// Stem and head widths, the same for every Lite variant.
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One row of the EfficientNet-B0 block table: repeats, kernel, stride, expansion, in, out.
struct Stage {
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand: usize,
    channels_in: usize,
    channels_out: usize,
}

const B0_STAGES: [Stage; 7] = [
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 1, channels_in: 32, channels_out: 16 },
    Stage { repeats: 2, kernel: 3, stride: 2, expand: 6, channels_in: 16, channels_out: 24 },
    Stage { repeats: 2, kernel: 5, stride: 2, expand: 6, channels_in: 24, channels_out: 40 },
    Stage { repeats: 3, kernel: 3, stride: 2, expand: 6, channels_in: 40, channels_out: 80 },
    Stage { repeats: 3, kernel: 5, stride: 1, expand: 6, channels_in: 80, channels_out: 112 },
    Stage { repeats: 4, kernel: 5, stride: 2, expand: 6, channels_in: 112, channels_out: 192 },
    Stage { repeats: 1, kernel: 3, stride: 1, expand: 6, channels_in: 192, channels_out: 320 },
];

/// Which member of the Lite family: width and depth multipliers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variant {
    Lite0,
    Lite1,
    Lite2,
}

impl Variant {
    fn width(self) -> f64 {
        match self {
            Variant::Lite0 | Variant::Lite1 => 1.0,
            Variant::Lite2 => 1.1,
        }
    }

    fn depth(self) -> f64 {
        match self {
            Variant::Lite0 => 1.0,
            Variant::Lite1 => 1.1,
            Variant::Lite2 => 1.2,
        }
    }
}

/// Channels scaled by the width multiplier, rounded to a multiple of 8 as the reference does.
fn round_channels(channels: usize, width: f64) -> usize {
    let scaled = channels as f64 * width;
    let rounded = ((scaled + 4.0) as usize / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled { rounded + 8 } else { rounded }
}

/// TensorFlow's padding and BatchNorm settings, which the ImageNet weights were trained with.
const STYLE: ConvStyle = ConvStyle::TENSORFLOW;

/// EfficientNet-Lite up to its 1280-channel head convolution (pooling and classifier are
/// the network head's).
#[derive(Module, Debug)]
pub struct EfficientNetLiteFeatures {
    conv_stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<InvertedResidual>,
    conv_head: Conv2d,
    bn1: BatchNorm,
}

impl EfficientNetLiteFeatures {
    /// A fresh, randomly initialised network.
    pub fn new(variant: Variant, device: &Device) -> Self {
        let (width, depth) = (variant.width(), variant.depth());
        let last = B0_STAGES.len() - 1;
        let mut blocks = Vec::new();
        for (s, stage) in B0_STAGES.iter().enumerate() {
            // Lite fixes the stem (32) and head (1280) widths; every stage is scaled.
            let channels_in = if s == 0 { STEM_CHANNELS } else { round_channels(stage.channels_in, width) };
            let channels_out = round_channels(stage.channels_out, width);
            let repeats = if s == 0 || s == last { stage.repeats } else { (stage.repeats as f64 * depth).ceil() as usize };
            for r in 0..repeats {
                let (c_in, stride) = if r == 0 { (channels_in, stage.stride) } else { (channels_out, 1) };
                blocks.push(InvertedResidual::new(STYLE, c_in, channels_out, stage.kernel, stride, stage.expand, device));
            }
        }
        Self {
            conv_stem: STYLE.conv(3, STEM_CHANNELS, 3, 2, 1, device),
            bn0: STYLE.batch_norm(STEM_CHANNELS, device),
            blocks,
            conv_head: STYLE.conv(round_channels(B0_STAGES[last].channels_out, width), HEAD_CHANNELS, 1, 1, 1, device),
            bn1: STYLE.batch_norm(HEAD_CHANNELS, device),
        }
    }

    /// Channels of the four maps of [`Self::stages`].
    pub fn stage_channels(variant: Variant) -> Vec<usize> {
        let width = variant.width();
        vec![round_channels(24, width), round_channels(40, width), round_channels(112, width), HEAD_CHANNELS]
    }

    /// Images [batch, 3, h, w] -> the last map of each resolution at strides 4, 8 and 16, and
    /// the head convolution's output at stride 32, each passed through `hook` before the
    /// blocks after it.
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        let mut x = conv_bn(&self.conv_stem, &self.bn0, Activation::Relu6, images);
        let mut stages = Vec::with_capacity(4);
        let mut past_stride_2 = false;
        for block in &self.blocks {
            // The map before a downsampling block is the last of its resolution; the first
            // such map, at the stem's stride 2, is not a stage.
            if block.stride() == 2 {
                if past_stride_2 {
                    x = hook(Layer::Stage(stages.len()), x);
                    stages.push(x.clone());
                }
                past_stride_2 = true;
            }
            x = block.forward(x);
        }
        let head = conv_bn(&self.conv_head, &self.bn1, Activation::Relu6, x);
        stages.push(hook(Layer::Stage(stages.len()), head));
        stages
    }

    /// The maps of [`Self::stages`] as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str) -> Result<Vec<String>, String> {
        let mut x = graph.conv_bn(images, &self.conv_stem, Some(&self.bn0), Activation::Relu6)?;
        let mut stages = Vec::with_capacity(4);
        let mut past_stride_2 = false;
        for block in &self.blocks {
            if block.stride() == 2 {
                if past_stride_2 {
                    stages.push(x.clone());
                }
                past_stride_2 = true;
            }
            x = block.to_onnx(graph, &x)?;
        }
        stages.push(graph.conv_bn(&x, &self.conv_head, Some(&self.bn1), Activation::Relu6)?);
        Ok(stages)
    }

    /// Rewrites of this network's keys onto timm's `tf_efficientnet_lite*` (see
    /// [`crate::timm`]); the head's BN is renamed before the stem's takes its name.
    pub(crate) fn timm_keys(&self) -> Vec<(String, String)> {
        let ours = r"^backbone\.EfficientNetLite\.";
        let mut rewrites = vec![
            (format!(r"{ours}bn1\."), "bn2.".to_string()),
            (format!(r"{ours}bn0\."), "bn1.".to_string()),
            (format!(r"{ours}(conv_stem|conv_head)\."), "${1}.".to_string()),
        ];
        rewrites.extend(crate::inverted_residual::timm_block_keys(&self.blocks, &format!(r"{ours}blocks\.")));
        rewrites
    }
}
