//! [`Network`]: any model of the registry once built, a backbone, a head pooling its maps and
//! a classifier (with the metadata branch when it has one).

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Gradients;

use crate::backbone::Backbone;
use crate::heads::{Classifier, Head};
use crate::layers::{LayerHook, unchanged};

/// ITU-R BT.601 luma weights.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// What a forward pass gives: logits, plus attention maps for models that have them.
#[derive(Debug, Clone)]
pub struct Output {
    /// [batch, outputs]
    pub logits: Tensor<2>,
    /// One [batch, 1, h, w] map per attention block; empty for models without attention.
    pub attention: Vec<Tensor<4>>,
    /// The image features the classifier reads [batch, width], before any metadata joins
    /// them: what the out-of-domain guard measures.
    pub features: Tensor<2>,
}

/// Any network of the registry: a backbone, a head pooling its maps, a classifier.
#[derive(Module, Debug)]
pub struct Network {
    pub(crate) backbone: Backbone,
    pub(crate) head: Head,
    pub(crate) classifier: Classifier,
    /// Reduce RGB input to its luminance before the backbone.
    pub(crate) grayscale: bool,
}

impl Network {
    /// Normalised images [batch, 3, h, w] -> output, for networks without a metadata branch.
    pub fn forward(&self, images: Tensor<4>) -> Output {
        self.forward_hooked(images, None, &unchanged)
    }

    /// Images and their metadata features [batch, n] (None for image-only networks) -> output.
    pub fn forward_with_metadata(&self, images: Tensor<4>, metadata: Option<Tensor<2>>) -> Output {
        self.forward_hooked(images, metadata, &unchanged)
    }

    /// [`forward_with_metadata`](Self::forward_with_metadata) with `hook` seeing every named
    /// layer's output on its way (see [`crate::layers`]): how explanations read and cut the network.
    pub fn forward_hooked(&self, images: Tensor<4>, metadata: Option<Tensor<2>>, hook: LayerHook) -> Output {
        let images = if self.grayscale {
            let luma = Tensor::<1>::from_floats(LUMA, &images.device()).reshape([1, 3, 1, 1]);
            (images * luma).sum_dim(1)
        } else {
            images
        };
        let (features, attention) = self.head.forward(images, |x| self.backbone.stages(x, hook), hook);
        Output { logits: self.classifier.forward(features.clone(), metadata), attention, features }
    }

    /// Normalised images [batch, 3, side, side] (and the metadata features, for a network
    /// with a metadata branch) -> logits as ONNX nodes (see [`crate::onnx::to_onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, images: &str, side: usize, metadata: Option<&str>) -> Result<String, String> {
        let images = if self.grayscale {
            let luma = graph.constant("luma", &[1, 3, 1, 1], &LUMA);
            let weighted = graph.node("Mul", &[images, &luma], vec![]);
            graph.reduce_sum(&weighted, &[1])
        } else {
            images.to_string()
        };
        let features = self.head.to_onnx(graph, &images, side, &self.backbone)?;
        self.classifier.to_onnx(graph, &features, metadata)
    }

    /// Whether [`forward_with_metadata`](Self::forward_with_metadata) needs metadata features.
    pub fn takes_metadata(&self) -> bool {
        self.classifier.takes_metadata()
    }

    /// How many metadata features [`forward_with_metadata`](Self::forward_with_metadata)
    /// takes per image (0 for an image-only network).
    pub fn metadata_features(&self) -> usize {
        self.classifier.metadata_features()
    }

    /// The backbone's globally pooled last feature map, [batch, channels]: what a linear
    /// probe or an embedding export uses.
    pub fn embedding(&self, images: Tensor<4>) -> Tensor<2> {
        let last = self.backbone.stages(images, &unchanged).pop().expect("a backbone has at least one stage");
        crate::heads::global_average_pool(last)
    }

    /// Takes the gradients of one backward pass apart into the backbone's and the rest's
    /// (head and classifier), so that each can be stepped with its own learning rate.
    pub fn split_gradients(&self, mut gradients: Gradients) -> (GradientsParams, GradientsParams) {
        let backbone = GradientsParams::from_module(&mut gradients, &self.backbone);
        // The backbone's gradients are gone from `gradients`: what is left is the head's.
        let head = GradientsParams::from_grads(gradients, self);
        (backbone, head)
    }

    /// Stops (or restarts) training of the backbone: no gradients, BatchNorm statistics fixed.
    pub fn with_backbone_frozen(mut self, frozen: bool) -> Self {
        self.backbone = if frozen { self.backbone.freeze() } else { self.backbone.unfreeze() };
        self
    }
}
