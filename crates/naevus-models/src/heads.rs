//! Heads over a backbone's feature maps: each pools the maps into one feature vector per
//! image, which the [`Classifier`] (optionally joined with patient metadata) turns into
//! logits. Everything here is new when a pretrained backbone is fine-tuned, which is what
//! gives the head its own learning rate.

use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, silu};

use crate::attention::{AttentionBlock, AttentionNorm, ChipAttentionPool};
use crate::backbone::Backbone;
use crate::onnx::Graph;
use crate::layers::{Layer, LayerHook};

/// Common width of W_l and W_g in the attention blocks (seeds 000/001), and of the chip
/// attention's hidden convolution.
const ATTENTION_WIDTH: usize = 256;

/// Which head, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadKind {
    /// Global average pooling of the last map and an optional hidden FC layer with ReLU.
    Pooled { hidden: Option<usize> },
    /// Attention VGG head (seeds 000/001): two attention blocks pool the second- and
    /// third-last maps under the guidance of the last; the features are [GAP(last), g1, g2].
    Attention { norm: AttentionNorm },
    /// ChipNet head (seed 002): the backbone embeds each `chip`-pixel chip of the image on
    /// its own; the grid of embeddings is pooled by learned attention into one vector.
    Chips { chip: usize },
}

impl HeadKind {
    /// A fresh head over maps with `stage_channels` channels, and the width of its features.
    pub fn build(self, stage_channels: &[usize], device: &Device) -> (Head, usize) {
        let last = *stage_channels.last().expect("a backbone has at least one stage");
        match self {
            HeadKind::Pooled { hidden } => {
                let head = PooledHead { hidden: hidden.map(|width| LinearConfig::new(last, width).init(device)) };
                (Head::Pooled(head), hidden.unwrap_or(last))
            }
            HeadKind::Attention { norm } => {
                let n = stage_channels.len();
                assert!(n >= 3, "an attention head needs a backbone with at least three stages");
                let (local1, local2) = (stage_channels[n - 3], stage_channels[n - 2]);
                let head = AttentionHead {
                    attention1: AttentionBlock::new(local1, last, ATTENTION_WIDTH, norm, device),
                    attention2: AttentionBlock::new(local2, last, ATTENTION_WIDTH, norm, device),
                };
                (Head::Attention(head), last + local1 + local2)
            }
            HeadKind::Chips { chip } => (Head::Chips(ChipHead { pool: ChipAttentionPool::new(last, ATTENTION_WIDTH, device), chip }), last),
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
    /// Images -> features [batch, width] and attention maps, through `backbone_stages`;
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

impl Head {
    /// The image features as ONNX nodes over `images` ([batch, channels, side, side]),
    /// through `backbone`, as [`forward`](Self::forward) computes them.
    pub(crate) fn to_onnx(&self, graph: &mut Graph, images: &str, side: usize, backbone: &Backbone) -> Result<String, String> {
        match self {
            Head::Pooled(head) => {
                let last = backbone.to_onnx(graph, images)?.pop().ok_or("a backbone without stages")?;
                let x = graph.global_average_pool(&last);
                Ok(match &head.hidden {
                    Some(hidden) => {
                        let y = graph.linear(&x, hidden)?;
                        graph.activation(&y, crate::activation::Activation::Relu)
                    }
                    None => x,
                })
            }
            Head::Attention(head) => {
                let stages = backbone.to_onnx(graph, images)?;
                let [.., local1, local2, global] = stages.as_slice() else { return Err("an attention head needs three stages".into()) };
                let g1 = head.attention1.to_onnx(graph, local1, global)?;
                let g2 = head.attention2.to_onnx(graph, local2, global)?;
                let pooled = graph.global_average_pool(global);
                Ok(graph.concat(&[&pooled, &g1, &g2], 1))
            }
            Head::Chips(head) => {
                if side % head.chip != 0 {
                    return Err(format!("chipnet needs a side that is a multiple of {} pixels, got {side}", head.chip));
                }
                let (n, chip) = ((side / head.chip) as i64, head.chip as i64);
                // to_chips: [b, c, side, side] -> [b, c, n, chip, n, chip] -> [b, n, n, c, chip, chip]
                // -> [b n n, c, chip, chip].
                let split = graph.reshape(images, &[0, 0, n, chip, n, chip]);
                let grid = graph.transpose(&split, &[0, 2, 4, 1, 3, 5]);
                let (rest, channels, sides) = (graph.constant_i64("shape", &[1], &[-1]), graph.shape(images, 1, 2), graph.constant_i64("shape", &[2], &[chip, chip]));
                let chips = graph.reshape_to(&grid, &[&rest, &channels, &sides]);
                let last = backbone.to_onnx(graph, &chips)?.pop().ok_or("a backbone without stages")?;
                let embeddings = graph.global_average_pool(&last);
                // restack_chips: [b n n, c'] -> [b, n, n, c'] -> [b, c', n, n].
                let (leading, width) = (graph.constant_i64("shape", &[3], &[-1, n, n]), graph.shape(&embeddings, 1, 2));
                let stacked = graph.reshape_to(&embeddings, &[&leading, &width]);
                let map = graph.transpose(&stacked, &[0, 3, 1, 2]);
                head.pool.to_onnx(graph, &map)
            }
        }
    }
}

/// Mean over the spatial positions: [batch, channels, h, w] -> [batch, channels].
pub fn global_average_pool(map: Tensor<4>) -> Tensor<2> {
    map.mean_dim(3).mean_dim(2).flatten(1, 3)
}

/// GAP -> [FC + ReLU].
#[derive(Module, Debug)]
pub struct PooledHead {
    pub(crate) hidden: Option<Linear>,
}

impl PooledHead {
    fn forward(&self, mut stages: Vec<Tensor<4>>) -> Tensor<2> {
        let x = global_average_pool(stages.pop().expect("a backbone has at least one stage"));
        match &self.hidden {
            Some(hidden) => relu(hidden.forward(x)),
            None => x,
        }
    }
}

/// Attention over two intermediate maps guided by the last one.
#[derive(Module, Debug)]
pub struct AttentionHead {
    attention1: AttentionBlock,
    attention2: AttentionBlock,
}

impl AttentionHead {
    fn forward(&self, mut stages: Vec<Tensor<4>>) -> (Tensor<2>, Vec<Tensor<4>>) {
        let global = stages.pop().expect("three stages");
        let local2 = stages.pop().expect("three stages");
        let local1 = stages.pop().expect("three stages");
        let (g1, a1) = self.attention1.forward(local1, global.clone());
        let (g2, a2) = self.attention2.forward(local2, global.clone());
        (Tensor::cat(vec![global_average_pool(global), g1, g2], 1), vec![a1, a2])
    }
}

/// Chip embeddings re-stacked into a grid and attention-pooled.
#[derive(Module, Debug)]
pub struct ChipHead {
    pool: ChipAttentionPool,
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
        (pooled, vec![attention])
    }
}

/// Width of the metadata branch's hidden and output layers (seed 004: n -> 512 -> 128).
const METADATA_HIDDEN: usize = 512;
const METADATA_OUT: usize = 128;

/// How the image features become logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierConfig {
    pub num_outputs: usize,
    /// Dropout before the final linear layer.
    pub dropout: f64,
    /// Dropout masks whose logits are averaged in training (multi-sample dropout, seed
    /// 004 uses 5); 1 is plain dropout. Inference is the same either way.
    pub dropout_samples: usize,
    /// Metadata features per image; 0: no metadata branch.
    pub metadata_features: usize,
}

/// Image features, joined with the metadata branch's output when there is one, through
/// dropout into a linear layer.
#[derive(Module, Debug)]
pub struct Classifier {
    metadata: Option<MetadataBranch>,
    dropout: Dropout,
    dropout_samples: usize,
    fc: Linear,
}

impl Classifier {
    pub fn new(features: usize, config: ClassifierConfig, device: &Device) -> Self {
        let metadata = (config.metadata_features > 0).then(|| MetadataBranch::new(config.metadata_features, device));
        let width = features + if metadata.is_some() { METADATA_OUT } else { 0 };
        Self {
            metadata,
            dropout: DropoutConfig::new(config.dropout).init(),
            dropout_samples: config.dropout_samples.max(1),
            fc: LinearConfig::new(width, config.num_outputs).init(device),
        }
    }

    /// The logits as ONNX nodes over the image features and, for a classifier with a
    /// metadata branch, the graph's `metadata` input. Dropout is the identity at inference.
    pub(crate) fn to_onnx(&self, graph: &mut Graph, features: &str, metadata: Option<&str>) -> Result<String, String> {
        let x = match (&self.metadata, metadata) {
            (Some(branch), Some(metadata)) => {
                let joined = branch.to_onnx(graph, metadata)?;
                graph.concat(&[features, &joined], 1)
            }
            (None, None) => features.to_string(),
            (Some(_), None) => return Err("this network has a metadata branch, but the graph has no metadata input".into()),
            (None, Some(_)) => return Err("this network has no metadata branch, but the graph has a metadata input".into()),
        };
        graph.linear(&x, &self.fc)
    }

    /// Whether the classifier expects metadata features next to the image.
    pub fn takes_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// How many metadata features the classifier takes (0 without a metadata branch).
    pub fn metadata_features(&self) -> usize {
        self.metadata.as_ref().map_or(0, |branch| branch.fc1.weight.val().dims()[0])
    }

    /// Features [batch, width] (and metadata [batch, n] when the classifier has a branch
    /// for it) -> logits [batch, outputs].
    pub fn forward(&self, features: Tensor<2>, metadata: Option<Tensor<2>>) -> Tensor<2> {
        let x = match (&self.metadata, metadata) {
            (Some(branch), Some(metadata)) => Tensor::cat(vec![features, branch.forward(metadata)], 1),
            (None, None) => features,
            (Some(_), None) => panic!("this network has a metadata branch: pass the metadata features"),
            (None, Some(_)) => panic!("this network has no metadata branch, but metadata features were passed"),
        };
        if self.dropout_samples == 1 || !x.device().is_autodiff() {
            return self.fc.forward(self.dropout.forward(x));
        }
        // Multi-sample dropout: several masks over the same features, logits averaged.
        let samples: Vec<Tensor<2>> = (0..self.dropout_samples).map(|_| self.fc.forward(self.dropout.forward(x.clone()))).collect();
        Tensor::stack::<3>(samples, 0).mean_dim(0).squeeze_dim(0)
    }
}

/// Seed 004's metadata branch: Linear -> BN -> Swish -> Dropout(0.3) -> Linear -> BN -> Swish.
#[derive(Module, Debug)]
pub struct MetadataBranch {
    fc1: Linear,
    bn1: BatchNorm,
    dropout: Dropout,
    fc2: Linear,
    bn2: BatchNorm,
}

impl MetadataBranch {
    fn new(features: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(features, METADATA_HIDDEN).init(device),
            bn1: BatchNormConfig::new(METADATA_HIDDEN).init(device),
            dropout: DropoutConfig::new(0.3).init(),
            fc2: LinearConfig::new(METADATA_HIDDEN, METADATA_OUT).init(device),
            bn2: BatchNormConfig::new(METADATA_OUT).init(device),
        }
    }

    fn forward(&self, metadata: Tensor<2>) -> Tensor<2> {
        let x = self.dropout.forward(silu(self.bn1.forward(self.fc1.forward(metadata))));
        silu(self.bn2.forward(self.fc2.forward(x)))
    }

    /// The branch as ONNX nodes, batch norms folded into the linear layers before them.
    fn to_onnx(&self, graph: &mut Graph, metadata: &str) -> Result<String, String> {
        let x = graph.linear_bn(metadata, &self.fc1, Some(&self.bn1))?;
        let x = graph.swish(&x);
        let x = graph.linear_bn(&x, &self.fc2, Some(&self.bn2))?;
        Ok(graph.swish(&x))
    }
}
