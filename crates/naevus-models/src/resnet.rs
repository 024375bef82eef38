//! ResNet-18/34/50 feature extractors in the torchvision layout (field names match
//! torchvision's state-dict keys, so ImageNet weights would map one to one), with a
//! configurable number of input channels for the grayscale variant of seed 003.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::activation::Activation;
use crate::conv::{Padding, conv_without_bias};
use crate::flex_kernels::conv_bn;
use crate::layers::{Layer, LayerHook};
use crate::onnx::Graph;

fn conv(channels_in: usize, channels_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    conv_without_bias(channels_in, channels_out, kernel, stride, 1, Padding::Symmetric, device)
}

/// The 1x1 conv + BN shortcut used when a block changes shape (`downsample.0`, `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Downsample {
    fn new(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Self {
        Self { conv: conv(channels_in, channels_out, 1, stride, device), bn: BatchNormConfig::new(channels_out).init(device) }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, Activation::Identity, x)
    }
}

/// Two 3x3 convs (ResNet-18/34).
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

/// 1x1 -> 3x3 -> 1x1 with a 4x expansion (ResNet-50).
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
}

/// A residual block of either kind.
#[derive(Module, Debug)]
pub enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(b) => {
                let identity = match &b.downsample {
                    Some(d) => d.forward(x.clone()),
                    None => x.clone(),
                };
                let y = conv_bn(&b.conv1, &b.bn1, Activation::Relu, x);
                let y = conv_bn(&b.conv2, &b.bn2, Activation::Identity, y);
                relu(y + identity)
            }
            Block::Bottleneck(b) => {
                let identity = match &b.downsample {
                    Some(d) => d.forward(x.clone()),
                    None => x.clone(),
                };
                let y = conv_bn(&b.conv1, &b.bn1, Activation::Relu, x);
                let y = conv_bn(&b.conv2, &b.bn2, Activation::Relu, y);
                let y = conv_bn(&b.conv3, &b.bn3, Activation::Identity, y);
                relu(y + identity)
            }
        }
    }
}

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    R18,
    R34,
    R50,
}

impl Depth {
    fn layers(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }

    fn expansion(self) -> usize {
        if self == Depth::R50 { 4 } else { 1 }
    }
}

/// A torchvision-layout ResNet without its pooling and classifier.
#[derive(Module, Debug)]
pub struct ResNetFeatures {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
}

impl Block {
    fn to_onnx(&self, graph: &mut Graph, x: &str) -> Result<String, String> {
        let (y, downsample) = match self {
            Block::Basic(b) => {
                let y = graph.conv_bn(x, &b.conv1, Some(&b.bn1), Activation::Relu)?;
                (graph.conv_bn(&y, &b.conv2, Some(&b.bn2), Activation::Identity)?, &b.downsample)
            }
            Block::Bottleneck(b) => {
                let y = graph.conv_bn(x, &b.conv1, Some(&b.bn1), Activation::Relu)?;
                let y = graph.conv_bn(&y, &b.conv2, Some(&b.bn2), Activation::Relu)?;
                (graph.conv_bn(&y, &b.conv3, Some(&b.bn3), Activation::Identity)?, &b.downsample)
            }
        };
        let identity = match downsample {
            Some(d) => graph.conv_bn(x, &d.conv, Some(&d.bn), Activation::Identity)?,
            None => x.to_string(),
        };
        let sum = graph.add(&y, &identity);
        Ok(graph.activation(&sum, Activation::Relu))
    }
}

impl ResNetFeatures {
    /// Rewrites of this network's keys onto timm's `resnet18`/`34`/`50`, which keeps
    /// torchvision's names (see [`crate::timm`]): the block kind and the shortcut's parts
    /// are not named there.
    pub(crate) fn timm_keys(&self) -> Vec<(String, String)> {
        [
            (r"^backbone\.ResNet\.", ""),
            (r"^(layer[1-4]\.\d+)\.(Basic|Bottleneck)\.", "${1}."),
            (r"\.downsample\.conv\.", ".downsample.0."),
            (r"\.downsample\.bn\.", ".downsample.1."),
        ]
        .iter()
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect()
    }

    /// A fresh, randomly initialised network.
    pub fn new(depth: Depth, in_channels: usize, device: &Device) -> Self {
        let expansion = depth.expansion();
        let mut channels_in = 64;
        let mut stage = |width: usize, count: usize, stride: usize| -> Vec<Block> {
            (0..count)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    let channels_out = width * expansion;
                    let downsample = (s != 1 || channels_in != channels_out)
                        .then(|| Downsample::new(channels_in, channels_out, s, device));
                    let block = if depth == Depth::R50 {
                        Block::Bottleneck(Bottleneck {
                            conv1: conv(channels_in, width, 1, 1, device),
                            bn1: BatchNormConfig::new(width).init(device),
                            conv2: conv(width, width, 3, s, device),
                            bn2: BatchNormConfig::new(width).init(device),
                            conv3: conv(width, channels_out, 1, 1, device),
                            bn3: BatchNormConfig::new(channels_out).init(device),
                            downsample,
                        })
                    } else {
                        Block::Basic(BasicBlock {
                            conv1: conv(channels_in, width, 3, s, device),
                            bn1: BatchNormConfig::new(width).init(device),
                            conv2: conv(width, width, 3, 1, device),
                            bn2: BatchNormConfig::new(width).init(device),
                            downsample,
                        })
                    };
                    channels_in = channels_out;
                    block
                })
                .collect()
        };
        let [n1, n2, n3, n4] = depth.layers();
        let layer1 = stage(64, n1, 1);
        let layer2 = stage(128, n2, 2);
        let layer3 = stage(256, n3, 2);
        let layer4 = stage(512, n4, 2);
        Self {
            conv1: conv(in_channels, 64, 7, 2, device),
            bn1: BatchNormConfig::new(64).init(device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }

    /// Channels of the four stage outputs of [`Self::stages`].
    pub fn stage_channels(depth: Depth) -> Vec<usize> {
        [64, 128, 256, 512].iter().map(|c| c * depth.expansion()).collect()
    }

    /// Images [batch, channels, h, w] -> the outputs of layer1..layer4 (strides 4, 8, 16, 32),
    /// each passed through `hook` before the next layer.
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        let mut x = self.maxpool.forward(conv_bn(&self.conv1, &self.bn1, Activation::Relu, images));
        let mut stages = Vec::with_capacity(4);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
            x = hook(Layer::Stage(stages.len()), x);
            stages.push(x.clone());
        }
        stages
    }

    /// The maps of [`Self::stages`] as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str) -> Result<Vec<String>, String> {
        let y = graph.conv_bn(images, &self.conv1, Some(&self.bn1), Activation::Relu)?;
        let mut x = graph.max_pool(&y, &self.maxpool)?;
        let mut stages = Vec::with_capacity(4);
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.to_onnx(graph, &x)?;
            }
            stages.push(x.clone());
        }
        Ok(stages)
    }
}
