//! ImageNet weights into a half-precision network (issue 30, item 6): the f32 checkpoint loads
//! and is cast to the device's type, so fine-tuning from ImageNet works in bf16. A file of its
//! own: a device's float type is set once per process.

use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use naevus_data::{Normalize, load_rgb, to_chw_f32};
use naevus_engine::device::{Precision, select_device};
use naevus_engine::weights;
use naevus_models::HeadOptions;

#[test]
fn efficientnet_lite0_imagenet_weights_load_into_bf16_and_keep_their_top_class() {
    let device = select_device("flex", Precision::Bf16).unwrap();
    let spec = naevus_models::spec("efficientnet-lite0").unwrap();
    let network = match weights::pretrained_network(spec, HeadOptions::logits(1000), &device) {
        Ok(network) => network.valid(),
        Err(e) if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_some() => return eprintln!("SKIPPED: weights unavailable: {e:#}"),
        Err(e) => panic!("efficientnet-lite0 ImageNet weights are not available ({e:#}); NAEVUS_SKIP_PRETRAINED=1 skips"),
    };
    let reference_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(reference_dir.join("efficientnet_lite0_top5.json")).unwrap()).unwrap();
    for image in ["lesion_a.png", "lesion_b.png"] {
        let rgb = load_rgb(&reference_dir.join(image)).unwrap();
        let mut chw = Vec::new();
        to_chw_f32(rgb.as_raw(), 224, &Normalize { mean: spec.mean, std: spec.std }, &mut chw);
        let input = Tensor::<4>::from_data(TensorData::new(chw, [1, 3, 224, 224]), &device).cast(FloatDType::BF16);
        let logits = network.forward(input).logits;
        assert_eq!(logits.dtype(), DType::BF16);
        let values: Vec<f32> = logits.cast(FloatDType::F32).into_data().try_to_vec().unwrap();
        // bf16 keeps 8 bits of mantissa: the reference's top class stays first, and its logit
        // within a few percent of the float64 reference.
        let top = values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let expected_top = expected[image]["top5_classes"][0].as_u64().unwrap() as usize;
        let expected_logit = expected[image]["top5_logits"][0].as_f64().unwrap();
        assert_eq!(top, expected_top, "{image}");
        let got = f64::from(values[top]);
        assert!((got - expected_logit).abs() < 0.05 * expected_logit.abs() + 0.1, "{image}: {got} against {expected_logit}");
    }
}
