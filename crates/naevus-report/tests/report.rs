//! `write_report` on a small synthetic run directory whose cache holds the 8 CC0 fixture
//! images.

use std::path::{Path, PathBuf};

use naevus_data::{PrepareOptions, SourceKind, SourceSpec, prepare, read_source};
use naevus_report::{ReportOptions, write_report};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Labels of the fixtures: ISIC_0000002, _0004 and _0013 are melanoma.
const OOF: &str = "image_name,target,label,fold
ISIC_0000000,0.30,0,0
ISIC_0000002,0.80,1,0
ISIC_0000004,0.40,1,1
ISIC_0000013,0.65,1,1
ISIC_0000080,0.10,0,0
ISIC_0001769,0.55,0,1
ISIC_0012090,0.20,0,0
ISIC_0012103,0.05,0,1
";

const CONFIG: &str = "# the recipe\nmodel = \"small-cnn\"\nepochs = 3\nimage_size = 16\n";

/// Writes a run directory by hand (as `naevus train` would) and returns it.
pub fn synthetic_run(dir: &Path) -> PathBuf {
    let spec = SourceSpec {
        kind: SourceKind::Isic2017,
        csv: Some(fixtures().join("isic2017/labels.csv")),
        images: fixtures().join("isic2017/images"),
        metadata_csv: None,
    };
    let cache = dir.join("cache");
    prepare(read_source(&spec).unwrap(), &cache, &PrepareOptions { size: 16, threads: Some(1), progress: false, ..Default::default() }).unwrap();
    let run = dir.join("run");
    for fold in ["fold-0", "fold-1"] {
        std::fs::create_dir_all(run.join(fold)).unwrap();
    }
    let info = serde_json::json!({
        "format": 4, "naevus_version": "0.1.0", "classes": "binary", "dropout_samples": 1, "model": "small-cnn", "loss": "bce", "num_outputs": 1,
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "cache": cache, "folds": ["fold-0", "fold-1"]
    });
    std::fs::write(run.join("run.json"), serde_json::to_string_pretty(&info).unwrap()).unwrap();
    std::fs::write(run.join("config.toml"), CONFIG).unwrap();
    // Fold 0 keeps a weight average (ema_val_auc), drawn dashed beside its AUC.
    let line = |epoch: u32, train: f64, val: f64, auc: Option<f64>, ema_auc: Option<f64>| {
        serde_json::json!({"epoch": epoch, "lr": 0.001, "train_loss": train, "val_loss": val, "val_auc": auc, "ema_val_auc": ema_auc,
            "seconds": 1.5, "images_per_second": 100.0, "skipped_steps": 0})
        .to_string()
    };
    let fold0 = [line(1, 0.70, 0.68, Some(0.55), Some(0.52)), line(2, 0.60, 0.62, Some(0.70), Some(0.66)), line(3, 0.50, 0.60, Some(0.75), Some(0.74))].join("\n");
    let fold1 = [line(1, 0.72, 0.70, None, None), line(2, 0.58, 0.66, Some(0.60), None), line(3, 0.47, 0.64, Some(0.66), None)].join("\n");
    std::fs::write(run.join("fold-0/metrics.jsonl"), fold0 + "\n").unwrap();
    std::fs::write(run.join("fold-1/metrics.jsonl"), fold1 + "\n").unwrap();
    std::fs::write(run.join("oof.csv"), OOF).unwrap();
    run
}

/// Decodes a PNG and checks its size and that it is not a blank canvas.
fn check_png(path: &Path, size: (u32, u32)) {
    let image = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!(image.dimensions(), size, "{}", path.display());
    let values: Vec<f64> = image.pixels().map(|p| (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    assert!(variance > 50.0, "{} looks blank (variance {variance})", path.display());
    let non_white = image.pixels().filter(|p| p[0] < 200 || p[1] < 200 || p[2] < 200).count();
    assert!(non_white > 2000, "{} has only {non_white} drawn pixels", path.display());
}

#[test]
fn report_of_a_synthetic_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = synthetic_run(dir.path());
    let out = dir.path().join("report");
    let summary = write_report(&ReportOptions { run: run.clone(), pred: None, threshold: 0.5, bootstrap_rounds: 200, out: out.clone() }).unwrap();
    assert_eq!(summary.subgroup_note, None);
    assert_eq!((summary.metrics.binary.n, summary.metrics.binary.positives), (8, 3));
    // 3 positives x 5 negatives: the positives beat 4, 4 and 3 negatives -> 11 of 15... checked by hand:
    // 0.80 beats all 5, 0.65 beats all 5, 0.40 beats 0.30, 0.10, 0.20, 0.05 (4): 14 / 15.
    assert!((summary.metrics.binary.auc - 14.0 / 15.0).abs() < 1e-12);

    for (name, size) in [
        ("roc.png", (800, 600)),
        ("pr.png", (800, 600)),
        ("reliability.png", (800, 600)),
        ("confusion.png", (800, 600)),
        ("training.png", (1200, 500)),
    ] {
        check_png(&out.join(name), size);
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 5);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"), "external resources");
    for needle in [
        "<td>ROC AUC</td><td class=\"num\">0.9333</td>",
        "<td>pAUC above 80% TPR</td>",
        "<td>sensitivity at 95% specificity</td>",
        "<td>ECE (10 bins)</td>",
        "<h3>By sex</h3>",
        "<tr><td>female</td><td class=\"num\">5</td><td class=\"num\">2</td>",
        "<tr><td>male</td><td class=\"num\">2</td><td class=\"num\">1</td>",
        "<tr><td>60-75</td><td class=\"num\">3</td><td class=\"num\">1</td>",
        "<tr><td>&lt;30</td><td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">- (one class)</td>",
        "<tr><td>unknown</td><td class=\"num\">1</td><td class=\"num\">0</td>",
        "<h3>By anatomical site</h3>",
        "# the recipe\nmodel = &quot;small-cnn&quot;\nepochs = 3\n",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle:?}");
    }
    // To look at the charts: NAEVUS_KEEP_REPORT=/some/dir cargo test -p naevus-report --test report
    if let Some(keep) = std::env::var_os("NAEVUS_KEEP_REPORT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, keep.join(path.file_name().unwrap())).unwrap();
        }
    }
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics["metrics"]["roc_auc"]["value"].as_f64().is_some() && metrics["metrics"]["average_precision"]["ci95"].is_array());

    // --pred: a CSV without labels is scored with the cache's labels.
    let pred = dir.path().join("pred.csv");
    std::fs::write(&pred, "image_name,target\nISIC_0000000,0.1\nISIC_0000002,0.9\nISIC_0000004,0.7\nISIC_0000080,0.3\n").unwrap();
    let out2 = dir.path().join("report2");
    let summary = write_report(&ReportOptions { run: run.clone(), pred: Some(pred.clone()), threshold: 0.5, bootstrap_rounds: 50, out: out2.clone() }).unwrap();
    assert_eq!((summary.metrics.binary.n, summary.metrics.binary.positives, summary.metrics.binary.auc), (4, 2, 1.0));
    assert!(out2.join("report.html").exists());

    // An id the cache does not know is named.
    std::fs::write(&pred, "image_name,target\nISIC_0000000,0.1\nISIC_9999999,0.9\n").unwrap();
    let err = write_report(&ReportOptions { run: run.clone(), pred: Some(pred), threshold: 0.5, bootstrap_rounds: 0, out: out2 }).unwrap_err().to_string();
    assert!(err.contains("ISIC_9999999") && err.contains("pred.csv"), "{err}");

    // A broken metrics.jsonl line is named with line and column.
    std::fs::write(run.join("fold-1/metrics.jsonl"), "{\"epoch\": 1}\n{\"epoch\": x}\n").unwrap();
    let err = write_report(&ReportOptions { run, pred: None, threshold: 0.5, bootstrap_rounds: 0, out }).unwrap_err().to_string();
    assert!(err.contains("fold-1/metrics.jsonl line 2, column"), "{err}");
}
