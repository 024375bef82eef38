//! `naevus export --onnx`: each fold as an ONNX graph beside its weights, with RGB values (and
//! metadata features, for a metadata model) in and logits out, and the whole model as one
//! graph giving predict's numbers. (The graphs' numbers against naevus's are checked with ONNX
//! Runtime by .ci/run: scripts/onnx_check.py.)

mod common;

use burn::prelude::*;
use common::serve::{fixture_cache, fixture_run};
use common::{naevus, text};
use naevus_models::onnx::proto::ModelProto;
use prost::Message;

#[test]
fn every_fold_gets_a_graph_and_metadata_is_a_second_input() {
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
    let bundle = dir.path().join("meta-onnx");
    let out = naevus(&["export", "--run", meta.to_str().unwrap(), "--onnx", "--out", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for graph in ["model.onnx", "fold-1/model.onnx"] {
        let model = ModelProto::decode(std::fs::read(bundle.join(graph)).unwrap().as_slice()).unwrap();
        let inputs: Vec<String> = model.graph.unwrap().input.into_iter().map(|i| i.name).collect();
        assert_eq!(inputs, ["image", "metadata"]);
        assert!(model.doc_string.ends_with("metadata columns: sex, age_over_90"), "{}", model.doc_string);
    }
    let readme = std::fs::read_to_string(bundle.join("WEIGHTS.md")).unwrap();
    assert!(readme.contains("2 metadata features per image, in this order: sex, age_over_90"), "{readme}");
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
    let metadata = ["--metadata", "sex,age"];
    let shades_of_gray = ["--colour-constancy", "shades-of-gray", "--shades-of-gray-p", "6"];
    let cases: [(&str, &str, &[&str]); 6] = [
        ("small-cnn", "small-cnn", &[]),
        ("resnet18", "resnet18", &[]),
        ("efficientnet-lite0", "efficientnet-lite0", &[]),
        ("mobilenet-v2", "mobilenet-v2", &[]),
        ("small-cnn-metadata", "small-cnn", &metadata),
        ("small-cnn-shades-of-gray", "small-cnn", &shades_of_gray),
    ];
    for (name, model, extra) in cases {
        let mut flags = vec!["--folds", "2", "--model", model, "--image-size", "32"];
        flags.extend_from_slice(extra);
        let run = fixture_run(dir.path(), &cache, name, &flags);
        let bundle = dir.path().join(format!("{name}-onnx"));
        let out = naevus(&["export", "--run", run.to_str().unwrap(), "--onnx", "--out", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let trained = naevus_engine::TrainedRun::open(&bundle, Some("flex")).unwrap();
        let network = trained.fold_model("fold-0", naevus_run::Checkpoint::Best).unwrap();
        let side = trained.input.image_size as usize;
        // A pattern under a warm cast (green and blue dimmed), which Shades of Gray undoes.
        let cast = [1.0, 0.75, 0.5];
        let images: Vec<Vec<u8>> = (0..2).map(|b| (0..side * side * 3).map(|i| (((i * 37 + b * 101) % 256) as f32 * cast[i % 3]) as u8).collect()).collect();
        let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        // A male of 45 and a patient of unknown sex and age.
        let metadata: Option<Vec<Vec<f32>>> = network.takes_metadata().then(|| vec![vec![1.0, 0.5], vec![-1.0, 0.0]]);
        let features = metadata.as_ref().map(|rows| Tensor::<2>::from_data(TensorData::new(rows.concat(), [rows.len(), rows[0].len()]), &trained.device));
        let logits = network.forward_with_metadata(trained.input.images_tensor(&slices, 0, &trained.device), features).logits;
        let logits: Vec<f64> = logits.into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        // ONNX takes [batch, 3, side, side] RGB values: the same pixels, channels first.
        let chw: Vec<f32> = images.iter().flat_map(|hwc| (0..3).flat_map(move |c| (0..side * side).map(move |p| f32::from(hwc[p * 3 + c])))).collect();
        // The whole model: the folds' mean on the run's one scale, as predict gives it.
        let folds = trained.ensemble(naevus_run::Checkpoint::Best).unwrap();
        let melanoma = trained.score_images(&folds, None, &slices, metadata.as_deref(), 1).unwrap().melanoma;
        for (suffix, graph, output, values) in [("", "fold-0/model.onnx", "logits", logits), ("-all-folds", "model.onnx", "melanoma", melanoma)] {
            let target = check.join(format!("trained-{name}{suffix}"));
            std::fs::create_dir_all(&target).unwrap();
            std::fs::copy(bundle.join(graph), target.join("model.onnx")).unwrap();
            write_floats(&target.join("input.f32"), &chw);
            if let Some(rows) = &metadata {
                write_floats(&target.join("metadata.f32"), &rows.concat());
            }
            std::fs::write(target.join(format!("{output}.txt")), values.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
        }
    }
}

fn write_floats(path: &std::path::Path, values: &[f32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}
