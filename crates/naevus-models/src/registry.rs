//! One registry of models: a name fixes the architecture, its default input size, its
//! normalisation and where pretrained weights come from (as timm's `create_model` does).
//! train, predict and explain all build networks through here, so they cannot disagree.

use burn::prelude::*;

use crate::resnet::{Depth, ResNet};
use crate::small_cnn::SmallCnn;

/// ImageNet statistics, the convention of torchvision models.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// What a model name stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// Side of the square input the model was designed for (a run may choose another).
    pub input_size: u32,
    /// Per-channel mean and std applied to RGB values scaled to 0..1.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    architecture: Architecture,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Architecture {
    SmallCnn,
    ResNet(Depth),
}

/// Every model naevus knows, in the order `naevus models` lists them.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "small-cnn",
        description: "seed 003's beginner CNN: 3 conv-BN-ReLU-pool blocks, GAP, FC-256, dropout 0.5",
        input_size: 128,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        architecture: Architecture::SmallCnn,
    },
    ModelSpec {
        name: "resnet18",
        description: "ResNet-18, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        architecture: Architecture::ResNet(Depth::R18),
    },
    ModelSpec {
        name: "resnet34",
        description: "ResNet-34, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        architecture: Architecture::ResNet(Depth::R34),
    },
    ModelSpec {
        name: "resnet50",
        description: "ResNet-50 (bottleneck blocks), torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        architecture: Architecture::ResNet(Depth::R50),
    },
];

/// A model name that is not in the registry.
#[derive(Debug, thiserror::Error)]
#[error("unknown model \"{name}\"; known models: {known}")]
pub struct UnknownModel {
    pub name: String,
    pub known: String,
}

/// Looks a model up by name.
pub fn spec(name: &str) -> Result<&'static ModelSpec, UnknownModel> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| UnknownModel {
        name: name.to_string(),
        known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// What a forward pass gives: logits, plus attention maps for models that have them.
#[derive(Debug, Clone)]
pub struct Output {
    /// [batch, outputs]
    pub logits: Tensor<2>,
    /// One [batch, 1, h, w] map per attention block; empty for models without attention.
    pub attention: Vec<Tensor<4>>,
}

/// Any network of the registry.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Network {
    SmallCnn(SmallCnn),
    ResNet(ResNet),
}

impl Network {
    /// Normalised images [batch, 3, h, w] -> output.
    pub fn forward(&self, images: Tensor<4>) -> Output {
        let logits = match self {
            Network::SmallCnn(m) => m.forward(images),
            Network::ResNet(m) => m.forward(images),
        };
        Output { logits, attention: Vec::new() }
    }
}

impl ModelSpec {
    /// A freshly initialised network with `num_outputs` logits.
    pub fn build(&self, num_outputs: usize, device: &Device) -> Network {
        match self.architecture {
            Architecture::SmallCnn => Network::SmallCnn(SmallCnn::new(3, num_outputs, device)),
            Architecture::ResNet(depth) => Network::ResNet(ResNet::new(depth, 3, num_outputs, device)),
        }
    }

    /// Number of trainable values of the network with `num_outputs` logits.
    pub fn parameter_count(&self, num_outputs: usize) -> usize {
        // Parameters are lazy: counting them allocates nothing.
        self.build(num_outputs, &Device::default()).num_params()
    }
}
