//! naevus's networks for other frameworks: timm-compatible weights
//! (`naevus_engine::checkpoint::timm_safetensors`) and ONNX graphs (`naevus_models::onnx`).
//! The ignored tests write every architecture with a fixed input and naevus's logits of it,
//! for scripts/timm_check.py (timm, strict loading) and scripts/onnx_check.py (ONNX Runtime)
//! to compare; .ci/run runs both.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use naevus_data::{ColourConstancy, Normalize};
use naevus_engine::checkpoint::{safetensors_keys, timm_safetensors};
use naevus_engine::input::InputSpec;
use naevus_engine::loss::Target;
use naevus_models::onnx::{OnnxInput, to_onnx};
use naevus_models::{HeadOptions, Network};

#[test]
fn keys_are_timms_and_what_timm_lacks_is_refused() {
    let device = Device::flex();
    let network = naevus_models::spec("mobilenet-v2").unwrap().build_with(HeadOptions::logits(1), &device);
    let keys: Vec<String> = safetensors_keys(&timm_safetensors(&network, "mobilenetv2_100", 1).unwrap()).unwrap().into_iter().map(|(key, _, _)| key).collect();
    // 262 tensors as timm's own mobilenetv2_100 (num_batches_tracked aside), its names.
    assert_eq!(keys.len(), 262);
    for key in ["conv_stem.weight", "bn1.running_var", "blocks.0.0.conv_dw.weight", "blocks.0.0.bn2.bias", "blocks.3.3.conv_pwl.weight", "blocks.6.0.bn3.weight", "conv_head.weight", "bn2.weight", "classifier.weight"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
    let small = naevus_models::spec("small-cnn").unwrap().build_with(HeadOptions::logits(1), &device);
    assert!(timm_safetensors(&small, "x", 1).unwrap_err().to_string().contains("hidden layer"));
}

/// Writes, into NAEVUS_TIMM_CHECK_DIR/NAME, each architecture timm has as timm.safetensors, a
/// fixed normalised input and naevus's logits of it (weights: see [`imagenet_or_perturbed`]).
#[test]
#[ignore = "writes files for scripts/timm_check.py; .ci/run runs it with NAEVUS_TIMM_CHECK_DIR set"]
fn write_timm_check_files() {
    let Some(dir) = std::env::var_os("NAEVUS_TIMM_CHECK_DIR").map(std::path::PathBuf::from) else { return };
    let device = Device::flex();
    device.seed(34);
    let (side, batch, outputs) = (64usize, 2usize, 3usize);
    let input: Vec<f32> = (0..batch * 3 * side * side).map(|i| ((i * 37) % 256) as f32 / 128.0 - 1.0).collect();
    for spec in naevus_models::MODELS.iter().filter(|spec| spec.timm.is_some()) {
        let network = imagenet_or_perturbed(spec, HeadOptions::logits(outputs), &device);
        let images = Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, 3, side, side]), &device);
        let logits = network.forward(images).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let target = dir.join(spec.name);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("timm.safetensors"), timm_safetensors(&network, spec.timm.unwrap(), outputs).unwrap()).unwrap();
        std::fs::write(target.join("input.f32"), input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(target.join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
    }
}

/// Writes, into NAEVUS_ONNX_CHECK_DIR/NAME, every registry architecture (and EfficientNet-Lite0
/// with a metadata branch, and with Shades of Gray) as model.onnx, two CC0 lesion images as RGB
/// values 0-255 at 128 px (and metadata features) and naevus's logits of them through naevus's
/// own input path (`InputSpec::images_tensor`: colour correction and normalisation). Weights
/// as for timm.
#[test]
#[ignore = "writes files for scripts/onnx_check.py; .ci/run runs it with NAEVUS_ONNX_CHECK_DIR set"]
fn write_onnx_check_files() {
    let Some(dir) = std::env::var_os("NAEVUS_ONNX_CHECK_DIR").map(std::path::PathBuf::from) else { return };
    let device = Device::flex();
    device.seed(17);
    let (side, outputs) = (128usize, 2usize);
    // Two CC0 ISIC 2017 images (tests/reference), at the input size.
    let images: Vec<Vec<u8>> = ["lesion_a.png", "lesion_b.png"]
        .iter()
        .map(|file| naevus_data::center_crop_resize(&naevus_data::load_rgb(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(file)).unwrap(), side as u32))
        .collect();
    let batch = images.len();
    let metadata: Vec<f32> = vec![1.0, 0.5, 0.0, -1.0, 0.3, 1.0];
    let mut cases: Vec<(String, &str, usize, ColourConstancy)> = naevus_models::MODELS.iter().map(|spec| (spec.name.to_string(), spec.name, 0, ColourConstancy::None)).collect();
    cases.push(("efficientnet-lite0-metadata".into(), "efficientnet-lite0", 3, ColourConstancy::None));
    cases.push(("efficientnet-lite0-shades-of-gray".into(), "efficientnet-lite0", 0, ColourConstancy::ShadesOfGray { p: 6.0 }));
    for (name, model, metadata_features, colour) in cases {
        let spec = naevus_models::spec(model).unwrap();
        let network = imagenet_or_perturbed(spec, HeadOptions { num_outputs: outputs, metadata_features, dropout_samples: 1 }, &device);
        let input = InputSpec { image_size: side as u32, colour, normalize: Normalize { mean: spec.mean, std: spec.std }, target: Target::binary(naevus_run::LossKind::Bce), metadata: None };
        let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let features = (metadata_features > 0).then(|| Tensor::<2>::from_data(TensorData::new(metadata.clone(), [batch, metadata_features]), &device));
        let logits = network.forward_with_metadata(input.images_tensor(&slices, 0, &device), features).logits;
        let onnx_input = OnnxInput {
            image_size: side as u32,
            mean: spec.mean,
            std: spec.std,
            colour_constancy: colour,
            metadata: (0..metadata_features).map(|f| format!("feature_{f}")).collect(),
        };
        let graph = to_onnx(&network, &onnx_input, outputs, &name).unwrap_or_else(|why| panic!("{name}: {why}"));
        let target = dir.join(&name);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("model.onnx"), graph).unwrap();
        // ONNX takes [batch, 3, side, side] RGB values: the same pixels, channels first.
        let chw: Vec<f32> = images.iter().flat_map(|hwc| (0..3).flat_map(move |c| (0..side * side).map(move |p| f32::from(hwc[p * 3 + c])))).collect();
        write_floats(&target.join("input.f32"), &chw);
        if metadata_features > 0 {
            write_floats(&target.join("metadata.f32"), &metadata);
        }
        let logits: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        std::fs::write(target.join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
    }
}

fn write_floats(path: &Path, values: &[f32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// `spec`'s network from its ImageNet weights where naevus can fetch them (EfficientNet-Lite,
/// MobileNetV2: .ci/run does), else from its initial ones, every weight then moved by a
/// pseudo-random amount: fresh layers' BatchNorm statistics 0 and 1 and biases 0 would hide a
/// tensor under another's name, or a batch norm folded wrongly.
fn imagenet_or_perturbed(spec: &naevus_models::ModelSpec, options: HeadOptions, device: &Device) -> Network {
    let network = naevus_engine::weights::pretrained_network(spec, options, device).unwrap_or_else(|why| {
        eprintln!("{}: no ImageNet weights ({why:#}); initial weights instead", spec.name);
        spec.build_with(options, device)
    });
    network.map(&mut Perturb::default()).valid()
}

/// Moves every weight by a deterministic pseudo-random factor and offset; running variances
/// stay positive.
#[derive(Default)]
struct Perturb {
    path: Vec<String>,
    state: u64,
}

impl ModuleMapper for Perturb {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let variance = self.path.last().is_some_and(|name| name == "running_var");
        // Biases and BatchNorm parameters move by up to ±0.5, so that each one matters;
        // weights only by ±20%, so that activations keep their scale.
        let offset = if D == 1 { 1.0 } else { 0.0 };
        let state = &mut self.state;
        param.map(|tensor| {
            let shape = tensor.shape();
            let mut values = tensor.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            for value in &mut values {
                // A linear congruential generator: a uniform number in [-0.5, 0.5).
                *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                *value = if variance { *value * (1.0 + noise) + 0.1 } else { *value * (1.0 + 0.4 * noise) + offset * noise };
            }
            Tensor::from_data(TensorData::new(values, shape), &tensor.device())
        })
    }
}
