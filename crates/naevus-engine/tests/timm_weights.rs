//! timm-compatible weights (`naevus_engine::checkpoint::timm_safetensors`): every
//! architecture the registry names a timm model for is written under timm's keys, for
//! scripts/timm_check.py to load into timm (strict) and compare logits; and the writer
//! refuses what timm has no model for.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use naevus_engine::checkpoint::{safetensors_keys, timm_safetensors};
use naevus_models::HeadOptions;

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

/// Writes, into NAEVUS_TIMM_CHECK_DIR/NAME, each architecture's timm.safetensors, a fixed
/// normalised input and naevus's logits of it. The networks carry their ImageNet weights
/// where naevus can fetch them (EfficientNet-Lite, MobileNetV2: .ci/run does), otherwise
/// their initial weights moved by pseudo-random amounts (BatchNorm statistics 0 and 1 and
/// biases 0 would hide a tensor loaded under another's name).
#[test]
#[ignore = "writes files for scripts/timm_check.py; .ci/run runs it with NAEVUS_TIMM_CHECK_DIR set"]
fn write_timm_check_files() {
    let Some(dir) = std::env::var_os("NAEVUS_TIMM_CHECK_DIR").map(std::path::PathBuf::from) else { return };
    let device = Device::flex();
    device.seed(34);
    let (side, batch, outputs) = (64usize, 2usize, 3usize);
    let input: Vec<f32> = (0..batch * 3 * side * side).map(|i| ((i * 37) % 256) as f32 / 128.0 - 1.0).collect();
    for spec in naevus_models::MODELS.iter().filter(|spec| spec.timm.is_some()) {
        let network = match naevus_engine::weights::pretrained_network(spec, HeadOptions::logits(outputs), &device) {
            Ok(network) => network.valid(),
            Err(why) => {
                eprintln!("{}: no ImageNet weights ({why:#}); perturbed initial weights instead", spec.name);
                spec.build_with(HeadOptions::logits(outputs), &device).map(&mut Perturb::default()).valid()
            }
        };
        let images = Tensor::<4>::from_data(TensorData::new(input.clone(), [batch, 3, side, side]), &device);
        let logits = network.forward(images).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let target = dir.join(spec.name);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("timm.safetensors"), timm_safetensors(&network, spec.timm.unwrap(), outputs).unwrap()).unwrap();
        std::fs::write(target.join("input.f32"), input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(target.join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
    }
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
