//! Source-aware training end to end: sources named at prepare, source-balanced sampling,
//! validation and checkpoint selection per source, per-source figures in every output, and
//! colour constancy applied the same way by training, `predict --images` and the service.

mod common;

use std::path::{Path, PathBuf};

use common::http::multipart;
use common::serve::{Server, trained_bundle};
use common::{fixtures, naevus, text};

/// The ISIC 2017 fixtures prepared twice at 32 px, as two clinics' data ("clinic-a" and, with
/// new image ids, "clinic-b"), combined into one cache.
fn two_clinics(dir: &Path) -> PathBuf {
    let source = fixtures().join("isic2017");
    let copy = dir.join("clinic-b-files");
    std::fs::create_dir_all(copy.join("images")).unwrap();
    let labels = std::fs::read_to_string(source.join("labels.csv")).unwrap();
    let mut renamed = String::new();
    for (n, line) in labels.lines().enumerate() {
        if n == 0 {
            renamed += line;
        } else {
            let (id, rest) = line.split_once(',').unwrap();
            let new_id = format!("ISIC_91{}", &id[7..]);
            std::fs::copy(source.join(format!("images/{id}.jpg")), copy.join(format!("images/{new_id}.jpg"))).unwrap();
            renamed += &format!("{new_id},{rest}");
        }
        renamed += "\n";
    }
    std::fs::write(copy.join("labels.csv"), renamed).unwrap();
    let prepare = |labels: &Path, images: &Path, name: &str| {
        let out = dir.join(name);
        let run = naevus(&[
            "prepare", "--source", "isic2017", "--csv", labels.to_str().unwrap(), "--images", images.to_str().unwrap(), "--size", "32",
            "--source-name", name, "--out", out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", text(&run));
        out
    };
    let a = prepare(&source.join("labels.csv"), &source.join("images"), "clinic-a");
    let b = prepare(&copy.join("labels.csv"), &copy.join("images"), "clinic-b");
    let both = dir.join("both");
    let out = naevus(&["combine", a.to_str().unwrap(), "--external", b.to_str().unwrap(), "--out", both.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    both
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn source_balanced_training_selects_by_the_named_source_and_reports_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let both = two_clinics(dir.path());
    let run = dir.path().join("run");
    let train = |run: &Path, extra: &[&str]| {
        let mut args = vec![
            "train", "--data", both.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--folds", "2", "--epochs",
            "4", "--batch-size", "4", "--external-in-validation", "true", "--sampling", "source-balanced", "--seed", "3",
        ];
        args.extend_from_slice(extra);
        naevus(&args)
    };
    let out = train(&run, &["--source-shares", "clinic-a=1,clinic-b=1", "--checkpoint-selection", "source:clinic-b"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);

    // Each fold's best epoch is the first with the highest clinic-b AUC in its metrics.jsonl.
    for fold in ["fold-0", "fold-1"] {
        let lines = std::fs::read_to_string(run.join(fold).join("metrics.jsonl")).unwrap();
        let aucs: Vec<f64> = lines
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["val_auc_by_source"]["clinic-b"].as_f64().expect("clinic-b has both classes"))
            .collect();
        assert_eq!(aucs.len(), 4);
        let best = aucs.iter().enumerate().fold(0, |best, (e, &auc)| if auc > aucs[best] { e } else { best });
        let line = printed.lines().find(|l| l.starts_with(&format!("{fold}: best source:clinic-b AUC"))).unwrap_or_else(|| panic!("{printed}"));
        assert!(line.ends_with(&format!("at epoch {}", best + 1)), "{line} against {aucs:?}");
        assert!(line.contains(&format!("{:.4}", aucs[best])), "{line} against {aucs:?}");
    }

    // run.json records the rule and each source with its share of an epoch.
    let info = json(&run.join("run.json"));
    assert_eq!(info["checkpoint_selection"], "source:clinic-b");
    let sources = info["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for (source, name) in sources.iter().zip(["clinic-a", "clinic-b"]) {
        assert_eq!((source["name"].as_str(), source["images"].as_u64(), source["melanomas"].as_u64()), (Some(name), Some(8), Some(3)));
        assert_eq!(source["epoch_share"], 0.5);
    }

    // Every image is validated once, with its source; the figures are broken down by source.
    let oof = std::fs::read_to_string(run.join("oof.csv")).unwrap();
    assert!(oof.starts_with("image_name,prediction,label,fold,source\n"), "{oof}");
    assert_eq!(oof.lines().filter(|l| l.ends_with(",clinic-a")).count(), 8);
    assert_eq!(oof.lines().filter(|l| l.ends_with(",clinic-b")).count(), 8);
    let by_source = json(&run.join("metrics.json"))["by_source"].clone();
    assert_eq!(by_source.as_array().unwrap().len(), 2);
    assert!(by_source[0]["roc_auc"]["ci95"].is_array(), "{by_source}");
    assert!(printed.contains("  clinic-a: AUC ") && printed.contains("  clinic-b: AUC "), "{printed}");
    let out = naevus(&["evaluate", "--pred", run.join("oof.csv").to_str().unwrap(), "--truth", both.to_str().unwrap(), "--bootstrap", "50"]);
    assert!(out.status.success() && text(&out).contains("by source:\n  clinic-a: AUC "), "{}", text(&out));
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--oof", "--out", dir.path().join("oof-again.csv").to_str().unwrap()]);
    assert!(out.status.success() && text(&out).contains("  clinic-b: AUC "), "{}", text(&out));

    // The report and the model card show the sources apart.
    let report = dir.path().join("report");
    let out = naevus(&["report", "--run", run.to_str().unwrap(), "--out", report.to_str().unwrap(), "--bootstrap", "50"]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<h2>By source</h2>") && html.contains("<td>clinic-b</td>"), "no per-source table");
    let bundle = dir.path().join("model");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--out", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let card = std::fs::read_to_string(bundle.join("MODEL_CARD.md")).unwrap();
    assert!(card.contains("### By source") && card.contains("| clinic-a | 8 | 3 |"), "{card}");
    assert!(card.contains("trained on images from clinic-a, clinic-b") && card.contains("may score"), "{card}");

    // A source the cache does not hold is refused before anything trains.
    let out = train(&dir.path().join("typo"), &["--checkpoint-selection", "source:clinic-c"]);
    assert!(!out.status.success() && text(&out).contains("does not hold; its sources are clinic-a, clinic-b"), "{}", text(&out));
    let out = train(&dir.path().join("typo2"), &["--source-shares", "clinic-a=1,clinik-b=1"]);
    assert!(!out.status.success() && text(&out).contains("\"clinik-b\""), "{}", text(&out));
    // A rule comparing sources needs them in validation.
    let out = naevus(&[
        "train", "--data", both.to_str().unwrap(), "--out", dir.path().join("one-source").to_str().unwrap(), "--model", "small-cnn", "--folds",
        "2", "--epochs", "1", "--batch-size", "4", "--checkpoint-selection", "worst-source",
    ]);
    assert!(!out.status.success() && text(&out).contains("validation holds images of clinic-a only"), "{}", text(&out));
}

/// `predict --images` of the fixtures (calibrated, as the service): image file -> probability.
fn predict_images(run: &Path, out: &Path) -> Vec<(String, f64)> {
    let images = fixtures().join("isic2017/images");
    let mut args = vec!["predict".to_string(), "--run".into(), run.display().to_string(), "--out".into(), out.display().to_string(), "--images".into()];
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = naevus(&args);
    assert!(done.status.success(), "{}", text(&done));
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            // image_name,target,...,path
            let fields: Vec<&str> = line.split(',').collect();
            (fields[fields.len() - 1].to_string(), fields[1].parse().unwrap())
        })
        .collect()
}

#[test]
fn colour_constancy_is_recorded_and_applied_by_predict_images_and_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &["--colour-constancy", "shades-of-gray", "--shades-of-gray-p", "4"]);
    let run = dir.path().join("run");
    assert_eq!(json(&run.join("run.json"))["colour_constancy"], serde_json::json!({"method": "shades-of-gray", "p": 4.0}));
    let corrected = predict_images(&run, &dir.path().join("corrected.csv"));

    // The same run told to skip the correction scores the files differently: predict applies it.
    let plain = dir.path().join("plain-run");
    std::fs::create_dir_all(&plain).unwrap();
    for entry in walk(&run) {
        let to = plain.join(entry.strip_prefix(&run).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let mut info = json(&plain.join("run.json"));
    info["colour_constancy"] = serde_json::json!({"method": "none"});
    std::fs::write(plain.join("run.json"), serde_json::to_string(&info).unwrap()).unwrap();
    let uncorrected = predict_images(&plain, &dir.path().join("uncorrected.csv"));
    let moved = corrected.iter().zip(&uncorrected).filter(|((_, a), (_, b))| (a - b).abs() > 1e-6).count();
    assert!(moved > 0, "no probability changed without the correction: {corrected:?}");

    // The service scores the same bytes as predict --images does, correction included.
    let server = Server::start(&bundle, &[]);
    for (file, p) in &corrected {
        let bytes = std::fs::read(file).unwrap();
        let (content_type, body) = multipart(&[("image", Some("lesion.jpg"), &bytes)]);
        let response = common::http::request(&server.addr, "POST", "/v1/predict", &[("Content-Type", &content_type)], &body);
        assert_eq!(response.status, 200, "{}", response.text());
        let served = response.json()["melanoma_probability"].as_f64().unwrap();
        assert!((served - p).abs() < 1e-5, "{file}: served {served}, predict --images {p}");
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
