//! MobileNetV2 1.0 (Sandler et al. 2018) as a feature extractor: the torchvision network up to
//! its last 1x1 convolution, without pooling or classifier, exposing one feature map per
//! resolution level for heads that want more than the final one.
//!
//! The blocks are the [`InvertedResidual`] EfficientNet-Lite shares, with 3x3 depthwise
//! kernels; padding is symmetric and BatchNorm eps 1e-5, as in torchvision.

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::activation::Activation;
use crate::conv::ConvStyle;
use crate::flex_kernels::conv_bn;
use crate::inverted_residual::InvertedResidual;
use crate::layers::{Layer, LayerHook};
use crate::onnx::Graph;

const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One row of the paper's block table: expansion t, output channels c, repeats n, stride s
/// of the first repeat (the others have stride 1).
struct Stage {
    expand: usize,
    channels_out: usize,
    repeats: usize,
    stride: usize,
}

const STAGES: [Stage; 7] = [
    Stage { expand: 1, channels_out: 16, repeats: 1, stride: 1 },
    Stage { expand: 6, channels_out: 24, repeats: 2, stride: 2 },
    Stage { expand: 6, channels_out: 32, repeats: 3, stride: 2 },
    Stage { expand: 6, channels_out: 64, repeats: 4, stride: 2 },
    Stage { expand: 6, channels_out: 96, repeats: 3, stride: 1 },
    Stage { expand: 6, channels_out: 160, repeats: 3, stride: 2 },
    Stage { expand: 6, channels_out: 320, repeats: 1, stride: 1 },
];

/// Indices into `blocks` of the last block at strides 4, 8 and 16 (torchvision's
/// `features.3`, `.6` and `.13`): the block after each halves the resolution. Stride 32 ends
/// with the head.
const LEVEL_ENDS: [usize; 3] = [2, 5, 12];

/// Checkpoint key -> path in a registry `Network` (whose `backbone` this is) rewrites,
/// applied in order, each to the result of the ones before (burn-store's `with_key_remapping`).
///
/// The checkpoint of WEIGHTS.md uses the layout of the original MobileNetV2 PyTorch port
/// rather than today's torchvision: each block's `conv` is one flat Sequential with the ReLU6
/// layers counted, so its weights sit at 0, 1, 3, 4, 6, 7 (`features.N.conv.3.weight`, not
/// `features.N.conv.1.0.weight`). Stem and head are `features.0` and `features.18` as
/// torchvision has them. Blocks are `features.1..=17` there and `blocks.0..=16` here; the
/// shift is spelled out rather than left to burn-store's contiguous renumbering, so it holds
/// whichever way that option is set.
pub const KEY_REWRITES: &[(&str, &str)] = &[
    (r"^features\.0\.0\.", "backbone.stem_conv."),
    (r"^features\.0\.1\.", "backbone.stem_bn."),
    (r"^features\.18\.0\.", "backbone.head_conv."),
    (r"^features\.18\.1\.", "backbone.head_bn."),
    // The first block does not expand: depthwise conv, BN, ReLU6, project conv, BN.
    (r"^features\.1\.conv\.0\.", "backbone.blocks.0.depthwise_conv."),
    (r"^features\.1\.conv\.1\.", "backbone.blocks.0.depthwise_bn."),
    (r"^features\.1\.conv\.3\.", "backbone.blocks.0.project_conv."),
    (r"^features\.1\.conv\.4\.", "backbone.blocks.0.project_bn."),
    // The others: expand conv, BN, ReLU6, depthwise conv, BN, ReLU6, project conv, BN.
    (r"^(features\.\d+)\.conv\.0\.", "${1}.expand_conv."),
    (r"^(features\.\d+)\.conv\.1\.", "${1}.expand_bn."),
    (r"^(features\.\d+)\.conv\.3\.", "${1}.depthwise_conv."),
    (r"^(features\.\d+)\.conv\.4\.", "${1}.depthwise_bn."),
    (r"^(features\.\d+)\.conv\.6\.", "${1}.project_conv."),
    (r"^(features\.\d+)\.conv\.7\.", "${1}.project_bn."),
    (r"^features\.2\.", "backbone.blocks.1."),
    (r"^features\.3\.", "backbone.blocks.2."),
    (r"^features\.4\.", "backbone.blocks.3."),
    (r"^features\.5\.", "backbone.blocks.4."),
    (r"^features\.6\.", "backbone.blocks.5."),
    (r"^features\.7\.", "backbone.blocks.6."),
    (r"^features\.8\.", "backbone.blocks.7."),
    (r"^features\.9\.", "backbone.blocks.8."),
    (r"^features\.10\.", "backbone.blocks.9."),
    (r"^features\.11\.", "backbone.blocks.10."),
    (r"^features\.12\.", "backbone.blocks.11."),
    (r"^features\.13\.", "backbone.blocks.12."),
    (r"^features\.14\.", "backbone.blocks.13."),
    (r"^features\.15\.", "backbone.blocks.14."),
    (r"^features\.16\.", "backbone.blocks.15."),
    (r"^features\.17\.", "backbone.blocks.16."),
];

/// torchvision's padding and BatchNorm settings, which the ImageNet weights were trained with.
const STYLE: ConvStyle = ConvStyle::TORCHVISION;

/// MobileNetV2 1.0 convolutional trunk: stem, 17 inverted residual blocks, 1x1 conv to 1280.
#[derive(Module, Debug)]
pub struct MobileNetV2Features {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<InvertedResidual>,
    head_conv: Conv2d,
    head_bn: BatchNorm,
}

impl MobileNetV2Features {
    /// A randomly initialised network (load ImageNet weights with [`KEY_REWRITES`]).
    pub fn new(device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut channels_in = STEM_CHANNELS;
        for stage in &STAGES {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                blocks.push(InvertedResidual::new(STYLE, channels_in, stage.channels_out, 3, stride, stage.expand, device));
                channels_in = stage.channels_out;
            }
        }
        Self {
            stem_conv: STYLE.conv(3, STEM_CHANNELS, 3, 2, 1, device),
            stem_bn: STYLE.batch_norm(STEM_CHANNELS, device),
            blocks,
            head_conv: STYLE.conv(channels_in, HEAD_CHANNELS, 1, 1, 1, device),
            head_bn: STYLE.batch_norm(HEAD_CHANNELS, device),
        }
    }

    /// Channels of the four maps [`stages`](Self::stages) returns.
    pub fn stage_channels() -> [usize; 4] {
        [24, 32, 96, HEAD_CHANNELS]
    }

    /// Images [batch, 3, h, w] (torchvision-normalised) -> the last feature map of each
    /// resolution level, at strides 4, 8, 16 and 32; the last is the 1280-channel head output.
    /// Each passes through `hook` before the next block.
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        let mut x = conv_bn(&self.stem_conv, &self.stem_bn, Activation::Relu6, images);
        let mut stages = Vec::with_capacity(4);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if LEVEL_ENDS.contains(&i) {
                x = hook(Layer::Stage(stages.len()), x);
                stages.push(x.clone());
            }
        }
        let head = conv_bn(&self.head_conv, &self.head_bn, Activation::Relu6, x);
        stages.push(hook(Layer::Stage(stages.len()), head));
        stages
    }

    /// The maps of [`Self::stages`] as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str) -> Result<Vec<String>, String> {
        let mut x = graph.conv_bn(images, &self.stem_conv, Some(&self.stem_bn), Activation::Relu6)?;
        let mut stages = Vec::with_capacity(4);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.to_onnx(graph, &x)?;
            if LEVEL_ENDS.contains(&i) {
                stages.push(x.clone());
            }
        }
        stages.push(graph.conv_bn(&x, &self.head_conv, Some(&self.head_bn), Activation::Relu6)?);
        Ok(stages)
    }

    /// Rewrites of this network's keys onto timm's `mobilenetv2_100` (see [`crate::timm`]).
    pub(crate) fn timm_keys(&self) -> Vec<(String, String)> {
        let ours = r"^backbone\.MobileNetV2\.";
        let mut rewrites: Vec<(String, String)> = [("stem_conv", "conv_stem"), ("stem_bn", "bn1"), ("head_conv", "conv_head"), ("head_bn", "bn2")]
            .iter()
            .map(|(from, to)| (format!(r"{ours}{from}\."), format!("{to}.")))
            .collect();
        rewrites.extend(crate::inverted_residual::timm_block_keys(&self.blocks, &format!(r"{ours}blocks\.")));
        rewrites
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobilenet_v2_stages_have_the_documented_strides_and_channels() {
        let device = Device::flex();
        let network = MobileNetV2Features::new(&device).valid();
        let stages = network.stages(Tensor::<4>::zeros([2, 3, 64, 64], &device), &crate::layers::unchanged);
        let shapes: Vec<[usize; 4]> = stages.iter().map(|s| s.dims()).collect();
        let [c4, c8, c16, c32] = MobileNetV2Features::stage_channels();
        assert_eq!(shapes, vec![[2, c4, 16, 16], [2, c8, 8, 8], [2, c16, 4, 4], [2, c32, 2, 2]]);
    }

    #[test]
    fn mobilenet_v2_has_torchvisions_parameter_count() {
        // torchvision's mobilenet_v2().features: 2,223,872 parameters. burn also counts each
        // BatchNorm's running mean and variance, 2 per BN channel. BN channels: stem 32;
        // first block 32 + 16; each expanding block 2 * hidden + out (hidden = 6 * in):
        //   16->24: 216, 24->24: 312, 24->32: 320, 32->32: 2 * 416, 32->64: 448,
        //   64->64: 3 * 832, 64->96: 864, 96->96: 2 * 1248, 96->160: 1312,
        //   160->160: 2 * 2080, 160->320: 2240 (together 15,696);
        // head 1280. Total 32 + 48 + 15,696 + 1280 = 17,056.
        let bn_channels = 17_056;
        let network = MobileNetV2Features::new(&Device::flex());
        assert_eq!(network.num_params(), 2_223_872 + 2 * bn_channels);
    }
}
