//! torchvision's ImageNet weight files load into naevus's networks and compute what
//! torchvision computes with them. The genuine files cannot be downloaded in CI, so the test
//! loads stand-ins in exactly their layout (scripts/torchvision-standins.sh: the same keys,
//! shapes and dtypes, random values) through the loader `train --pretrained` uses, and
//! compares the outputs on two CC0 ISIC 2017 images with those torchvision 0.20.1 computed
//! from the same files once (scripts/torchvision-reference.py, into
//! tests/reference/torchvision/torchvision.json): the ResNets' 1000 logits, VGG16-BN's pool-5
//! features, within 1e-3.
//!
//! The stand-ins are made (once; about 940 MB under target/torchvision-standins) by running
//! the script, which needs python3 with venv and pip, and PyPI for numpy.
//! NAEVUS_TORCHVISION_STANDINS=DIR uses the files in DIR instead (e.g. the same state dicts
//! re-saved by torch.save), without checking that they are the script's.

mod standins;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::prelude::*;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ModuleSnapshot, PathFilter, bridge};
use naevus_data::{Normalize, load_rgb, to_chw_f32};
use naevus_engine::weights;
use naevus_models::registry::WeightsSource;
use naevus_models::{HeadOptions, Layer, ModelSpec, Network};
use sha2::{Digest, Sha256};
use standins::standins;

const TOLERANCE: f64 = 1e-3;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/torchvision")
}

fn reference() -> &'static serde_json::Value {
    static REFERENCE: OnceLock<serde_json::Value> = OnceLock::new();
    REFERENCE.get_or_init(|| serde_json::from_str(&std::fs::read_to_string(reference_dir().join("torchvision.json")).unwrap()).unwrap())
}

/// The stand-in `file`, checked to be the one the reference outputs were computed from.
fn standin(file: &str) -> PathBuf {
    let path = standins().join(file);
    if std::env::var_os("NAEVUS_TORCHVISION_STANDINS").is_none()
        && let Some(expected) = reference()["standins"][file].as_str()
    {
        let mut bytes = std::fs::File::open(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut hasher = Sha256::new();
        std::io::copy(&mut bytes, &mut hasher).unwrap();
        let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            digest, expected,
            "{file} is not the file tests/reference/torchvision/torchvision.json was computed from: rerun scripts/torchvision-reference.py"
        );
    }
    path
}

fn images() -> Vec<String> {
    reference()["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The reference images, normalised for `spec`, as one [2, 3, h, w] batch.
fn batch(spec: &ModelSpec) -> Tensor<4> {
    let mut chw = Vec::new();
    let mut side = 0;
    let names = images();
    for name in &names {
        let rgb = load_rgb(&reference_dir().join(name)).unwrap();
        side = rgb.width();
        assert_eq!(rgb.height(), side);
        to_chw_f32(rgb.as_raw(), side, &Normalize { mean: spec.mean, std: spec.std }, &mut chw);
    }
    let side = side as usize;
    Tensor::<4>::from_data(TensorData::new(chw, [names.len(), 3, side, side]), &Device::flex())
}

fn network(model: &str, file: &str, num_outputs: usize) -> (&'static ModelSpec, Network) {
    let spec = naevus_models::spec(model).unwrap();
    let network = weights::pretrained_network_from(spec, HeadOptions::logits(num_outputs), &standin(file), &Device::flex())
        .unwrap_or_else(|e| panic!("{model}: {e:#}"));
    (spec, network.valid())
}

fn floats(value: &serde_json::Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// The largest |got - expected|, after asserting equal lengths.
fn max_difference(got: &[f32], expected: &[f64]) -> f64 {
    assert_eq!(got.len(), expected.len());
    got.iter().zip(expected).map(|(&g, &e)| (f64::from(g) - e).abs()).fold(0.0, f64::max)
}

fn assert_resnet_logits(model: &str) {
    let (spec, network) = network(model, &format!("{model}-standin.pth"), 1000);
    assert!(spec.takes_imagenet_classifier(HeadOptions::logits(1000)), "{model}: the ImageNet fc loads");
    let logits: Vec<f32> = network.forward(batch(spec)).logits.into_data().try_to_vec().unwrap();
    let mut worst: f64 = 0.0;
    for (i, image) in images().iter().enumerate() {
        let expected = floats(&reference()[model][image]);
        let difference = max_difference(&logits[i * 1000..(i + 1) * 1000], &expected);
        assert!(difference < TOLERANCE, "{model} on {image}: a logit is {difference} off torchvision's");
        worst = worst.max(difference);
    }
    eprintln!("{model}: max |logit - torchvision's| = {worst:.3e}");
}

#[test]
fn resnet18_gives_torchvisions_logits() {
    assert_resnet_logits("resnet18");
}

#[test]
fn resnet34_gives_torchvisions_logits() {
    assert_resnet_logits("resnet34");
}

#[test]
fn resnet50_gives_torchvisions_logits() {
    assert_resnet_logits("resnet50");
}

#[test]
fn attention_vgg_backbone_gives_torchvisions_vgg16_bn_features() {
    // One melanoma logit: the attention head is new; only VGG16-BN's features load, and
    // torchvision's dense classifier goes unused by design.
    let (spec, network) = network("attn-vgg16-bn", "vgg16_bn-standin.pth", 1);
    let pool5 = RefCell::new(None);
    let record = |layer: Layer, map: Tensor<4>| {
        if layer == Layer::Stage(3) {
            *pool5.borrow_mut() = Some(map.clone());
        }
        map
    };
    network.forward_hooked(batch(spec), None, &record);
    let pool5 = pool5.into_inner().expect("the hook saw pool-5");
    let [batch_size, channels, h, w] = pool5.dims();
    let values: Vec<f32> = pool5.into_data().try_to_vec().unwrap();
    let mut worst: f64 = 0.0;
    for (i, image) in images().iter().enumerate() {
        let expected = &reference()["vgg16_bn"][image];
        let shape: Vec<usize> = expected["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(shape, [1, channels, h, w], "{image}: pool-5 map");
        let map = &values[i * channels * h * w..(i + 1) * channels * h * w];
        let means: Vec<f32> = map.chunks(h * w).map(|c| c.iter().sum::<f32>() / (h * w) as f32).collect();
        let difference = max_difference(&means, &floats(&expected["channel_means"]));
        assert!(difference < TOLERANCE, "{image}: a channel mean of pool-5 is {difference} off torchvision's");
        worst = worst.max(difference);
        let raw: Vec<f32> = expected["raw_indices"].as_array().unwrap().iter().map(|v| map[v.as_u64().unwrap() as usize]).collect();
        let difference = max_difference(&raw, &floats(&expected["raw_values"]));
        assert!(difference < TOLERANCE, "{image}: a pool-5 value is {difference} off torchvision's");
        worst = worst.max(difference);
    }
    assert_eq!(batch_size, images().len());
    eprintln!("vgg16_bn: max |pool-5 feature - torchvision's| = {worst:.3e}");
}

#[test]
fn grayscale_resnet18_starts_from_the_sum_of_the_colour_filters() {
    let (_, network) = network("resnet18-gray", "resnet18-standin.pth", 1000);
    let stem = "backbone.conv1.weight";
    let loaded = network.collect(Some(PathFilter::new().with_full_path(stem)), None, true);
    assert_eq!(loaded.len(), 1, "{stem} among {:?}", network.collect(None, None, true).iter().map(|t| &t.name).collect::<Vec<_>>());
    assert_eq!(loaded[0].shape.as_slice(), [64, 1, 7, 7]);
    let loaded: Vec<f32> = bridge::to_data(&loaded[0]).unwrap().try_to_vec().unwrap();

    let reader = PytorchReader::new(standin("resnet18-standin.pth")).unwrap();
    let rgb = reader.get("conv1.weight").unwrap();
    assert_eq!(rgb.shape(), [64, 3, 7, 7]);
    let rgb: Vec<f32> = rgb.read().unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    for o in 0..64 {
        for p in 0..49 {
            let sum: f32 = (0..3).map(|c| rgb[(o * 3 + c) * 49 + p]).sum();
            assert_eq!(loaded[o * 49 + p], sum, "filter {o}, tap {p}");
        }
    }
    // The colour filters differ, so the sum is not any one of them.
    assert_ne!(&loaded[..49], &rgb[..49]);
}

fn load_error(model: &str, file: &str, num_outputs: usize) -> String {
    let spec = naevus_models::spec(model).unwrap();
    match weights::pretrained_network_from(spec, HeadOptions::logits(num_outputs), &standin(file), &Device::flex()) {
        Ok(_) => panic!("{model} loaded {file}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_file_without_one_tensor_is_refused_naming_it() {
    for outputs in [1000, 1] {
        let message = load_error("resnet18", "resnet18-standin-missing.pth", outputs);
        assert!(message.contains("does not fit the model") && message.contains("missing"), "{message}");
        assert!(message.contains("layer3.1.bn2.running_mean"), "{message}");
    }
}

#[test]
fn a_file_with_one_tensor_too_many_is_refused_naming_it() {
    // With the ImageNet head and under a fresh one: an unused backbone tensor is never by design.
    for outputs in [1000, 1] {
        let message = load_error("resnet18", "resnet18-standin-extra.pth", outputs);
        assert!(message.contains("does not fit the model") && message.contains("unused"), "{message}");
        assert!(message.contains("layer4.2.conv1.weight"), "{message}");
    }
    // VGG's dense layers may go unused, a feature layer may not.
    let message = load_error("attn-vgg16-bn", "vgg16_bn-standin-extra.pth", 1);
    assert!(message.contains("unused") && message.contains("features.44.weight"), "{message}");
}

#[test]
fn every_torchvision_source_names_its_file_by_the_published_sha256_prefix() {
    let mut urls = 0;
    for spec in naevus_models::MODELS {
        if let Some(WeightsSource::Url { url, sha256_prefix }) = spec.pretrained.as_ref().map(|w| &w.source) {
            assert!(url.starts_with("https://download.pytorch.org/models/"), "{}: {url}", spec.name);
            assert_eq!(naevus_engine::download::sha256_prefix_in_url(url), Some(*sha256_prefix), "{}", spec.name);
            let cached = weights::cached_checkpoint(spec).unwrap();
            assert_eq!(cached.file_name().unwrap().to_str(), url.rsplit('/').next(), "{}", spec.name);
            urls += 1;
        }
    }
    // resnet18, resnet18-gray, resnet34, resnet50, attn-vgg16-bn
    assert_eq!(urls, 5);
}
