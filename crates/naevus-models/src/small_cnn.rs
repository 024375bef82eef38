//! The beginner CNN of seed 003: three conv-BN-ReLU-maxpool blocks (this file), then
//! global average pooling, FC 128 -> 256, dropout 0.5, FC 256 -> outputs (a pooled head
//! with a hidden layer, see `heads.rs`).

use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::BatchNorm;
use burn::prelude::*;

use crate::activation::Activation;
use crate::conv::conv3x3_and_batch_norm;
use crate::flex_kernels::conv_bn;
use crate::layers::{Layer, LayerHook};
use crate::onnx::Graph;

/// One conv 3x3 -> BatchNorm -> ReLU -> max-pool 2x2 block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
    pool: MaxPool2d,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        let (conv, bn) = conv3x3_and_batch_norm(channels_in, channels_out, device);
        Self { conv, bn, pool: MaxPool2dConfig::new([2, 2]).init() }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(conv_bn(&self.conv, &self.bn, Activation::Relu, x))
    }

    fn to_onnx(&self, graph: &mut Graph, x: &str) -> Result<String, String> {
        let y = graph.conv_bn(x, &self.conv, Some(&self.bn), Activation::Relu)?;
        graph.max_pool(&y, &self.pool)
    }
}

/// The small CNN's convolutional part; works at any input size.
#[derive(Module, Debug)]
pub struct SmallCnnFeatures {
    block1: ConvBlock,
    block2: ConvBlock,
    block3: ConvBlock,
}

impl SmallCnnFeatures {
    /// Channels of the three block outputs.
    pub const STAGE_CHANNELS: [usize; 3] = [32, 64, 128];

    /// A fresh, randomly initialised network.
    pub fn new(in_channels: usize, device: &Device) -> Self {
        Self {
            block1: ConvBlock::new(in_channels, 32, device),
            block2: ConvBlock::new(32, 64, device),
            block3: ConvBlock::new(64, 128, device),
        }
    }

    /// Images [batch, channels, h, w] -> the three block outputs (strides 2, 4, 8), each
    /// passed through `hook` before the next block.
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        let mut x = images;
        let mut stages = Vec::with_capacity(3);
        for block in [&self.block1, &self.block2, &self.block3] {
            x = hook(Layer::Stage(stages.len()), block.forward(x));
            stages.push(x.clone());
        }
        stages
    }

    /// The maps of [`Self::stages`] as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str) -> Result<Vec<String>, String> {
        let mut x = images.to_string();
        let mut stages = Vec::with_capacity(3);
        for block in [&self.block1, &self.block2, &self.block3] {
            x = block.to_onnx(graph, &x)?;
            stages.push(x.clone());
        }
        Ok(stages)
    }
}
