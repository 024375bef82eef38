//! Every registered model builds, runs forward at a small input size and has the
//! parameter count of its reference implementation.

use burn::prelude::*;
use std::cell::RefCell;

use naevus_models::{Layer, MODELS, spec};

#[test]
fn every_model_gives_one_logit_row_per_image() {
    let device = Device::flex();
    for model in MODELS {
        let network = model.build(2, &device).valid();
        let images = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        let out = network.forward(images);
        assert_eq!(out.logits.dims(), [2, 2], "{}", model.name);
        let values = out.logits.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{}", model.name);
    }
}

#[test]
fn parameter_counts_match_torchvision() {
    // torchvision's counts with a 1000-class head: resnet18 11,689,512; resnet34 21,797,672;
    // resnet50 25,557,032. BatchNorm running statistics are buffers there, not parameters.
    let with_running_stats = |name: &str| spec(name).unwrap().parameter_count(1000);
    let bn_buffers = |channels: usize| 2 * channels;
    // resnet18 BN channels: 64 + 4*64 + (4*128+128) + (4*256+256) + (4*512+512) = 4800
    assert_eq!(with_running_stats("resnet18"), 11_689_512 + bn_buffers(4800));
    // small CNN: 896 + 64 + 18496 + 128 + 73856 + 256 + 33024 + 257 (+ running stats 2*(32+64+128))
    assert_eq!(spec("small-cnn").unwrap().parameter_count(1), 896 + 64 + 18_496 + 128 + 73_856 + 256 + 33_024 + 257 + 2 * 224);
}

#[test]
fn unknown_model_names_the_known_ones() {
    let err = spec("resnet19").unwrap_err().to_string();
    assert!(err.contains("resnet19") && err.contains("resnet18") && err.contains("small-cnn"), "{err}");
}

#[test]
fn every_model_names_its_layers_and_the_hook_sees_each_one() {
    let device = Device::flex();
    for model in MODELS {
        let names = model.layer_names();
        assert!(names.contains(&model.explain_layer), "{}: default layer {} not in {names:?}", model.name, model.explain_layer);
        let layers: Vec<Layer> = names.iter().map(|name| model.layer(name).unwrap()).collect();

        let seen = RefCell::new(Vec::new());
        let record = |layer: Layer, map: Tensor<4>| {
            seen.borrow_mut().push(layer);
            map
        };
        let network = model.build(1, &device).valid();
        let output = network.forward_hooked(Tensor::<4>::zeros([1, 3, 64, 64], &device), None, &record);
        // Each named layer passes the hook exactly once (ChipNet's backbone stages see
        // single chips and are not named).
        for layer in &layers {
            assert_eq!(seen.borrow().iter().filter(|l| *l == layer).count(), 1, "{}: {layer:?} in {:?}", model.name, seen.borrow());
        }
        assert_eq!(output.attention.len(), model.attention_layers().len(), "{}", model.name);
    }
}

#[test]
fn unknown_layer_names_the_known_ones() {
    let err = spec("resnet18").unwrap().layer("layer5").unwrap_err().to_string();
    assert!(err.contains("layer5") && err.contains("layer1, layer2, layer3, layer4"), "{err}");
    assert_eq!(spec("attn-vgg16-bn").unwrap().attention_layers(), vec!["pool3", "pool4"]);
    assert_eq!(spec("chipnet").unwrap().layer("chip-grid").unwrap(), Layer::ChipGrid);
}

#[test]
fn the_default_explain_layer_is_the_deepest_with_six_cells_a_side() {
    let lite0 = naevus_models::spec("efficientnet-lite0").unwrap();
    // Strides 4, 8, 16, 32: at 96 px the last stage is 3x3, the one before 6x6.
    assert_eq!(lite0.explain_layer_at(96), "stage3");
    assert_eq!(lite0.explain_layer_at(224), "stage4");
    assert_eq!(lite0.explain_layer_at(16), "stage1");
    assert_eq!(naevus_models::spec("small-cnn").unwrap().explain_layer_at(32), "block2");
    assert_eq!(naevus_models::spec("resnet18").unwrap().explain_layer_at(192), "layer4");
}
