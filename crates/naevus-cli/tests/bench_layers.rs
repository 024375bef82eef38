//! `naevus bench --layers` (issue 30): the layer map lists every layer a model runs, each
//! distinct shape once with its count, each pass timed, beside a measured GEMM peak.

mod common;

use common::{naevus, text};

#[test]
fn the_layer_map_counts_every_layer_once_and_times_each_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layers.json");
    let run = naevus(&[
        "bench", "--layers", "--models", "mobilenet-v2,small-cnn", "--sizes", "32", "--train-batch", "2", "--steps", "1",
        "--warmup", "0", "--out", out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let map: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(map["gemm_peak_gflops"].as_f64().unwrap() > 0.0);
    let layers = map["layers"].as_array().unwrap();
    let of = |model: &str, kind: &str| -> Vec<&serde_json::Value> { layers.iter().filter(|l| l["model"] == model && l["kind"] == kind).collect() };
    let count = |rows: &[&serde_json::Value]| rows.iter().map(|l| l["count"].as_u64().unwrap()).sum::<u64>();

    // MobileNetV2 (torchvision's): a stem, 17 inverted residual blocks (the first without an
    // expansion: depthwise and projection; 16 with expansion, depthwise and projection) and a
    // 1x1 head: 17 depthwise and 35 dense convolutions, each followed by a batch norm.
    let (dense, depthwise) = (of("mobilenet-v2", "conv"), of("mobilenet-v2", "depthwise"));
    assert_eq!((count(&dense), count(&depthwise)), (35, 17));
    assert_eq!(count(&of("mobilenet-v2", "batch_norm")), 52);
    assert!(dense.len() < 35, "distinct shapes are listed once with their count");
    for layer in dense.iter().chain(&depthwise) {
        for pass in ["forward_ms", "input_grad_ms", "weight_grad_ms"] {
            assert!(layer[pass].as_f64().unwrap() > 0.0, "{pass} of {}", layer["layer"]);
        }
        assert!(layer["gflop"].as_f64().unwrap() > 0.0);
    }
    assert!(!of("small-cnn", "conv").is_empty());
    let models = map["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|m| m["train_step_ms"].as_f64().unwrap() > 0.0));
}
