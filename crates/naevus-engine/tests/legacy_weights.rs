//! Weights saved before EfficientNet-Lite and MobileNetV2 shared one block (the blocks'
//! BatchNorms named bn0, bn1, bn2 as lukemelas's port has them) load with every tensor.
//! Its own test binary: building networks draws from the device's random numbers, which
//! would move the seeded draws of tests running beside it.

use std::path::Path;

use burn::prelude::*;
use burn::store::KeyRemapper;
use burn::store::ModuleSnapshot;
use burn::store::burn_pack::Writer;
use naevus_engine::checkpoint::load_weights;
use naevus_models::{HeadOptions, Network};

/// Weights as a run saved them before EfficientNet-Lite shared MobileNetV2's block: the
/// blocks' BatchNorms named bn0, bn1 and bn2.
fn with_legacy_names(network: &Network) -> Vec<u8> {
    let legacy = KeyRemapper::new()
        .add_pattern(r"(\.blocks\.\d+)\.expand_bn\.", "${1}.bn0.")
        .and_then(|r| r.add_pattern(r"(\.blocks\.\d+)\.depthwise_bn\.", "${1}.bn1."))
        .and_then(|r| r.add_pattern(r"(\.blocks\.\d+)\.project_bn\.", "${1}.bn2."))
        .unwrap();
    let (tensors, renamed) = legacy.remap(network.collect(None, None, false));
    // (new name, old name) pairs.
    assert!(renamed.iter().any(|(legacy, _)| legacy.ends_with(".blocks.3.bn0.running_var")));
    let writer = Writer::new(tensors);
    let mut bytes = vec![0u8; writer.size().unwrap()];
    writer.write_into(&mut bytes).unwrap();
    bytes
}

#[test]
fn a_run_saved_with_lukemelas_block_names_loads_with_every_weight() {
    let device = Device::flex();
    let spec = naevus_models::spec("efficientnet-lite0").unwrap();
    let saved = spec.build_with(HeadOptions::logits(1), &device);
    let bytes = with_legacy_names(&saved);
    let loaded = load_weights(spec.build_with(HeadOptions::logits(1), &device), bytes, Path::new("legacy.bpk")).unwrap();
    let images = Tensor::<4>::random([1, 3, 64, 64], burn::tensor::Distribution::Default, &device);
    let difference = (saved.valid().forward(images.clone()).logits - loaded.valid().forward(images).logits).abs().max().into_scalar::<f32>();
    assert_eq!(difference, 0.0);
}
