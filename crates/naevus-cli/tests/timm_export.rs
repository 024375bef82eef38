//! `naevus export --timm`: each fold's weights under timm's names beside naevus's, and models
//! timm has no counterpart for refused before anything is written. (Loading them into timm and
//! comparing logits is scripts/timm_check.py's, run by .ci/run.)

mod common;

use common::serve::{fixture_cache, fixture_run};
use common::{naevus, text};

#[test]
fn models_timm_lacks_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    let run = fixture_run(dir.path(), &cache, "run", &["--folds", "2"]);
    let refused = dir.path().join("refused");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--timm", "--out", refused.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("timm has no model with the same network as small-cnn"), "{}", text(&out));
    assert!(!refused.exists());
}

/// Trained runs exported with --timm: fold-0's timm.safetensors,
/// a fixed input as naevus's input path normalises it, and fold-0's logits of it, written into
/// NAEVUS_TIMM_CHECK_DIR/trained-NAME for scripts/timm_check.py; and WEIGHTS.md's timm lines.
#[test]
#[ignore = "writes files for scripts/timm_check.py; .ci/run runs it with NAEVUS_TIMM_CHECK_DIR set"]
fn trained_weights_for_the_timm_check() {
    let Some(check) = std::env::var_os("NAEVUS_TIMM_CHECK_DIR").map(std::path::PathBuf::from) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = fixture_cache(dir.path());
    // From ImageNet weights where naevus can fetch them (.ci/run does), so that every
    // BatchNorm's statistics are their own; ResNet-18's come from a backbone trained from the
    // first step.
    for (model, timm_name, pretrained) in [("resnet18", "resnet18", "false"), ("efficientnet-lite0", "tf_efficientnet_lite0", "true"), ("mobilenet-v2", "mobilenetv2_100", "true")] {
        let flags = ["--folds", "2", "--model", model, "--image-size", "32", "--freeze-backbone-epochs", "0", "--lr", "0.01", "--pretrained", pretrained];
        let run = fixture_run(dir.path(), &cache, model, &flags);
        let bundle = dir.path().join(format!("{model}-timm"));
        let out = naevus(&["export", "--run", run.to_str().unwrap(), "--timm", "--out", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let readme = std::fs::read_to_string(bundle.join("WEIGHTS.md")).unwrap();
        assert!(readme.contains(&format!("timm.create_model(\"{timm_name}\", pretrained=False, num_classes=1)")), "{readme}");
        assert!(bundle.join("fold-1/timm.safetensors").exists());
        let trained = naevus_engine::TrainedRun::open(&bundle, Some("flex")).unwrap();
        let network = trained.fold_model("fold-0", naevus_run::Checkpoint::Best).unwrap();
        let side = trained.input.image_size as usize;
        let images: Vec<Vec<u8>> = (0..2).map(|b| (0..side * side * 3).map(|i| ((i * 37 + b * 101) % 256) as u8).collect()).collect();
        let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let input = trained.input.images_tensor(&slices, 0, &trained.device);
        let logits: Vec<f32> = network.forward(input.clone()).logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let input: Vec<f32> = input.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let target = check.join(format!("trained-{model}"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(bundle.join("fold-0/timm.safetensors"), target.join("timm.safetensors")).unwrap();
        std::fs::write(target.join("input.f32"), input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        std::fs::write(target.join("logits.txt"), logits.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join("\n")).unwrap();
    }
}
