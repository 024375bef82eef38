//! One probability everywhere: for the same files, `predict --images`, `explain` and the
//! service's API give the same number, on the model's one scale (calibrated when it has a
//! calibration), and the card's thresholds are on that scale too, with their intervals.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::http::{multipart, request};
use common::serve::{Server, trained_bundle};
use common::{fixtures, naevus, text};

/// `image_name -> (target, target_uncalibrated)` of a CSV predict or explain wrote.
fn targets(csv: &Path) -> HashMap<String, (f64, Option<f64>)> {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let uncalibrated = headers.iter().position(|h| h == "target_uncalibrated");
    reader
        .records()
        .map(|row| {
            let row = row.unwrap();
            (row[0].to_string(), (row[1].parse().unwrap(), uncalibrated.map(|c| row[c].parse().unwrap())))
        })
        .collect()
}

#[test]
fn predict_explain_and_the_service_give_the_same_probability() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = trained_bundle(dir.path(), &[]);
    assert!(bundle.join("calibration.json").exists(), "training fits a calibration, export keeps it");
    let images = fixtures().join("isic2017/images");

    let predicted = dir.path().join("predicted.csv");
    let out = naevus(&["predict", "--run", bundle.to_str().unwrap(), "--images", images.to_str().unwrap(), "--out", predicted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("calibrated (temperature"), "{}", text(&out));
    let predicted = targets(&predicted);
    assert_eq!(predicted.len(), 8);

    let explained = dir.path().join("explained");
    let mut args = vec!["explain".to_string(), "--run".into(), bundle.to_str().unwrap().into(), "--out".into(), explained.to_str().unwrap().into()];
    let mut files: Vec<_> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_string()));
    let out = naevus(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));
    let explained = targets(&explained.join("scores.csv"));

    let server = Server::start(&bundle, &[]);
    // Honest uncertainty: the point comes with its intervals, and 8 images are too few.
    let model = common::http::get(&server.addr, "/v1/model").json();
    let point = &model["operating_point"];
    assert_eq!(point["too_few"], true, "{point}");
    assert!(point["sensitivity_ci95"].as_array().is_some_and(|ci| ci.len() == 2), "{point}");
    for file in &files {
        let name = file.file_stem().unwrap().to_str().unwrap();
        let (target, uncalibrated) = predicted[name];
        let uncalibrated = uncalibrated.expect("a calibrated target comes with the uncalibrated one");
        assert!((target - uncalibrated).abs() > 1e-9, "{name}: calibration changed nothing");
        assert!((explained[name].0 - target).abs() <= 1e-6, "{name}: explain {} against predict {target}", explained[name].0);
        let bytes = std::fs::read(file).unwrap();
        let (content_type, body) = multipart(&[("image", Some("upload.jpg"), &bytes)]);
        let answer = request(&server.addr, "POST", "/v1/predict", &[("Content-Type", &content_type)], &body).json();
        assert_eq!(answer["calibrated"], true);
        let served = answer["melanoma_probability"].as_f64().unwrap();
        assert!((served - target).abs() <= 1e-6, "{name}: the service {served} against predict {target}");
    }
    server.terminate();

    // The card's threshold is on the same scale: temperature applied to the uncalibrated one.
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("model_card.json")).unwrap()).unwrap();
    let temperature = card["calibration"]["temperature"].as_f64().unwrap();
    for point in card["operating_points"].as_array().unwrap() {
        let (Some(raw), Some(calibrated)) = (point["threshold"].as_f64(), point["threshold_calibrated"].as_f64()) else { continue };
        assert!((naevus_metrics::apply_temperature(raw, temperature) - calibrated).abs() < 1e-12, "{point}");
    }
    let markdown = std::fs::read_to_string(bundle.join("MODEL_CARD.md")).unwrap();
    assert!(markdown.contains("| point | threshold | uncalibrated threshold |") && markdown.contains("a prevalence of"), "{markdown}");
    assert!(markdown.contains("sensitivity 90% (too few melanomas to judge)"), "{markdown}");
    for point in card["operating_points"].as_array().unwrap() {
        let (lo, hi) = (point["specificity_ci95"][0].as_f64().unwrap(), point["specificity_ci95"][1].as_f64().unwrap());
        let specificity = point["specificity"].as_f64().unwrap();
        assert!(lo <= specificity && specificity <= hi, "{point}");
    }
}
