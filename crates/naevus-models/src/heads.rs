//! Classifier heads over a backbone's feature maps. Everything a head holds is new when a
//! pretrained backbone is fine-tuned, which is what gives the head its own learning rate.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::attention::{AttentionBlock, AttentionNorm, ChipAttentionPool};
use crate::layers::{Layer, LayerHook};

/// Common width of W_l and W_g in the attention blocks (seeds 000/001), and of the chip
/// attention's hidden convolution.
const ATTENTION_WIDTH: usize = 256;

/// Which head, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadKind {
    /// Global average pooling of the last map, an optional hidden FC layer with ReLU,
    /// dropout, a linear classifier.
    Pooled { hidden: Option<usize>, dropout: f64 },
    /// Attention VGG head (seeds 000/001): two attention blocks pool the second- and
    /// third-last maps under the guidance of the last; the classifier sees
    /// [GAP(last), g1, g2].
    Attention { norm: AttentionNorm, dropout: f64 },
    /// ChipNet head (seed 002): the backbone embeds each `chip`-pixel chip of the image on
    /// its own; the grid of embeddings is pooled by learned attention into one vector.
    Chips { chip: usize, dropout: f64 },
}

impl HeadKind {
    /// A fresh head over maps with `stage_channels` channels, giving `num_outputs` logits.
    pub fn build(self, stage_channels: &[usize], num_outputs: usize, device: &Device) -> Head {
        let last = *stage_channels.last().expect("a backbone has at least one stage");
        match self {
            HeadKind::Pooled { hidden, dropout } => Head::Pooled(PooledHead::new(last, hidden, dropout, num_outputs, device)),
            HeadKind::Attention { norm, dropout } => {
                let n = stage_channels.len();
                assert!(n >= 3, "an attention head needs a backbone with at least three stages");
                let (local1, local2) = (stage_channels[n - 3], stage_channels[n - 2]);
                Head::Attention(AttentionHead {
                    attention1: AttentionBlock::new(local1, last, ATTENTION_WIDTH, norm, device),
                    attention2: AttentionBlock::new(local2, last, ATTENTION_WIDTH, norm, device),
                    dropout: DropoutConfig::new(dropout).init(),
                    fc: LinearConfig::new(last + local1 + local2, num_outputs).init(device),
                })
            }
            HeadKind::Chips { chip, dropout } => Head::Chips(ChipHead {
                pool: ChipAttentionPool::new(last, ATTENTION_WIDTH, device),
                dropout: DropoutConfig::new(dropout).init(),
                fc: LinearConfig::new(last, num_outputs).init(device),
                chip,
            }),
        }
    }
}

/// Any head.
#[derive(Module, Debug)]
pub enum Head {
    Pooled(PooledHead),
    Attention(AttentionHead),
    Chips(ChipHead),
}

impl Head {
    /// Images -> logits [batch, outputs] and attention maps, through `backbone_stages`;
    /// `hook` sees the head's own named layers (ChipNet's chip grid).
    pub fn forward(
        &self,
        images: Tensor<4>,
        backbone_stages: impl Fn(Tensor<4>) -> Vec<Tensor<4>>,
        hook: LayerHook,
    ) -> (Tensor<2>, Vec<Tensor<4>>) {
        match self {
            Head::Pooled(head) => (head.forward(backbone_stages(images)), Vec::new()),
            Head::Attention(head) => head.forward(backbone_stages(images)),
            Head::Chips(head) => head.forward(images, backbone_stages, hook),
        }
    }
}

/// Mean over the spatial positions: [batch, channels, h, w] -> [batch, channels].
pub fn global_average_pool(map: Tensor<4>) -> Tensor<2> {
    map.mean_dim(3).mean_dim(2).flatten(1, 3)
}

/// GAP -> [FC + ReLU] -> dropout -> FC.
#[derive(Module, Debug)]
pub struct PooledHead {
    hidden: Option<Linear>,
    dropout: Dropout,
    fc: Linear,
}

impl PooledHead {
    fn new(channels: usize, hidden: Option<usize>, dropout: f64, num_outputs: usize, device: &Device) -> Self {
        Self {
            hidden: hidden.map(|width| LinearConfig::new(channels, width).init(device)),
            dropout: DropoutConfig::new(dropout).init(),
            fc: LinearConfig::new(hidden.unwrap_or(channels), num_outputs).init(device),
        }
    }

    fn forward(&self, mut stages: Vec<Tensor<4>>) -> Tensor<2> {
        let mut x = global_average_pool(stages.pop().expect("a backbone has at least one stage"));
        if let Some(hidden) = &self.hidden {
            x = relu(hidden.forward(x));
        }
        self.fc.forward(self.dropout.forward(x))
    }
}

/// Attention over two intermediate maps guided by the last one.
#[derive(Module, Debug)]
pub struct AttentionHead {
    attention1: AttentionBlock,
    attention2: AttentionBlock,
    dropout: Dropout,
    fc: Linear,
}

impl AttentionHead {
    fn forward(&self, mut stages: Vec<Tensor<4>>) -> (Tensor<2>, Vec<Tensor<4>>) {
        let global = stages.pop().expect("three stages");
        let local2 = stages.pop().expect("three stages");
        let local1 = stages.pop().expect("three stages");
        let (g1, a1) = self.attention1.forward(local1, global.clone());
        let (g2, a2) = self.attention2.forward(local2, global.clone());
        let features = Tensor::cat(vec![global_average_pool(global), g1, g2], 1);
        (self.fc.forward(self.dropout.forward(features)), vec![a1, a2])
    }
}

/// Chip embeddings re-stacked into a grid, attention-pooled, classified.
#[derive(Module, Debug)]
pub struct ChipHead {
    pool: ChipAttentionPool,
    dropout: Dropout,
    fc: Linear,
    /// Side of a chip in pixels; the image side must be a multiple of it.
    chip: usize,
}

impl ChipHead {
    fn forward(
        &self,
        images: Tensor<4>,
        backbone_stages: impl Fn(Tensor<4>) -> Vec<Tensor<4>>,
        hook: LayerHook,
    ) -> (Tensor<2>, Vec<Tensor<4>>) {
        let [batch, _, height, width] = images.dims();
        assert!(
            height == width && height % self.chip == 0,
            "chipnet needs square images whose side is a multiple of {} pixels, got {height}x{width}",
            self.chip
        );
        let grid = height / self.chip;
        let mut stages = backbone_stages(crate::attention::to_chips(images, self.chip));
        let embeddings = global_average_pool(stages.pop().expect("a backbone has at least one stage"));
        let map = hook(Layer::ChipGrid, crate::attention::restack_chips(embeddings, batch, grid));
        let (pooled, attention) = self.pool.forward(map);
        (self.fc.forward(self.dropout.forward(pooled)), vec![attention])
    }
}
