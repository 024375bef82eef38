//! Trainable spatial attention: the grid attention block of the attention VGG (Yan et al.,
//! IPMI 2019; seeds 000/001) and ChipNet's attention-weighted pooling over re-stacked chip
//! embeddings (seed 002), with the helpers that cut images into chips and re-stack them.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softmax};

use crate::activation::Activation;
use crate::flex_kernels::{conv as dense, conv_bn};

/// How compatibility scores become attention weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionNorm {
    /// Softmax over the positions; the output is the attention-weighted sum of the local
    /// features (the seeds' `normalize_attn=True`, which both notebooks train with).
    Softmax,
    /// Sigmoid per position; the output is the spatial mean of the attention-weighted local
    /// features (the seeds' `normalize_attn=False`). The map is not divided by its own sum:
    /// the seeds average a * l over the H*W positions, so the weights need not sum to 1.
    Sigmoid,
}

/// `features` [batch, channels, h, w] weighted by `weights` [batch, h*w] and summed over the
/// positions -> [batch, channels].
fn weighted_sum(features: Tensor<4>, weights: Tensor<2>) -> Tensor<2> {
    let [batch, channels, height, width] = features.dims();
    let positions = height * width;
    features
        .reshape([batch, channels, positions])
        .matmul(weights.reshape([batch, positions, 1]))
        .reshape([batch, channels])
}

/// Bilinear resizing of `maps` [batch, channels, h, w] to [batch, channels, height, width]
/// with half-pixel centres (torch's `align_corners=False`), as two products with
/// interpolation matrices. burn's `interpolate` gives the same values, but its backward is
/// missing on the GPU backends (cubecl: "Bilinear interpolation backward is not supported"),
/// so attention models could not train there; matrix products differentiate everywhere.
pub fn bilinear_resize(maps: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    let [batch, channels, h, w] = maps.dims();
    let device = maps.device();
    let rows = interpolation_matrix(h, height, &device); // [h, height]
    let columns = interpolation_matrix(w, width, &device); // [w, width]
    let across = maps.reshape([batch * channels * h, w]).matmul(columns); // [.. h, width]
    let across = across.reshape([batch * channels, h, width]).swap_dims(1, 2);
    across
        .reshape([batch * channels * width, h])
        .matmul(rows) // [.. width, height]
        .reshape([batch * channels, width, height])
        .swap_dims(1, 2)
        .reshape([batch, channels, height, width])
}

/// The [from, to] matrix whose column j holds the weights of the source samples that output
/// sample j of a half-pixel linear resize from `from` to `to` samples reads.
fn interpolation_matrix(from: usize, to: usize, device: &Device) -> Tensor<2> {
    let mut weights = vec![0f32; from * to];
    let scale = from as f64 / to as f64;
    for j in 0..to {
        let source = ((j as f64 + 0.5) * scale - 0.5).max(0.0);
        let lower = (source.floor() as usize).min(from - 1);
        let upper = (lower + 1).min(from - 1);
        let fraction = (source - lower as f64) as f32;
        weights[lower * to + j] += 1.0 - fraction;
        weights[upper * to + j] += fraction;
    }
    Tensor::from_data(TensorData::new(weights, [from, to]), device)
}

/// 1x1 convolution with the seeds' initialisation: Kaiming normal (fan-in, ReLU gain), zero bias.
fn conv1x1(channels_in: usize, channels_out: usize, bias: bool, device: &Device) -> Conv2d {
    let mut conv = Conv2dConfig::new([channels_in, channels_out], [1, 1])
        .with_bias(bias)
        .with_initializer(Initializer::KaimingNormal { gain: 2f64.sqrt(), fan_out_only: false })
        .init(device);
    conv.bias = conv.bias.map(|_| Initializer::Zeros.init([channels_out], device));
    conv
}

/// Grid attention of the attention VGG: a local map l (pool-3 or pool-4) is scored against
/// the global map g (pool-5) by c = phi(ReLU(W_l l + up(W_g g))), and the local features are
/// pooled with the normalised scores.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    /// 1x1, no bias (as in the seeds).
    w_l: Conv2d,
    /// 1x1, no bias (as in the seeds).
    w_g: Conv2d,
    /// 1x1 to one channel, with bias.
    phi: Conv2d,
    #[module(skip)]
    norm: AttentionNorm,
}

impl AttentionBlock {
    /// `inner_channels` is the common width of W_l and W_g; the seeds use 256 for both blocks
    /// (local 256 from pool-3 and 512 from pool-4, global 512 from pool-5).
    pub fn new(
        local_channels: usize,
        global_channels: usize,
        inner_channels: usize,
        norm: AttentionNorm,
        device: &Device,
    ) -> Self {
        Self {
            w_l: conv1x1(local_channels, inner_channels, false, device),
            w_g: conv1x1(global_channels, inner_channels, false, device),
            phi: conv1x1(inner_channels, 1, true, device),
            norm,
        }
    }

    /// local [batch, Cl, H, W], global [batch, Cg, h, w] -> (pooled local features [batch, Cl],
    /// attention [batch, 1, H, W]).
    pub fn forward(&self, local: Tensor<4>, global: Tensor<4>) -> (Tensor<2>, Tensor<4>) {
        let [batch, _, height, width] = local.dims();
        let local_term = dense(&self.w_l, local.clone());
        let mut global_term = dense(&self.w_g, global);
        let [_, _, global_height, global_width] = global_term.dims();
        if [global_height, global_width] != [height, width] {
            // Half-pixel bilinear upsampling, as torch's align_corners=False in the seeds.
            global_term = bilinear_resize(global_term, height, width);
        }
        let scores = dense(&self.phi, relu(local_term + global_term)).reshape([batch, height * width]);
        let (attention, pooled) = match self.norm {
            AttentionNorm::Softmax => {
                let attention = softmax(scores, 1);
                (attention.clone(), weighted_sum(local, attention))
            }
            AttentionNorm::Sigmoid => {
                let attention = sigmoid(scores);
                let mean = weighted_sum(local, attention.clone()).div_scalar((height * width) as f64);
                (attention, mean)
            }
        };
        (pooled, attention.reshape([batch, 1, height, width]))
    }

    /// The pooled local features as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, local: &str, global: &str) -> Result<String, String> {
        let local_term = graph.conv_bn(local, &self.w_l, None, Activation::Identity)?;
        let global_term = graph.conv_bn(global, &self.w_g, None, Activation::Identity)?;
        // Resizing to the size it has is the identity, so it is not a special case here.
        let global_term = graph.resize_like(&global_term, &local_term);
        let sum = graph.add(&local_term, &global_term);
        let hidden = graph.activation(&sum, Activation::Relu);
        let scores = graph.conv_bn(&hidden, &self.phi, None, Activation::Identity)?;
        Ok(match self.norm {
            AttentionNorm::Softmax => {
                let attention = graph.spatial_softmax(&scores);
                graph.attention_pool(local, &attention, false)
            }
            AttentionNorm::Sigmoid => {
                let attention = graph.node("Sigmoid", &[&scores], vec![]);
                graph.attention_pool(local, &attention, true)
            }
        })
    }
}

/// ChipNet's attention pooling: conv 3x3 -> BN -> ReLU -> conv 3x3 to one score per grid
/// position, softmax over the positions, attention-weighted average of the input map.
#[derive(Module, Debug)]
pub struct ChipAttentionPool {
    conv1: Conv2d,
    bn: BatchNorm,
    conv2: Conv2d,
}

impl ChipAttentionPool {
    /// `channels` is the chip embedding width (2048 for ChipNet's ResNet-50); seed 002 does
    /// not give the inner width.
    pub fn new(channels: usize, inner_channels: usize, device: &Device) -> Self {
        // No bias on either conv: BN removes the first's, and softmax ignores a constant shift.
        let same = |channels_in, channels_out| {
            Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        Self {
            conv1: same(channels, inner_channels),
            bn: BatchNormConfig::new(inner_channels).init(device),
            conv2: same(inner_channels, 1),
        }
    }

    /// map [batch, C, n, n] -> (pooled [batch, C], attention [batch, 1, n, n] summing to 1).
    pub fn forward(&self, map: Tensor<4>) -> (Tensor<2>, Tensor<4>) {
        let [batch, _, height, width] = map.dims();
        let scores = dense(&self.conv2, conv_bn(&self.conv1, &self.bn, Activation::Relu, map.clone()));
        let attention = softmax(scores.reshape([batch, height * width]), 1);
        (weighted_sum(map, attention.clone()), attention.reshape([batch, 1, height, width]))
    }

    /// The pooled chip grid as ONNX nodes (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, map: &str) -> Result<String, String> {
        let hidden = graph.conv_bn(map, &self.conv1, Some(&self.bn), Activation::Relu)?;
        let scores = graph.conv_bn(&hidden, &self.conv2, None, Activation::Identity)?;
        let attention = graph.spatial_softmax(&scores);
        Ok(graph.attention_pool(map, &attention, false))
    }
}

/// Cuts images [B, C, n*chip, n*chip] into non-overlapping chips [B*n*n, C, chip, chip]; chip
/// (row i, column j) of image b is at index b*n*n + i*n + j.
pub fn to_chips(images: Tensor<4>, chip: usize) -> Tensor<4> {
    let [batch, channels, height, width] = images.dims();
    assert!(
        height == width && chip > 0 && height % chip == 0,
        "to_chips: image {height}x{width} is not a square grid of {chip}-pixel chips"
    );
    let n = height / chip;
    // [B, C, i, y, j, x] -> [B, i, j, C, y, x]
    images
        .reshape([batch, channels, n, chip, n, chip])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([batch * n * n, channels, chip, chip])
}

/// Chip embeddings [B*n*n, C] in [`to_chips`] order -> a map [B, C, n, n] whose position
/// (i, j) holds chip (i, j).
pub fn restack_chips(embeddings: Tensor<2>, batch: usize, n: usize) -> Tensor<4> {
    let [count, channels] = embeddings.dims();
    assert_eq!(count, batch * n * n, "restack_chips: {count} embeddings for {batch} images of {n}x{n} chips");
    embeddings.reshape([batch, n, n, channels]).permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::optim::{AdamConfig, GradientsParams};

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Deterministic values in [-1, 1) without a random number generator.
    fn pattern(len: usize, salt: usize) -> Vec<f32> {
        (0..len).map(|k| ((k * 37 + salt * 11) % 23) as f32 / 11.5 - 1.0).collect()
    }

    /// Sums over positions of a [batch, 1, h, w] map.
    fn sums(attention: Tensor<4>) -> Vec<f32> {
        let [batch, _, h, w] = attention.dims();
        values(attention.reshape([batch, h * w]).sum_dim(1))
    }

    /// pooled[b][c] = scale * sum_p attention[b][p] * local[b][c][p], computed by hand.
    fn pooled_by_hand(local: &[f32], attention: &[f32], shape: [usize; 3], scale: f32) -> Vec<f32> {
        let [batch, channels, positions] = shape;
        let mut out = vec![0.0; batch * channels];
        for b in 0..batch {
            for c in 0..channels {
                for p in 0..positions {
                    let (a, l) = (attention[b * positions + p], local[(b * channels + c) * positions + p]);
                    out[b * channels + c] += scale * a * l;
                }
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn bilinear_resize_matches_interpolate_and_has_a_gradient() {
        use burn::tensor::module::interpolate;
        use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
        let device = Device::flex();
        // The attention VGG's sizes (7 -> 14, 7 -> 28), a shrink and uneven ratios.
        for (from, to) in [([7, 7], [14, 14]), ([7, 7], [28, 28]), ([5, 6], [13, 9]), ([6, 4], [3, 4])] {
            let maps = tensor(pattern(2 * 3 * from[0] * from[1], from[0]), [2, 3, from[0], from[1]], &device);
            let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size(to);
            let want = values(interpolate(maps.clone(), options));
            assert_close(&values(bilinear_resize(maps, to[0], to[1])), &want);
        }
        // Every input sample's weights sum to what it contributes: resizing a constant map
        // keeps it constant, and the gradient of the sum spreads over every input sample.
        let ad = device.clone().autodiff();
        let maps = tensor(vec![2.0; 2 * 7 * 7], [1, 2, 7, 7], &ad).require_grad();
        let resized = bilinear_resize(maps.clone(), 14, 14);
        assert_close(&values(resized.clone()), &[2.0; 2 * 14 * 14]);
        let gradient = values(maps.grad(&resized.sum().backward()).unwrap());
        assert!(gradient.iter().all(|&g| g > 0.0), "{gradient:?}");
        assert_close(&[gradient.iter().sum::<f32>()], &[2.0 * 14.0 * 14.0]);
    }

    #[test]
    fn softmax_attention_sums_to_one_and_pools_the_weighted_sum() {
        let device = Device::flex();
        let block = AttentionBlock::new(8, 16, 4, AttentionNorm::Softmax, &device);
        let local_values = pattern(2 * 8 * 6 * 6, 1);
        let local = tensor(local_values.clone(), [2, 8, 6, 6], &device);
        // Global map at a third of the local resolution: upsampled inside.
        let global = tensor(pattern(2 * 16 * 2 * 2, 2), [2, 16, 2, 2], &device);
        let (pooled, attention) = block.forward(local, global);
        assert_eq!(pooled.dims(), [2, 8]);
        assert_eq!(attention.dims(), [2, 1, 6, 6]);
        assert_close(&sums(attention.clone()), &[1.0, 1.0]);
        let want = pooled_by_hand(&local_values, &values(attention), [2, 8, 36], 1.0);
        assert_close(&values(pooled), &want);
    }

    #[test]
    fn sigmoid_attention_is_per_position_and_pools_the_weighted_mean() {
        let device = Device::flex();
        let block = AttentionBlock::new(8, 16, 4, AttentionNorm::Sigmoid, &device);
        let local_values = pattern(2 * 8 * 4 * 4, 3);
        let local = tensor(local_values.clone(), [2, 8, 4, 4], &device);
        let global = tensor(pattern(2 * 16, 4), [2, 16, 1, 1], &device);
        let (pooled, attention) = block.forward(local, global);
        assert_eq!(pooled.dims(), [2, 8]);
        assert_eq!(attention.dims(), [2, 1, 4, 4]);
        let weights = values(attention);
        assert!(weights.iter().all(|&a| a > 0.0 && a < 1.0), "{weights:?}");
        let want = pooled_by_hand(&local_values, &weights, [2, 8, 16], 1.0 / 16.0);
        assert_close(&values(pooled), &want);
    }

    /// A block with W_l = W_g = identity and phi = sum: the score at a position is the sum of
    /// ReLU(local + global) over the channels.
    fn identity_block(channels: usize, norm: AttentionNorm, device: &Device) -> AttentionBlock {
        let mut block = AttentionBlock::new(channels, channels, channels, norm, device);
        let mut eye = vec![0.0; channels * channels];
        for c in 0..channels {
            eye[c * channels + c] = 1.0;
        }
        block.w_l.weight = Param::from_tensor(tensor(eye.clone(), [channels, channels, 1, 1], device));
        block.w_g.weight = Param::from_tensor(tensor(eye, [channels, channels, 1, 1], device));
        block.phi.weight = Param::from_tensor(Tensor::ones([1, channels, 1, 1], device));
        block
    }

    #[test]
    fn the_global_map_chooses_which_local_hot_spot_is_attended() {
        let device = Device::flex();
        // Channel 0 is hot at (1, 2), channel 1 at (3, 0), of a 4x4 map.
        let mut local = vec![0.0; 2 * 16];
        local[4 + 2] = 3.0;
        local[16 + 3 * 4] = 3.0;
        let local = tensor(local, [1, 2, 4, 4], &device);
        for norm in [AttentionNorm::Softmax, AttentionNorm::Sigmoid] {
            let block = identity_block(2, norm, &device);
            // A global vector that suppresses channel 1 leaves only channel 0's spot, and back.
            for (global, hot) in [([0.0, -5.0], 4 + 2), ([-5.0, 0.0], 3 * 4)] {
                let global = tensor(global.to_vec(), [1, 2, 1, 1], &device);
                let (_, attention) = block.forward(local.clone(), global);
                let weights = values(attention);
                let argmax = (0..16).max_by(|&a, &b| weights[a].total_cmp(&weights[b])).unwrap();
                assert_eq!(argmax, hot, "{norm:?} {weights:?}");
            }
        }
    }

    #[test]
    fn chips_are_numbered_image_then_row_then_column_and_restack_back() {
        let device = Device::flex();
        let (batch, channels, n, chip) = (2, 3, 3, 2);
        let side = n * chip;
        // Every pixel encodes its image, channel, row and column.
        let code = |b: usize, c: usize, y: usize, x: usize| (b * 1000 + c * 100 + y * 10 + x) as f32;
        let mut images = Vec::new();
        for b in 0..batch {
            for c in 0..channels {
                for y in 0..side {
                    for x in 0..side {
                        images.push(code(b, c, y, x));
                    }
                }
            }
        }
        let chips = to_chips(tensor(images, [batch, channels, side, side], &device), chip);
        assert_eq!(chips.dims(), [batch * n * n, channels, chip, chip]);
        let got = values(chips.clone());
        for b in 0..batch {
            for i in 0..n {
                for j in 0..n {
                    let index = b * n * n + i * n + j;
                    for c in 0..channels {
                        for y in 0..chip {
                            for x in 0..chip {
                                let at = ((index * channels + c) * chip + y) * chip + x;
                                assert_eq!(got[at], code(b, c, i * chip + y, j * chip + x));
                            }
                        }
                    }
                }
            }
        }

        // Embedding = the chip's top-left pixel per channel; re-stacked, position (i, j) of
        // image b holds chip (i, j) of image b.
        let count = batch * n * n;
        let embeddings = chips.slice([0..count, 0..channels, 0..1, 0..1]).reshape([count, channels]);
        let map = restack_chips(embeddings, batch, n);
        assert_eq!(map.dims(), [batch, channels, n, n]);
        let got = values(map);
        for b in 0..batch {
            for c in 0..channels {
                for i in 0..n {
                    for j in 0..n {
                        assert_eq!(got[((b * channels + c) * n + i) * n + j], code(b, c, i * chip, j * chip));
                    }
                }
            }
        }
    }

    #[test]
    fn chip_attention_sums_to_one_and_averages_the_map() {
        let device = Device::flex();
        let pool = ChipAttentionPool::new(6, 4, &device);
        let map_values = pattern(2 * 6 * 7 * 7, 5);
        let (pooled, attention) = pool.forward(tensor(map_values.clone(), [2, 6, 7, 7], &device));
        assert_eq!(pooled.dims(), [2, 6]);
        assert_eq!(attention.dims(), [2, 1, 7, 7]);
        assert_close(&sums(attention.clone()), &[1.0, 1.0]);
        let want = pooled_by_hand(&map_values, &values(attention), [2, 6, 49], 1.0);
        assert_close(&values(pooled), &want);

        // A map with the same vector everywhere averages to that vector, whatever the weights.
        let constant: Vec<f32> = (0..6).flat_map(|c| vec![c as f32 - 2.5; 49]).collect();
        let (pooled, _) = pool.forward(tensor(constant, [1, 6, 7, 7], &device));
        assert_close(&values(pooled), &[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]);
    }

    #[test]
    fn adam_steps_through_the_attention_block_lower_the_loss() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let (batch, channels, side) = (8, 4, 4);
        let positions = side * side;
        // Channel 0 marks one position per image (a different one each); the others are
        // distractors. The task: pool a 1 in channel 0, i.e. attend to the marked position.
        let mut local = pattern(batch * channels * positions, 6);
        for b in 0..batch {
            for p in 0..positions {
                local[b * channels * positions + p] = if p == (b * 5 + 3) % positions { 1.0 } else { 0.0 };
            }
        }
        let local = tensor(local, [batch, channels, side, side], &device);
        let global = tensor(pattern(batch * channels * 4, 8), [batch, channels, 2, 2], &device);
        let loss_of = |block: &AttentionBlock| {
            let (pooled, _) = block.forward(local.clone(), global.clone());
            pooled.slice([0..batch, 0..1]).sub_scalar(1.0).powf_scalar(2.0).mean()
        };

        let mut block = AttentionBlock::new(channels, channels, 8, AttentionNorm::Softmax, &device);
        let mut optimizer = AdamConfig::new().init();
        let first = loss_of(&block).into_scalar::<f32>();
        for _ in 0..30 {
            let loss = loss_of(&block);
            let grads = GradientsParams::from_grads(loss.backward(), &block);
            block = optimizer.step(0.05, block, grads);
        }
        let last = loss_of(&block).into_scalar::<f32>();
        assert!(last < 0.5 * first, "loss {first} -> {last}");
    }
}
