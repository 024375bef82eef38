//! Feature extractors. Every backbone turns images into a list of feature maps, shallow to
//! deep, one per resolution level (strides 4, 8, 16 and 32 for the ImageNet architectures);
//! the last is the final map. Heads (heads.rs) pool the last map or attend over earlier ones,
//! so any head works on any backbone.

use burn::prelude::*;

use crate::efficientnet::{EfficientNetLiteFeatures, Variant};
use crate::layers::LayerHook;
use crate::mobilenet_v2::MobileNetV2Features;
use crate::resnet::{Depth, ResNetFeatures};
use crate::small_cnn::SmallCnnFeatures;
use crate::vgg::Vgg16BnFeatures;

/// Which feature extractor, with what it needs to be built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BackboneKind {
    SmallCnn,
    ResNet(Depth),
    EfficientNetLite(Variant),
    MobileNetV2,
    Vgg16Bn,
}

impl BackboneKind {
    /// Channels of each map of [`Backbone::stages`].
    pub fn stage_channels(self) -> Vec<usize> {
        match self {
            BackboneKind::SmallCnn => SmallCnnFeatures::STAGE_CHANNELS.to_vec(),
            BackboneKind::ResNet(depth) => ResNetFeatures::stage_channels(depth),
            BackboneKind::EfficientNetLite(variant) => EfficientNetLiteFeatures::stage_channels(variant),
            BackboneKind::MobileNetV2 => MobileNetV2Features::stage_channels().to_vec(),
            BackboneKind::Vgg16Bn => Vgg16BnFeatures::stage_channels().to_vec(),
        }
    }

    /// Names of the maps of [`Backbone::stages`], shallow to deep: what `naevus explain
    /// --layer` accepts. They follow each architecture's own vocabulary (torchvision's
    /// layer1..4, the seeds' pool-3..5); EfficientNet and MobileNet stage K ends at stride
    /// 2^(K+1).
    pub fn stage_names(self) -> &'static [&'static str] {
        match self {
            BackboneKind::SmallCnn => &["block1", "block2", "block3"],
            BackboneKind::ResNet(_) => &["layer1", "layer2", "layer3", "layer4"],
            BackboneKind::EfficientNetLite(_) | BackboneKind::MobileNetV2 => &["stage1", "stage2", "stage3", "stage4"],
            BackboneKind::Vgg16Bn => &["pool2", "pool3", "pool4", "pool5"],
        }
    }

    /// How many input pixels each cell of each of [`stage_names`](Self::stage_names)'s maps
    /// spans.
    pub fn stage_strides(self) -> &'static [u32] {
        match self {
            BackboneKind::SmallCnn => &[2, 4, 8],
            BackboneKind::ResNet(_) | BackboneKind::EfficientNetLite(_) | BackboneKind::MobileNetV2 | BackboneKind::Vgg16Bn => &[4, 8, 16, 32],
        }
    }

    /// A freshly initialised backbone taking `in_channels` image channels.
    pub fn build(self, in_channels: usize, device: &Device) -> Backbone {
        let rgb_only = |name: &str| assert_eq!(in_channels, 3, "{name} takes RGB images");
        match self {
            BackboneKind::SmallCnn => Backbone::SmallCnn(SmallCnnFeatures::new(in_channels, device)),
            BackboneKind::ResNet(depth) => Backbone::ResNet(ResNetFeatures::new(depth, in_channels, device)),
            BackboneKind::EfficientNetLite(variant) => {
                rgb_only("EfficientNet-Lite");
                Backbone::EfficientNetLite(EfficientNetLiteFeatures::new(variant, device))
            }
            BackboneKind::MobileNetV2 => {
                rgb_only("MobileNetV2");
                Backbone::MobileNetV2(MobileNetV2Features::new(device))
            }
            BackboneKind::Vgg16Bn => {
                rgb_only("VGG16-BN");
                Backbone::Vgg16Bn(Vgg16BnFeatures::new(device))
            }
        }
    }
}

/// Any feature extractor.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Backbone {
    SmallCnn(SmallCnnFeatures),
    ResNet(ResNetFeatures),
    EfficientNetLite(EfficientNetLiteFeatures),
    MobileNetV2(MobileNetV2Features),
    Vgg16Bn(Vgg16BnFeatures),
}

impl Backbone {
    /// The feature maps of [`stages`](Self::stages) as ONNX nodes over `images` (see [`crate::onnx`]).
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, images: &str) -> Result<Vec<String>, String> {
        match self {
            Backbone::SmallCnn(m) => m.to_onnx(graph, images),
            Backbone::ResNet(m) => m.to_onnx(graph, images),
            Backbone::EfficientNetLite(m) => m.to_onnx(graph, images),
            Backbone::MobileNetV2(m) => m.to_onnx(graph, images),
            Backbone::Vgg16Bn(m) => m.to_onnx(graph, images),
        }
    }

    /// Images [batch, channels, h, w] -> feature maps, shallow to deep; `hook` sees each
    /// map before the deeper layers use it (see [`crate::layers`]).
    pub fn stages(&self, images: Tensor<4>, hook: LayerHook) -> Vec<Tensor<4>> {
        match self {
            Backbone::SmallCnn(m) => m.stages(images, hook),
            Backbone::ResNet(m) => m.stages(images, hook),
            Backbone::EfficientNetLite(m) => m.stages(images, hook),
            Backbone::MobileNetV2(m) => m.stages(images, hook),
            Backbone::Vgg16Bn(m) => m.stages(images, hook),
        }
    }
}
