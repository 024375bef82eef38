//! Classifier heads over a backbone's feature maps. Everything a head holds is new when a
//! pretrained backbone is fine-tuned, which is what gives the head its own learning rate.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Which head, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadKind {
    /// Global average pooling of the last map, an optional hidden FC layer with ReLU,
    /// dropout, a linear classifier.
    Pooled { hidden: Option<usize>, dropout: f64 },
}

impl HeadKind {
    /// A fresh head over maps with `stage_channels` channels, giving `num_outputs` logits.
    pub fn build(self, stage_channels: &[usize], num_outputs: usize, device: &Device) -> Head {
        let last = *stage_channels.last().expect("a backbone has at least one stage");
        match self {
            HeadKind::Pooled { hidden, dropout } => Head::Pooled(PooledHead::new(last, hidden, dropout, num_outputs, device)),
        }
    }
}

/// Any head.
#[derive(Module, Debug)]
pub enum Head {
    Pooled(PooledHead),
}

impl Head {
    /// Feature maps (shallow to deep) -> logits [batch, outputs] and attention maps.
    pub fn forward(&self, stages: Vec<Tensor<4>>) -> (Tensor<2>, Vec<Tensor<4>>) {
        match self {
            Head::Pooled(head) => (head.forward(stages), Vec::new()),
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
