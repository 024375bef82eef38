//! timm-compatible weights: where timm (PyTorch Image Models) keeps each tensor of the same
//! network, so that `timm.create_model(name, pretrained=False, num_classes=N)` takes an
//! exported model with `load_state_dict(..., strict=True)` and gives naevus's logits.
//!
//! The tensors are those of naevus's PyTorch-convention safetensors (same shapes and
//! layout); only their keys change, by regex rewrites applied in order, each to the result
//! of the ones before (burn-store's key remapping). Each model file states its own names
//! (`timm_keys`); the registry says which timm model an architecture is
//! ([`ModelSpec::timm`](crate::ModelSpec::timm)). What timm has no counterpart for (attention
//! and chip heads, a hidden FC layer, metadata branches, greyscale input) is refused with the
//! reason.

use crate::backbone::Backbone;
use crate::heads::{Head, PooledHead};
use crate::network::Network;

/// Key rewrites taking `network`'s PyTorch-convention keys (`backbone.ResNet.layer1.0.Basic.conv1.weight`)
/// to timm's (`layer1.0.conv1.weight`), or why timm has no model with the same forward pass.
pub fn key_rewrites(network: &Network) -> Result<Vec<(String, String)>, String> {
    if network.grayscale {
        return Err("greyscale networks take the luminance of the image first, which timm's models do not".into());
    }
    if network.classifier.takes_metadata() {
        return Err("networks with a metadata branch have no timm counterpart".into());
    }
    match &network.head {
        Head::Pooled(PooledHead { hidden: None }) => {}
        Head::Pooled(_) => return Err("a hidden layer between pooling and classifier has no timm counterpart".into()),
        Head::Attention(_) => return Err("attention heads have no timm counterpart".into()),
        Head::Chips(_) => return Err("ChipNet's chip head has no timm counterpart".into()),
    }
    let (mut rewrites, classifier) = match &network.backbone {
        Backbone::ResNet(features) => (features.timm_keys(), "fc."),
        Backbone::EfficientNetLite(features) => (features.timm_keys(), "classifier."),
        Backbone::MobileNetV2(features) => (features.timm_keys(), "classifier."),
        Backbone::SmallCnn(_) | Backbone::Vgg16Bn(_) => return Err("timm has no model with this backbone".into()),
    };
    rewrites.push((r"^classifier\.fc\.".into(), classifier.into()));
    Ok(rewrites)
}

/// Whether a key (after [`key_rewrites`]) is still one of naevus's: a rewrite missed it.
pub fn is_naevus_key(key: &str) -> bool {
    ["backbone.", "head.", "classifier.fc."].iter().any(|prefix| key.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeadOptions;
    use burn::prelude::*;

    #[test]
    fn heads_and_inputs_timm_lacks_are_refused_by_name() {
        let device = Device::flex();
        let build = |name: &str, metadata_features| crate::spec(name).unwrap().build_with(HeadOptions { num_outputs: 1, metadata_features, dropout_samples: 1 }, &device);
        assert!(key_rewrites(&build("small-cnn", 0)).unwrap_err().contains("hidden layer"));
        assert!(key_rewrites(&build("resnet18-gray", 0)).unwrap_err().contains("greyscale"));
        assert!(key_rewrites(&build("resnet18", 2)).unwrap_err().contains("metadata branch"));
        assert!(key_rewrites(&build("attn-vgg16-bn", 0)).unwrap_err().contains("attention"));
        assert!(key_rewrites(&build("chipnet", 0)).unwrap_err().contains("chip head"));
        assert!(key_rewrites(&build("efficientnet-lite0", 0)).is_ok());
    }
}
