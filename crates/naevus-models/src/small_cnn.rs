//! The beginner CNN of seed 003: three conv-BN-ReLU-maxpool blocks, global average
//! pooling, FC 128 -> 256, dropout 0.5, FC 256 -> outputs.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// One conv 3x3 -> BatchNorm -> ReLU -> max-pool 2x2 block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
    pool: MaxPool2d,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(channels_out).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(relu(self.bn.forward(self.conv.forward(x))))
    }
}

/// The small CNN; works at any input size because of the global pooling.
#[derive(Module, Debug)]
pub struct SmallCnn {
    block1: ConvBlock,
    block2: ConvBlock,
    block3: ConvBlock,
    pool: AdaptiveAvgPool2d,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl SmallCnn {
    /// A fresh, randomly initialised network.
    pub fn new(in_channels: usize, num_outputs: usize, device: &Device) -> Self {
        Self {
            block1: ConvBlock::new(in_channels, 32, device),
            block2: ConvBlock::new(32, 64, device),
            block3: ConvBlock::new(64, 128, device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc1: LinearConfig::new(128, 256).init(device),
            dropout: DropoutConfig::new(0.5).init(),
            fc2: LinearConfig::new(256, num_outputs).init(device),
        }
    }

    /// A new randomly initialised classifier with `num_outputs` logits.
    pub fn with_new_head(mut self, num_outputs: usize, device: &Device) -> Self {
        self.fc2 = LinearConfig::new(256, num_outputs).init(device);
        self
    }

    /// Images [batch, channels, h, w] -> logits [batch, outputs].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.block3.forward(self.block2.forward(self.block1.forward(images)));
        let x = self.pool.forward(x).flatten::<2>(1, 3);
        let x = self.dropout.forward(relu(self.fc1.forward(x)));
        self.fc2.forward(x)
    }
}
