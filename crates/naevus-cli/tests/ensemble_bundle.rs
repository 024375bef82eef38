//! Ensembles as one model: `naevus export` of two runs (each with its own input size) gives
//! one bundle that predict (files and caches), explain and the service use as one model, its
//! probability the combination of its members', with its own out-of-fold card where the
//! members share folds, and that refuses a member changed after export.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::http::{get, multipart, request};
use common::serve::{Server, fixture_cache, fixture_run, trained_ensemble};
use common::{fixtures, naevus, text};

/// `image_name -> row` (column name -> cell) of a CSV.
fn rows(csv: &Path) -> HashMap<String, HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|row| {
            let row = row.unwrap();
            (row[0].to_string(), headers.iter().zip(row.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        })
        .collect()
}

fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    row.get(column).unwrap_or_else(|| panic!("no column {column} in {row:?}")).parse().unwrap()
}

fn export(args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = naevus(&all);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn predict(model: &Path, input: &[&str], out: &Path) -> HashMap<String, HashMap<String, String>> {
    let mut args = vec!["predict", "--run", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(input);
    let result = naevus(&args);
    assert!(result.status.success(), "{}", text(&result));
    rows(out)
}

#[test]
fn an_ensemble_bundle_is_one_model_whose_probability_combines_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two folds each, the same seed (so the same folds), different input sizes and rates.
    let ensemble = trained_ensemble(d);
    let (a, b, cache) = (d.join("alpha"), d.join("beta"), d.join("cache"));
    let (alpha, beta) = (d.join("alpha-model"), d.join("beta-model"));
    export(&["--run", a.to_str().unwrap(), "--out", alpha.to_str().unwrap()]);
    export(&["--run", b.to_str().unwrap(), "--out", beta.to_str().unwrap()]);
    let again = d.join("again");
    let said = export(&["--run", a.to_str().unwrap(), "--run", b.to_str().unwrap(), "--weights", "1,3", "--out", again.to_str().unwrap()]);
    assert!(said.contains("exported an ensemble of 2 (alpha 0.25, beta 0.75") && said.contains("out-of-fold AUC of the ensemble"), "{said}");
    for member in ["alpha", "beta"] {
        assert!(ensemble.join("members").join(member).join("fold-1/best.bpk").exists());
        assert!(ensemble.join("members").join(member).join("MODEL_CARD.md").exists());
    }

    // The card: the ensemble's own out-of-fold figures and operating points, its members listed.
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ensemble.join("model_card.json")).unwrap()).unwrap();
    assert_eq!(card["ensemble"]["no_ensemble_figure"], serde_json::Value::Null, "{card}");
    assert_eq!(card["validation"]["kind"], "out-of-fold (ensemble)");
    assert_eq!(card["ensemble"]["members"][1]["image_size"], 24);
    assert_eq!(card["operating_points"].as_array().unwrap().len(), 2);
    let markdown = std::fs::read_to_string(ensemble.join("MODEL_CARD.md")).unwrap();
    assert!(markdown.contains("## Ensemble") && markdown.contains("| beta | small-cnn | 24 px | 2 | 0.75 |"), "{markdown}");

    // predict --images: the weighted mean of the members' probabilities, each on its own scale.
    let images = fixtures().join("isic2017/images");
    let images = images.to_str().unwrap();
    let by_alpha = predict(&alpha, &["--images", images], &d.join("alpha.csv"));
    let by_beta = predict(&beta, &["--images", images], &d.join("beta.csv"));
    let by_ensemble = predict(&ensemble, &["--images", images], &d.join("ensemble.csv"));
    assert_eq!(by_ensemble.len(), 8);
    for (name, row) in &by_ensemble {
        let (pa, pb) = (number(&by_alpha[name], "target"), number(&by_beta[name], "target"));
        assert!((number(row, "target") - (0.25 * pa + 0.75 * pb)).abs() < 1e-9, "{name}: {row:?} from {pa} and {pb}");
        assert!((number(row, "member_alpha") - pa).abs() < 1e-12 && (number(row, "member_beta") - pb).abs() < 1e-12, "{row:?}");
        assert!((number(row, "member_spread") - (pa - pb).abs()).abs() < 1e-12, "{row:?}");
        let ua = number(&by_alpha[name], "target_uncalibrated");
        let ub = number(&by_beta[name], "target_uncalibrated");
        assert!((number(row, "target_uncalibrated") - (0.25 * ua + 0.75 * ub)).abs() < 1e-9, "{row:?}");
    }
    // ... and of a prepared cache, each member reading it at its own input size.
    let cache_arg = ["--data", cache.to_str().unwrap()];
    let cached_alpha = predict(&alpha, &cache_arg, &d.join("alpha-cache.csv"));
    let cached_beta = predict(&beta, &cache_arg, &d.join("beta-cache.csv"));
    for (name, row) in predict(&ensemble, &cache_arg, &d.join("ensemble-cache.csv")) {
        let expected = 0.25 * number(&cached_alpha[&name], "target") + 0.75 * number(&cached_beta[&name], "target");
        assert!((number(&row, "target") - expected).abs() < 1e-9, "{name}: {row:?}");
    }

    // explain: the maps of the member asked for, the scores the whole ensemble's.
    let explained = d.join("explained");
    let first = fixtures().join("isic2017/images/ISIC_0000000.jpg");
    let out = naevus(&["explain", "--run", ensemble.to_str().unwrap(), "--member", "beta", "--out", explained.to_str().unwrap(), first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("member beta"), "{}", text(&out));
    let scores = rows(&explained.join("scores.csv"));
    assert!((number(&scores["ISIC_0000000"], "target") - number(&by_ensemble["ISIC_0000000"], "target")).abs() <= 1e-6);
    let out = naevus(&["explain", "--run", ensemble.to_str().unwrap(), "--member", "gamma", "--out", explained.to_str().unwrap(), first.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("no member \"gamma\"; its members are alpha, beta"), "{}", text(&out));

    // The service: one model, the same number, the members and their spread in every answer.
    let server = Server::start(&ensemble, &[]);
    let model = get(&server.addr, "/v1/model").json();
    assert_eq!(model["members"].as_array().map(Vec::len), Some(2), "{model}");
    assert!(model["operating_point"]["threshold"].is_number(), "the ensemble's card gives its thresholds: {model}");
    let bytes = std::fs::read(&first).unwrap();
    let (content_type, body) = multipart(&[("image", Some("upload.jpg"), &bytes)]);
    let answer = request(&server.addr, "POST", "/v1/predict?explain=gradcam", &[("Content-Type", &content_type)], &body).json();
    let served = answer["melanoma_probability"].as_f64().unwrap();
    assert!((served - number(&by_ensemble["ISIC_0000000"], "target")).abs() <= 1e-6, "{answer}");
    assert!(answer["members"]["spread"].as_f64().is_some_and(|s| (s - number(&by_ensemble["ISIC_0000000"], "member_spread")).abs() <= 1e-6), "{answer}");
    assert!(answer["explanation"]["overlay_png"].is_string(), "the first member explains");
    server.terminate();

    // The mean of logits, from a saved definition.
    let definition = d.join("logit.json");
    let written = serde_json::json!({
        "combination": "mean-logit",
        "members": [{ "name": "a", "run": "alpha" }, { "name": "b", "run": b.to_str().unwrap() }],
    });
    std::fs::write(&definition, written.to_string()).unwrap();
    let logit = d.join("logit-model");
    export(&["--ensemble", definition.to_str().unwrap(), "--out", logit.to_str().unwrap()]);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let ln_odds = |p: f64| (p / (1.0 - p)).ln();
    for (name, row) in predict(&logit, &["--images", images], &d.join("logit.csv")) {
        let (pa, pb) = (number(&by_alpha[&name], "target"), number(&by_beta[&name], "target"));
        let expected = sigmoid(0.5 * ln_odds(pa) + 0.5 * ln_odds(pb));
        assert!((number(&row, "target") - expected).abs() < 1e-9, "{name}: {row:?}");
    }

    // A member changed after export is refused by name.
    let info = ensemble.join("members/beta/run.json");
    let changed = std::fs::read_to_string(&info).unwrap().replacen('{', "{\n ", 1);
    std::fs::write(&info, changed).unwrap();
    let out = naevus(&["predict", "--run", ensemble.to_str().unwrap(), "--images", images, "--out", d.join("x.csv").to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("member beta has changed since it was exported"), "{}", text(&out));
}

#[test]
fn members_trained_on_other_folds_give_no_ensemble_figure_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cache = fixture_cache(d);
    let a = fixture_run(d, &cache, "two-folds", &["--folds", "2"]);
    let b = fixture_run(d, &cache, "three-folds", &["--folds", "3"]);
    let ensemble = d.join("ensemble");
    let said = export(&["--run", a.to_str().unwrap(), "--run", b.to_str().unwrap(), "--combination", "mean-logit", "--out", ensemble.to_str().unwrap()]);
    assert!(said.contains("no out-of-fold figure of the ensemble") && said.contains("not trained on the same folds"), "{said}");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ensemble.join("model_card.json")).unwrap()).unwrap();
    assert!(card["operating_points"].as_array().unwrap().is_empty(), "{card}");
    assert!(card["validation"]["note"].as_str().unwrap().contains("member two-folds's figures alone"), "{card}");

    // Served without decisions (and saying why) unless a threshold is given.
    let server = Server::start(&ensemble, &[]);
    assert!(get(&server.addr, "/v1/model").json()["operating_point"].is_null());
    server.terminate();

    // Flags that make no sense for an ensemble are refused before any work.
    for (flags, expected) in [
        (vec!["--weights", "1,2,3"], "3 weights for 2 runs"),
        (vec!["--weights", "1,-2"], "members[1].weight"),
        (vec!["--folds", "fold-0"], "--folds chooses folds of one run"),
    ] {
        let out_dir = d.join("refused");
        let mut args = vec!["export", "--run", a.to_str().unwrap(), "--run", b.to_str().unwrap(), "--out", out_dir.to_str().unwrap()];
        args.extend_from_slice(&flags);
        let out = naevus(&args);
        assert!(!out.status.success() && text(&out).contains(expected), "{flags:?}: {}", text(&out));
        assert!(!out_dir.exists());
    }
}
