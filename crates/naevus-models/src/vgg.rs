//! VGG-16 with BatchNorm (Simonyan & Zisserman 2015, torchvision's `vgg16_bn.features`)
//! without the dense layers: the backbone of the attention VGG of seeds 000/001.
//!
//! torchvision numbers the feature layers flat (`features.N`, conv at N, BN at N + 1); here
//! they are grouped by block (`blocks.b.layers.k.conv` / `.bn`), so loading its ImageNet
//! weights needs a key rewrite.

use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::BatchNorm;
use burn::prelude::*;

use crate::activation::Activation;
use crate::conv::conv3x3_and_batch_norm;
use crate::flex_kernels::conv_bn;
use crate::layers::{Layer, LayerHook};
use crate::onnx::Graph;

/// Output widths of the 3x3 convolutions of each block; every block ends in a 2x2 max-pool
/// (64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M).
const BLOCKS: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];

/// conv 3x3 (padding 1, with bias as in torchvision) -> BatchNorm -> ReLU.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBnRelu {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        let (conv, bn) = conv3x3_and_batch_norm(channels_in, channels_out, device);
        Self { conv, bn }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, Activation::Relu, x)
    }
}

/// The convolutions between two max-pools.
#[derive(Module, Debug)]
pub struct VggBlock {
    layers: Vec<ConvBnRelu>,
}

/// The 13 conv-BN-ReLU layers and 5 max-pools of VGG-16-BN.
#[derive(Module, Debug)]
pub struct Vgg16BnFeatures {
    blocks: Vec<VggBlock>,
    pool: MaxPool2d,
}

impl Vgg16BnFeatures {
    /// A fresh, randomly initialised feature extractor for RGB images.
    pub fn new(device: &Device) -> Self {
        let mut channels_in = 3;
        let blocks = BLOCKS
            .iter()
            .map(|widths| VggBlock {
                layers: widths
                    .iter()
                    .map(|&width| {
                        let layer = ConvBnRelu::new(channels_in, width, device);
                        channels_in = width;
                        layer
                    })
                    .collect(),
            })
            .collect();
        Self { blocks, pool: MaxPool2dConfig::new([2, 2]).init() }
    }

    /// Channels of the four maps of [`stages`](Self::stages).
    pub fn stage_channels() -> [usize; 4] {
        [128, 256, 512, 512]
    }

    /// Images [batch, 3, h, w] -> the outputs of pool-2, pool-3, pool-4 and pool-5, at strides
    /// 4, 8, 16 and 32. The seeds' attention takes its maps after the pool (pool-3 and pool-4
    /// as local features, pool-5 as the global guide), so these are post-pool maps. Each passes
    /// through `hook` before the next block.
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        let mut x = images;
        let mut stages = Vec::with_capacity(4);
        for (b, block) in self.blocks.iter().enumerate() {
            for layer in &block.layers {
                x = layer.forward(x);
            }
            x = self.pool.forward(x);
            if b >= 1 {
                x = hook(Layer::Stage(stages.len()), x);
                stages.push(x.clone());
            }
        }
        stages
    }

    /// The maps of [`Self::stages`] as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str) -> Result<Vec<String>, String> {
        let mut x = images.to_string();
        let mut stages = Vec::with_capacity(4);
        for (b, block) in self.blocks.iter().enumerate() {
            for layer in &block.layers {
                x = graph.conv_bn(&x, &layer.conv, Some(&layer.bn), Activation::Relu)?;
            }
            x = graph.max_pool(&x, &self.pool)?;
            if b >= 1 {
                stages.push(x.clone());
            }
        }
        Ok(stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_have_the_strides_and_widths_of_pool_2_to_5() {
        let device = Device::flex();
        let net = Vgg16BnFeatures::new(&device);
        let stages = net.stages(Tensor::<4>::ones([2, 3, 64, 64], &device), &crate::layers::unchanged);
        let channels = Vgg16BnFeatures::stage_channels();
        assert_eq!(stages.len(), 4);
        for (i, (stage, stride)) in stages.iter().zip([4, 8, 16, 32]).enumerate() {
            assert_eq!(stage.dims(), [2, channels[i], 64 / stride, 64 / stride], "stage {i}");
        }
    }

    #[test]
    fn parameter_count_matches_torchvision_vgg16_bn_features() {
        // Conv weights and biases plus BN gamma and beta, from the layer table.
        let (mut trainable, mut bn_channels, mut channels_in) = (0, 0, 3);
        for &width in BLOCKS.iter().flat_map(|b| b.iter()) {
            trainable += 9 * channels_in * width + width + 2 * width;
            bn_channels += width;
            channels_in = width;
        }
        // torchvision: sum(p.numel() for p in vgg16_bn().features.parameters()).
        assert_eq!(trainable, 14_723_136);
        assert_eq!(bn_channels, 4224);
        // burn also counts the BN running mean and variance.
        let net = Vgg16BnFeatures::new(&Device::flex());
        assert_eq!(net.num_params(), 14_723_136 + 2 * 4224);
    }
}
