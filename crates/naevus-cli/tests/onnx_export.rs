//! `naevus export --onnx`: each fold as an ONNX graph beside its weights, with RGB values in
//! and logits out, and the whole model as one graph giving predict's numbers; what ONNX does
//! not express is refused with the reason. (The graphs'
//! numbers against naevus's are checked with ONNX Runtime by .ci/run: scripts/onnx_check.py.)

mod common;

use common::serve::{fixture_cache, fixture_run};
use common::{naevus, text};
use naevus_models::onnx::proto::ModelProto;
use prost::Message;

#[test]
fn every_fold_gets_a_graph_and_unsupported_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    let run = fixture_run(dir.path(), &cache, "run", &["--folds", "2"]);
    let model = dir.path().join("model");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--onnx", "--out", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let whole = ModelProto::decode(std::fs::read(model.join("model.onnx")).unwrap().as_slice()).unwrap().graph.unwrap();
    let outputs: Vec<&str> = whole.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["probabilities", "melanoma"]);
    for fold in ["fold-0", "fold-1"] {
        let bytes = std::fs::read(model.join(fold).join("model.onnx")).unwrap();
        let onnx = ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = onnx.graph.unwrap();
        assert_eq!(graph.input[0].name, "image");
        assert_eq!(graph.output[0].name, "logits");
        assert_eq!(onnx.opset_import[0].version, naevus_models::onnx::OPSET);
        assert!(graph.node.iter().all(|n| n.op_type != "BatchNormalization"), "batch norms are folded");
    }

    let meta = fixture_run(dir.path(), &cache, "meta", &["--folds", "2", "--metadata", "sex,age"]);
    let refused = dir.path().join("refused");
    let out = naevus(&["export", "--run", meta.to_str().unwrap(), "--onnx", "--out", refused.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("metadata branch"), "{}", text(&out));
    assert!(!refused.exists());
}

/// Trained models (batch-norm statistics learnt, not the initial 0 and 1) exported with
/// --onnx, with a fixed input and fold-0's logits of it through naevus's own input path,
/// written into NAEVUS_ONNX_CHECK_DIR/trained-NAME for scripts/onnx_check.py.
#[test]
#[ignore = "writes files for scripts/onnx_check.py; .ci/run runs it with NAEVUS_ONNX_CHECK_DIR set"]
fn trained_graphs_for_the_onnx_runtime_check() {
    let Some(check) = std::env::var_os("NAEVUS_ONNX_CHECK_DIR").map(std::path::PathBuf::from) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    for model in ["small-cnn", "resnet18", "efficientnet-lite0", "mobilenet-v2"] {
        let run = fixture_run(dir.path(), &cache, model, &["--folds", "2", "--model", model, "--image-size", "32"]);
        let bundle = dir.path().join(format!("{model}-onnx"));
        let out = naevus(&["export", "--run", run.to_str().unwrap(), "--onnx", "--out", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let trained = naevus_engine::TrainedRun::open(&bundle, Some("flex")).unwrap();
        let network = trained.fold_model("fold-0", naevus_run::Checkpoint::Best).unwrap();
        let side = trained.input.image_size as usize;
        let images: Vec<Vec<u8>> = (0..2).map(|b| (0..side * side * 3).map(|i| ((i * 37 + b * 101) % 256) as u8).collect()).collect();
        let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let logits = network.forward(trained.input.images_tensor(&slices, 0, &trained.device)).logits;
        let logits: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        // ONNX takes [batch, 3, side, side] RGB values: the same pixels, channels first.
        let chw: Vec<f32> = images.iter().flat_map(|hwc| (0..3).flat_map(move |c| (0..side * side).map(move |p| f32::from(hwc[p * 3 + c])))).collect();
        let target = check.join(format!("trained-{model}"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(bundle.join("fold-0/model.onnx"), target.join("model.onnx")).unwrap();
        std::fs::write(target.join("input.f32"), chw.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(target.join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
        // The whole model: the folds' mean on the run's one scale, as predict gives it.
        let folds = trained.ensemble(naevus_run::Checkpoint::Best).unwrap();
        let melanoma = trained.score_images(&folds, None, &slices, None, 1).unwrap().melanoma;
        let target = check.join(format!("trained-{model}-all-folds"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(bundle.join("model.onnx"), target.join("model.onnx")).unwrap();
        std::fs::write(target.join("input.f32"), chw.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(target.join("melanoma.txt"), melanoma.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
    }
}
