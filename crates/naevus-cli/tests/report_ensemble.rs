//! End-to-end tests of `naevus ensemble`, `naevus evaluate` and `naevus report`.

mod common;

use std::path::Path;

use common::{fixtures, naevus, text, write};

#[test]
fn ensemble_modes_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\nz,0.4\n");
    let b = write(dir.path(), "b.csv", "image_name,target\nz,0.9\nx,0.0\ny,0.3\n");
    let out = dir.path().join("ens.csv");
    let out_s = out.to_str().unwrap();

    let run = naevus(&["ensemble", &a, &b, "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    // Mean: x (0.2 + 0.0) / 2, y (0.6 + 0.3) / 2, z (0.4 + 0.9) / 2.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image_name,target\nx,0.1\ny,0.44999999999999996\nz,0.65\n");

    // Ranks: a gives x 0, y 1, z 0.5; b gives x 0, y 0.5, z 1. Weights 1:3.
    let run = naevus(&["ensemble", &a, &b, "--mode", "rank", "--weights", "1,3", "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image_name,target\nx,0\ny,0.625\nz,0.875\n");

    // Weighted 0.5,0.5 equals the mean.
    let run = naevus(&["ensemble", &a, &b, "--mode", "weighted", "--weights", "0.5,0.5", "--out", out_s]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("image_name,target\nx,0.1\n"));
}

#[test]
fn ensemble_refusals_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\nz,0.4\n");
    let other = write(dir.path(), "other.csv", "image_name,target\nx,0.2\ny,0.6\nq,0.4\n");
    let dup = write(dir.path(), "dup.csv", "image_name,target\nx,0.2\ny,0.6\ny,0.4\n");
    let bad = write(dir.path(), "bad.csv", "image_name,target\nx,0.2\ny,high\nz,0.4\n");
    let out = dir.path().join("ens.csv");
    let out_s = out.to_str().unwrap();
    for (file, expected) in [
        (&other, vec!["other.csv", "1 missing (\"z\")", "1 extra (\"q\")"]),
        (&dup, vec!["dup.csv line 4, column 1", "\"y\" appears twice"]),
        (&bad, vec!["bad.csv line 3, column 2 (target)", "\"high\""]),
    ] {
        let run = naevus(&["ensemble", &a, file, "--out", out_s]);
        assert!(!run.status.success());
        let message = text(&run);
        for e in expected {
            assert!(message.contains(e), "{message} lacks {e}");
        }
    }
    let run = naevus(&["ensemble", &a, &a, "--mode", "weighted", "--out", out_s]);
    assert!(!run.status.success() && text(&run).contains("needs --weights"), "{}", text(&run));
    let run = naevus(&["ensemble", &a, &a, "--mode", "median", "--out", out_s]);
    assert!(!run.status.success() && text(&run).contains("mean, rank or weighted"), "{}", text(&run));
    assert!(!out.exists());
}

#[test]
fn evaluate_prints_and_writes_the_full_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut pred = String::from("image_name,target\n");
    let mut truth = String::from("image_name,target,patient_id\n");
    for i in 0..200 {
        let label = u8::from(i % 4 == 0);
        let score = (f64::from(label) * 0.3 + ((i * 37) % 100) as f64 / 150.0).min(1.0);
        pred.push_str(&format!("img{i},{score}\n"));
        truth.push_str(&format!("img{i},{label},p{}\n", i / 2));
    }
    let pred = write(dir.path(), "pred.csv", &pred);
    let truth = write(dir.path(), "truth.csv", &truth);
    let out = dir.path().join("eval");
    let run = naevus(&["evaluate", "--pred", &pred, "--truth", &truth, "--bootstrap", "200", "--out", out.to_str().unwrap()]);
    let printed = text(&run);
    assert!(run.status.success(), "{printed}");
    for row in ["ROC AUC", "pAUC above 80% TPR", "average precision", "sensitivity at 90% specificity", "specificity at 95% sensitivity", "ECE (10 bins)", "Brier score"] {
        assert!(printed.contains(row), "{printed} lacks {row}");
    }
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for key in ["roc_auc", "log_loss", "pauc_above_tpr_80", "average_precision", "sensitivity_at_specificity_95", "ece_10_bins", "brier"] {
        assert!(metrics["metrics"][key]["value"].is_number(), "metrics.json lacks {key}: {metrics}");
    }
    assert!(metrics["metrics"]["roc_auc"]["ci95"].is_array());
    assert!(metrics["confusion"]["false_negatives"].is_number());
    assert_eq!(metrics["bootstrap"]["unit"], "group");
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn report_of_a_hand_written_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = naevus_data::SourceSpec {
        kind: naevus_data::SourceKind::Isic2017,
        csv: Some(fixtures().join("isic2017/labels.csv")),
        images: fixtures().join("isic2017/images"),
        metadata_csv: None,
    };
    let cache = dir.path().join("cache");
    let options = naevus_data::PrepareOptions { size: 16, threads: Some(1), progress: false, ..Default::default() };
    naevus_data::prepare(naevus_data::read_source(&spec).unwrap(), &cache, &options).unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("fold-0")).unwrap();
    let info = serde_json::json!({"format": 4, "naevus_version": "0.1.0", "classes": "binary", "dropout_samples": 1, "model": "small-cnn", "loss": "bce", "num_outputs": 1,
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "cache": cache, "folds": ["fold-0"]});
    std::fs::write(run.join("run.json"), info.to_string()).unwrap();
    std::fs::write(run.join("config.toml"), "model = \"small-cnn\"\nepochs = 2\n").unwrap();
    std::fs::write(
        run.join("fold-0/metrics.jsonl"),
        "{\"epoch\":1,\"lr\":0.001,\"train_loss\":0.7,\"val_loss\":0.69,\"val_auc\":0.6,\"seconds\":1.0,\"images_per_second\":8.0,\"skipped_steps\":0}\n\
         {\"epoch\":2,\"lr\":0.0005,\"train_loss\":0.6,\"val_loss\":0.65,\"val_auc\":0.7,\"seconds\":1.0,\"images_per_second\":8.0,\"skipped_steps\":0}\n",
    )
    .unwrap();
    std::fs::write(
        run.join("oof.csv"),
        "image_name,target,label,fold\nISIC_0000000,0.3,0,0\nISIC_0000002,0.8,1,0\nISIC_0000004,0.4,1,0\nISIC_0000013,0.65,1,0\n\
         ISIC_0000080,0.1,0,0\nISIC_0001769,0.55,0,0\nISIC_0012090,0.2,0,0\nISIC_0012103,0.05,0,0\n",
    )
    .unwrap();
    let out = dir.path().join("report");
    let result = naevus(&["report", "--run", run.to_str().unwrap(), "--bootstrap", "100", "--out", out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", text(&result));
    for (name, size) in [("roc.png", (800, 600)), ("pr.png", (800, 600)), ("reliability.png", (800, 600)), ("confusion.png", (800, 600)), ("training.png", (1200, 500))] {
        assert_eq!(png_size(&out.join(name)), size, "{name}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 5);
    assert!(html.contains("<h3>By age</h3>") && html.contains("<td>75+</td>") && html.contains("epochs = 2"));

    let missing = naevus(&["report", "--run", dir.path().join("nope").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!missing.status.success() && text(&missing).contains("run.json"), "{}", text(&missing));
}
