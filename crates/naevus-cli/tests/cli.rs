//! End-to-end tests of the `naevus` binary on the committed CC0 fixtures: prepare with bad
//! inputs, train with cross-validation, kill and resume, predict, evaluate.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, naevus, text};

/// An ISIC 2017-style dataset: the 8 fixture images, a truncated JPEG, a text file named
/// .jpg, and a row whose image does not exist.
fn dataset_with_bad_rows(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let source = fixtures().join("isic2017");
    let mut csv = std::fs::read_to_string(source.join("labels.csv")).unwrap();
    for entry in std::fs::read_dir(source.join("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(fixtures().join("bad/truncated.jpg"), images.join("ISIC_8000001.jpg")).unwrap();
    std::fs::copy(fixtures().join("bad/text.jpg"), images.join("ISIC_8000002.jpg")).unwrap();
    csv.push_str("ISIC_8000001,train,1,0,melanoma,40,male\n");
    csv.push_str("ISIC_8000002,train,0,0,nevus,40,male\n");
    csv.push_str("ISIC_8000003,train,0,0,nevus,40,male\n");
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    labels
}

fn prepare(dir: &Path) -> PathBuf {
    let labels = dataset_with_bad_rows(dir);
    let cache = dir.join("cache");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", labels.to_str().unwrap(), "--images",
        dir.join("images").to_str().unwrap(), "--size", "32", "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    cache
}

#[test]
fn prepare_reports_each_bad_input_by_name_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let rejects = std::fs::read_to_string(cache.join("rejects.csv")).unwrap();
    assert_eq!(rejects.lines().count(), 4, "{rejects}"); // header + 3 rejects
    assert!(rejects.contains("10,") && rejects.contains("ISIC_8000001.jpg") && rejects.contains("truncated"), "{rejects}");
    assert!(rejects.contains("ISIC_8000002.jpg"), "{rejects}");
    assert!(rejects.contains("ISIC_8000003") && rejects.contains("not found"), "{rejects}");
    // Running it again is a no-op that finds all the work done.
    let again = naevus(&[
        "prepare", "--source", "isic2017", "--csv", dir.path().join("labels.csv").to_str().unwrap(), "--images",
        dir.path().join("images").to_str().unwrap(), "--size", "32", "--out", cache.to_str().unwrap(),
    ]);
    assert!(text(&again).contains("prepared 8 images (8 already done), 3 rejected"), "{}", text(&again));
}

#[test]
fn a_missing_required_column_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, "image_id,melanoma\nISIC_0000000,0\n").unwrap();
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", csv.to_str().unwrap(), "--images", dir.path().to_str().unwrap(),
        "--out", dir.path().join("cache").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("seborrheic_keratosis") && message.contains("image_id, melanoma"), "{message}");
}

fn metrics_lines(fold_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fold_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_predict_evaluate_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn",
        "--folds", "2", "--epochs", "8", "--batch-size", "4", "--lr", "0.003", "--augment", "false",
        "--warmup-epochs", "0", "--seed", "7",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("out-of-fold AUC"), "{}", text(&out));

    for name in ["config.toml", "run.json", "oof.csv", "metrics.json", "calibration.json"] {
        assert!(run.join(name).exists(), "{name} missing");
    }
    for fold in ["fold-0", "fold-1"] {
        let fold_dir = run.join(fold);
        for name in ["best.bpk", "last.bpk", "val_predictions.csv"] {
            assert!(fold_dir.join(name).exists(), "{fold}/{name} missing");
        }
        let epochs = metrics_lines(&fold_dir);
        assert_eq!(epochs.len(), 8);
        let first = epochs[0]["train_loss"].as_f64().unwrap();
        let last = epochs[7]["train_loss"].as_f64().unwrap();
        assert!(last < first, "{fold}: training loss did not fall: {first} -> {last}");
    }
    // Every labelled image gets exactly one out-of-fold prediction.
    let oof = std::fs::read_to_string(run.join("oof.csv")).unwrap();
    assert_eq!(oof.lines().count(), 1 + 8);

    let predictions = dir.path().join("predictions.csv");
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", predictions.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = std::fs::read_to_string(&predictions).unwrap();
    // The run has a calibration: target is calibrated, the plain fold mean beside it.
    assert!(rows.starts_with("image_name,target,target_uncalibrated\n"), "{rows}");
    assert_eq!(rows.lines().count(), 1 + 8);
    for line in rows.lines().skip(1) {
        let p: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{line}");
    }

    // Test-time augmentation averages 8 views: same rows, different probabilities.
    let with_tta = dir.path().join("predictions_tta.csv");
    let out = naevus(&[
        "predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", with_tta.to_str().unwrap(), "--tta", "8",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let tta_rows = std::fs::read_to_string(&with_tta).unwrap();
    assert_eq!(tta_rows.lines().count(), 1 + 8);
    assert_ne!(tta_rows, rows);

    // Out-of-fold re-scoring: each image by the fold that held it out, same folds as oof.csv.
    let oof_tta = dir.path().join("oof_tta.csv");
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--oof", "--tta", "1", "--uncalibrated", "--out", oof_tta.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("out-of-fold AUC"), "{}", text(&out));
    let sorted = |csv: &str| {
        let mut lines: Vec<String> = csv.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    // With one view it reproduces the training run's own out-of-fold predictions exactly.
    assert_eq!(sorted(&std::fs::read_to_string(&oof_tta).unwrap()), sorted(&oof));

    // Calibrated probabilities keep the order of the plain ones; the temperature can be refit.
    let uncalibrated = dir.path().join("uncalibrated.csv");
    let out = naevus(&[
        "predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", uncalibrated.to_str().unwrap(), "--uncalibrated",
    ]);
    assert!(out.status.success() && text(&out).contains("uncalibrated as asked"), "{}", text(&out));
    let scores = |csv: &str| -> Vec<f64> { csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect() };
    let (plain, scaled) = (scores(&std::fs::read_to_string(&uncalibrated).unwrap()), scores(&rows));
    for i in 0..plain.len() {
        for j in 0..plain.len() {
            assert!(plain[i] <= plain[j] || scaled[i] >= scaled[j], "calibration changed the ranking");
        }
    }
    let out = naevus(&["calibrate", "--run", run.to_str().unwrap()]);
    assert!(out.status.success() && text(&out).contains("fitted on 8 images"), "{}", text(&out));

    let report = dir.path().join("report");
    let out = naevus(&["evaluate", "--pred", predictions.to_str().unwrap(), "--truth", cache.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ROC AUC"), "{}", text(&out));
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["images"], 8);
    assert_eq!(metrics["melanomas"], 3);
    // --json prints the same fields on standard output, alone.
    let out = naevus(&["evaluate", "--pred", predictions.to_str().unwrap(), "--truth", cache.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("standard output is the JSON alone");
    assert_eq!(printed, metrics);

    // A second train into the same directory refuses rather than overwriting.
    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("--resume"), "{}", text(&out));
}

#[test]
fn a_killed_training_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let args = [
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--epochs", "40",
        "--batch-size", "4", "--augment", "false",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_naevus")).args(args).spawn().unwrap();
    // Kill it once the first epoch's training state (last.bpk) is complete.
    common::wait_for_file(&run.join("fold-0/last.bpk"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    let done_before: u64 = printed
        .split("resuming after epoch ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in {printed}"));
    assert!(done_before >= 1 && done_before < 40, "{done_before}");
    // One metrics line per epoch: the killed epoch is redone, none is lost or doubled.
    let epochs: Vec<u64> = metrics_lines(&run.join("fold-0")).iter().map(|m| m["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (1..=40).collect::<Vec<u64>>());
    assert!(run.join("fold-1/best.bpk").exists());
}

/// Two processes with the same recipe share one run, one fold each, at the same time; a last
/// `--resume` pools their out-of-fold predictions.
#[test]
fn folds_trained_by_separate_processes_pool_into_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let args = |extra: &[&str]| -> Vec<String> {
        let base = ["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--epochs", "2", "--batch-size", "4"];
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let out = naevus(&args(&["--only-folds", "fold-9"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success() && text(&out).contains("no fold \"fold-9\"; its folds are fold-0, fold-1"), "{}", text(&out));

    let piped = std::process::Stdio::piped;
    let first = Command::new(env!("CARGO_BIN_EXE_naevus")).args(args(&["--only-folds", "fold-0"])).stdout(piped()).stderr(piped()).spawn().unwrap();
    let second = Command::new(env!("CARGO_BIN_EXE_naevus")).args(args(&["--only-folds", "fold-1"])).output().unwrap();
    let first = first.wait_with_output().unwrap();
    for out in [&first, &second] {
        assert!(out.status.success() && text(out).contains("trained 1 of 2 folds"), "{}", text(out));
    }
    assert!(run.join("fold-0/best.bpk").exists() && run.join("fold-1/best.bpk").exists());
    assert!(!run.join("oof.csv").exists());
    // Another recipe does not join the run.
    let out = naevus(&args(&["--only-folds", "fold-1", "--lr", "0.5"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success() && text(&out).contains("already holds a run"), "{}", text(&out));

    let out = naevus(&args(&["--resume"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success() && text(&out).contains("out-of-fold AUC"), "{}", text(&out));
    assert!(text(&out).contains("fold-0: already trained") && text(&out).contains("fold-1: already trained"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(run.join("oof.csv")).unwrap().lines().count(), 1 + 8);
}

#[test]
fn a_backend_that_was_not_compiled_in_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let device = if cfg!(feature = "vulkan") { "tch" } else { "vulkan" };
    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", dir.path().join("run").to_str().unwrap(), "--device", device]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("device \"{device}\" was not compiled into this naevus")), "{}", text(&out));
}

/// Seed 004's recipe on the fixtures: a HAM10000-format external set joined with
/// `naevus combine`, nine diagnosis classes, a metadata branch with multi-sample dropout,
/// warm-up from a tenth and cosine restarts; external images validated too, so each fold
/// scores primary images apart and keeps a best_primary checkpoint that predict can use.
#[test]
fn metadata_nine_classes_and_external_data_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let primary = prepare(dir.path());
    let ham = dir.path().join("ham");
    std::fs::create_dir_all(ham.join("images")).unwrap();
    let mut csv = String::from("image_id,lesion_id,dx,age,sex,localization\n");
    let sources = ["ISIC_0000002", "ISIC_0000000", "ISIC_0012090", "ISIC_0000004", "ISIC_0000013", "ISIC_0001769"];
    for (n, (source, dx)) in sources.iter().zip(["mel", "nv", "bkl", "bcc", "mel", "nv"]).enumerate() {
        let id = format!("ISIC_900000{n}");
        std::fs::copy(fixtures().join(format!("isic2017/images/{source}.jpg")), ham.join(format!("images/{id}.jpg"))).unwrap();
        csv.push_str(&format!("{id},HAM_{n},{dx},{},male,back\n", 40 + n));
    }
    std::fs::write(ham.join("metadata.csv"), csv).unwrap();
    let ham_cache = dir.path().join("ham_cache");
    let out = naevus(&[
        "prepare", "--source", "ham10000", "--csv", ham.join("metadata.csv").to_str().unwrap(), "--images",
        ham.join("images").to_str().unwrap(), "--size", "32", "--out", ham_cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let combined = dir.path().join("combined");
    let out = naevus(&["combine", primary.to_str().unwrap(), "--external", ham_cache.to_str().unwrap(), "--out", combined.to_str().unwrap()]);
    assert!(text(&out).contains("combined 14 images (8 primary, 6 external)"), "{}", text(&out));

    let train = |run: &Path, external_in_validation: &str| {
        naevus(&[
            "train", "--data", combined.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--folds", "2",
            "--epochs", "3", "--batch-size", "4", "--classes", "nine", "--loss", "cross-entropy", "--metadata", "sex,age,site",
            "--dropout-samples", "5", "--warmup-start", "0.1", "--restart-epochs", "1", "--external-in-validation",
            external_in_validation, "--seed", "3",
        ])
    };
    let run = dir.path().join("run");
    let out = train(&run, "true");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("9-class accuracy") && text(&out).contains("primary AUC"), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["num_outputs"], 9);
    assert_eq!(info["metadata"]["fields"], serde_json::json!(["sex", "age", "site"]));
    assert_eq!(info["metadata"]["sites"], serde_json::json!(["torso"]), "HAM's back is the 2020 data's torso");
    // Every image, external ones included, is validated once; every class has a column.
    let classes = std::fs::read_to_string(run.join("oof_classes.csv")).unwrap();
    assert_eq!(classes.lines().count(), 1 + 14);
    assert!(classes.starts_with("image_name,fold,class,p_melanoma,p_nevus,p_BKL,p_BCC,"), "{classes}");
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("class_metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["images"], 14);
    let mut primary_scored = 0;
    for fold in ["fold-0", "fold-1"] {
        let epochs = metrics_lines(&run.join(fold));
        assert_eq!(epochs.len(), 3);
        assert!(epochs[0]["lr"].as_f64().unwrap() > epochs[2]["lr"].as_f64().unwrap() || epochs[1]["lr"] != epochs[2]["lr"]);
        if epochs.iter().any(|e| e["val_auc_primary"].is_f64()) {
            assert!(run.join(fold).join("best_primary.bpk").exists(), "{fold}");
            primary_scored += 1;
        }
    }
    assert!(primary_scored > 0, "no fold had both classes among its primary images");
    for checkpoint in ["best", "final"] {
        let predictions = dir.path().join(format!("{checkpoint}.csv"));
        let out = naevus(&[
            "predict", "--run", run.to_str().unwrap(), "--data", primary.to_str().unwrap(), "--checkpoint", checkpoint, "--out",
            predictions.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{checkpoint}: {}", text(&out));
        assert_eq!(std::fs::read_to_string(&predictions).unwrap().lines().count(), 1 + 8);
    }

    // By default external images only train: validation holds the 8 primary images, and
    // there is no best_primary checkpoint to ask for.
    let run2 = dir.path().join("run2");
    let out = train(&run2, "false");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("6 external images train in every fold"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(run2.join("oof.csv")).unwrap().lines().count(), 1 + 8);
    let out = naevus(&[
        "predict", "--run", run2.to_str().unwrap(), "--data", primary.to_str().unwrap(), "--checkpoint", "best_primary", "--out",
        dir.path().join("x.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no best_primary checkpoint"), "{}", text(&out));
}

/// Half precision: a bf16 run trains (finite losses), predicts with the same precision, and
/// a pretrained half-precision run is refused with the reason instead of crashing.
#[test]
fn bf16_trains_and_predicts_and_fine_tunes_from_imagenet() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "small-cnn", "--folds", "2",
        "--epochs", "3", "--batch-size", "4", "--precision", "bf16", "--augment", "false", "--seed", "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for fold in ["fold-0", "fold-1"] {
        for epoch in metrics_lines(&run.join(fold)) {
            assert!(epoch["train_loss"].as_f64().is_some_and(f64::is_finite), "{fold}: {epoch}");
        }
    }
    let predictions = dir.path().join("p.csv");
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", predictions.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for line in std::fs::read_to_string(&predictions).unwrap().lines().skip(1) {
        let p: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{line}");
    }
    // Fine-tuning from ImageNet in bf16: the f32 weights are cast as they load.
    if std::env::var_os("NAEVUS_SKIP_PRETRAINED").is_none() {
        let run = dir.path().join("r2");
        let out = naevus(&[
            "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", "efficientnet-lite0",
            "--pretrained", "true", "--precision", "bf16", "--folds", "2", "--epochs", "1", "--batch-size", "4", "--augment", "false",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        for epoch in metrics_lines(&run.join("fold-0")) {
            assert!(epoch["train_loss"].as_f64().is_some_and(f64::is_finite), "{epoch}");
        }
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `naevus models | head -0`: the reader is gone before the first line is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_naevus"))
        .arg("models")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `predict --images` scores image files with the same decode, crop and resizes as prepare
/// and the loader: the same probabilities as prepare + `predict --data`.
#[test]
fn scoring_files_directly_equals_prepare_then_predict() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let out = naevus(&[
        "train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--epochs", "1", "--batch-size", "4",
        "--image-size", "24", "--metadata", "sex,age",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let read = |path: &Path| -> std::collections::HashMap<String, f64> {
        std::fs::read_to_string(path).unwrap().lines().skip(1).map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            // --images names each row by the file's path (issue 29.9); a cache by the image id.
            let id = Path::new(cells[0]).file_stem().unwrap().to_str().unwrap();
            (id.to_string(), cells[1].parse().unwrap())
        }).collect()
    };
    for tta in ["1", "4"] {
        let from_cache = dir.path().join(format!("cache_{tta}.csv"));
        let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--tta", tta, "--out", from_cache.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));

        // The same images as a CSV of paths with the label CSV's age and sex.
        let labels = std::fs::read_to_string(dir.path().join("labels.csv")).unwrap();
        let mut list = String::from("path,age,sex\n");
        for line in labels.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            let file = ["jpg", "png", "JPG"].iter().map(|e| format!("images/{}.{e}", cells[0])).find(|f| dir.path().join(f).exists());
            if let Some(file) = file {
                list.push_str(&format!("{file},{},{}\n", cells[5], cells[6]));
            }
        }
        std::fs::write(dir.path().join("list.csv"), list).unwrap();
        let from_files = dir.path().join(format!("files_{tta}.csv"));
        let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--images", dir.path().join("list.csv").to_str().unwrap(), "--tta", tta, "--out", from_files.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("skipping") && text(&out).contains("truncated"), "the truncated file is named: {}", text(&out));

        let (cached, direct) = (read(&from_cache), read(&from_files));
        assert_eq!(cached.len(), 8);
        assert_eq!(direct.len(), 8, "{direct:?}");
        for (id, p) in &cached {
            let q = direct[id];
            assert!((p - q).abs() < 1e-5, "{id}: {p} from the cache, {q} from the file (tta {tta})");
        }
    }
}

/// `naevus export` writes a model folder with its model card that predict takes as --run.
#[test]
fn an_exported_model_predicts_from_files_and_carries_its_card() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path());
    let run = dir.path().join("run");
    let out = naevus(&["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--epochs", "1", "--batch-size", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let model = dir.path().join("model");
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap()]);
    assert!(out.status.success() && text(&out).contains("out-of-fold AUC"), "{}", text(&out));
    let mut files: Vec<String> = walk(&model);
    files.sort();
    assert_eq!(
        files,
        ["MODEL_CARD.md", "WEIGHTS.md", "calibration.json", "config.toml", "fold-0/best.bpk", "fold-0/model.safetensors", "fold-1/best.bpk",
         "fold-1/model.safetensors", "model_card.json", "run.json"]
    );
    let weights = std::fs::read_to_string(model.join("WEIGHTS.md")).unwrap();
    assert!(weights.contains("| `") && weights.contains("running_var") && weights.contains("F32"), "{weights}");

    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("model_card.json")).unwrap()).unwrap();
    assert_eq!(card["training_data"]["images"], 8);
    assert_eq!(card["validation"]["kind"], "out-of-fold");
    assert_eq!(card["operating_points"].as_array().unwrap().len(), 2);
    assert!(card["subgroups"].as_array().unwrap().iter().any(|s| s["attribute"] == "sex"));
    let markdown = std::fs::read_to_string(model.join("MODEL_CARD.md")).unwrap();
    assert!(markdown.contains("not a diagnosis") && markdown.contains("Known limits") && markdown.contains("sensitivity 95%"), "{markdown}");

    // The folder alone scores image files: the same numbers as the run.
    let image = fixtures().join("isic2017/images/ISIC_0000000.jpg");
    let score = |run: &Path, name: &str| -> String {
        let csv = dir.path().join(name);
        let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--images", image.to_str().unwrap(), "--out", csv.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read_to_string(csv).unwrap()
    };
    assert_eq!(score(&model, "a.csv"), score(&run, "b.csv"));
    // A second export into the same folder is refused.
    let out = naevus(&["export", "--run", run.to_str().unwrap(), "--out", model.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("not empty"), "{}", text(&out));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.extend(walk(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    files
}
