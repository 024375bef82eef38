//! How the ImageNet checkpoints' keys map onto naevus's module paths: regex rewrites applied
//! in order, each to the result of the ones before.

use crate::inverted_residual::EFFICIENTNET_BLOCK_KEYS;

/// lukemelas EfficientNet-PyTorch keys start every name with "_"; the classifier `_fc` is
/// our head's `fc`, the rest the backbone, whose blocks name their BatchNorms as the shared
/// inverted residual block does.
pub(super) const LUKEMELAS_KEYS: &[(&str, &str)] = &[
    (r"^_fc\.", "classifier.fc."),
    (r"^_", "backbone."),
    (r"\._", "."),
    EFFICIENTNET_BLOCK_KEYS[0],
    EFFICIENTNET_BLOCK_KEYS[1],
    EFFICIENTNET_BLOCK_KEYS[2],
];

/// torchvision's ResNet keys (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`/`.1`,
/// `fc`) onto ours: the same names under `backbone.`, the shortcut's conv and BN named, the
/// classifier `fc` our head's.
pub(super) const TORCHVISION_RESNET_KEYS: &[(&str, &str)] = &[
    (r"^fc\.", "classifier.fc."),
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
    (r"^(conv1|bn1|layer[1-4])\.", "backbone.${1}."),
];

/// torchvision's `vgg16_bn.features.N` (conv at N, BN at N + 1; ReLU and max-pool between
/// carry no weights) onto the blocks of [`crate::vgg::Vgg16BnFeatures`].
pub(super) const TORCHVISION_VGG16_BN_KEYS: &[(&str, &str)] = &[
    (r"^features\.0\.", "backbone.blocks.0.layers.0.conv."),
    (r"^features\.1\.", "backbone.blocks.0.layers.0.bn."),
    (r"^features\.3\.", "backbone.blocks.0.layers.1.conv."),
    (r"^features\.4\.", "backbone.blocks.0.layers.1.bn."),
    (r"^features\.7\.", "backbone.blocks.1.layers.0.conv."),
    (r"^features\.8\.", "backbone.blocks.1.layers.0.bn."),
    (r"^features\.10\.", "backbone.blocks.1.layers.1.conv."),
    (r"^features\.11\.", "backbone.blocks.1.layers.1.bn."),
    (r"^features\.14\.", "backbone.blocks.2.layers.0.conv."),
    (r"^features\.15\.", "backbone.blocks.2.layers.0.bn."),
    (r"^features\.17\.", "backbone.blocks.2.layers.1.conv."),
    (r"^features\.18\.", "backbone.blocks.2.layers.1.bn."),
    (r"^features\.20\.", "backbone.blocks.2.layers.2.conv."),
    (r"^features\.21\.", "backbone.blocks.2.layers.2.bn."),
    (r"^features\.24\.", "backbone.blocks.3.layers.0.conv."),
    (r"^features\.25\.", "backbone.blocks.3.layers.0.bn."),
    (r"^features\.27\.", "backbone.blocks.3.layers.1.conv."),
    (r"^features\.28\.", "backbone.blocks.3.layers.1.bn."),
    (r"^features\.30\.", "backbone.blocks.3.layers.2.conv."),
    (r"^features\.31\.", "backbone.blocks.3.layers.2.bn."),
    (r"^features\.34\.", "backbone.blocks.4.layers.0.conv."),
    (r"^features\.35\.", "backbone.blocks.4.layers.0.bn."),
    (r"^features\.37\.", "backbone.blocks.4.layers.1.conv."),
    (r"^features\.38\.", "backbone.blocks.4.layers.1.bn."),
    (r"^features\.40\.", "backbone.blocks.4.layers.2.conv."),
    (r"^features\.41\.", "backbone.blocks.4.layers.2.bn."),
];
