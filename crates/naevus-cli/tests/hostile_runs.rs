//! A run directory under a careless or hostile user (issue 18): damaged checkpoints and
//! caches, two processes on one run, a resume on another cache, numerical faults, duplicate or
//! impossible predictions, a resumed run that must repeat the uninterrupted one, temporary
//! files of killed processes, and run files with huge values.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, naevus, text};

fn prepare(dir: &Path, name: &str, size: &str) -> PathBuf {
    let out = prepare_output(&dir.join(name), size);
    assert!(out.status.success(), "{}", text(&out));
    dir.join(name)
}

/// `naevus prepare` of the ISIC 2017 fixtures into `cache`.
fn prepare_output(cache: &Path, size: &str) -> std::process::Output {
    let source = fixtures().join("isic2017");
    naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", size, "--out", cache.to_str().unwrap(),
    ])
}

fn train(cache: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--batch-size", "4"];
    args.extend_from_slice(extra);
    naevus(&args)
}

fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_checkpoints_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let run = dir.path().join("run");
    assert!(train(&cache, &run, &["--epochs", "2"]).status.success());

    flip_bytes(&run.join("fold-0/last.bpk"));
    let out = train(&cache, &run, &["--resume", "--epochs", "3"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fold-0/last.bpk") && text(&out).contains("checksum"), "{}", text(&out));

    flip_bytes(&run.join("fold-0/best.bpk"));
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", dir.path().join("p.csv").to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fold-0/best.bpk") && text(&out).contains("checksum"), "{}", text(&out));
    assert!(!dir.path().join("p.csv").exists());

    // A file of another program in a checkpoint's place (fold-0's flipped back: XOR undoes itself).
    flip_bytes(&run.join("fold-0/best.bpk"));
    std::fs::write(run.join("fold-1/best.bpk"), b"PK\x03\x04 not ours").unwrap();
    let out = naevus(&["explain", "--run", run.to_str().unwrap(), "--fold", "fold-1", "--out", dir.path().join("x").to_str().unwrap(),
        fixtures().join("isic2017/images/ISIC_0000000.jpg").to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("not a naevus weights file"), "{}", text(&out));
}

#[test]
fn a_second_process_on_the_same_run_is_refused_and_another_cache_too() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let run = dir.path().join("run");
    let args = ["train", "--data", cache.to_str().unwrap(), "--out", run.to_str().unwrap(), "--folds", "2", "--batch-size", "4", "--epochs", "400"];
    let mut first = Command::new(env!("CARGO_BIN_EXE_naevus")).args(args).stderr(std::process::Stdio::null()).spawn().unwrap();
    common::wait_for_file(&run.join("run.json"), &mut first);
    let second = train(&cache, &run, &["--resume"]);
    let _ = first.kill();
    let _ = first.wait();
    assert!(!second.status.success(), "{}", text(&second));
    assert!(text(&second).contains(&format!("another naevus process (pid {})", first.id())), "{}", text(&second));

    // The killed process's lock goes with it: --resume takes the run over, but not on a
    // cache of other images.
    let other = prepare(dir.path(), "other", "24");
    let out = train(&other, &run, &["--resume", "--epochs", "1"]);
    assert!(!out.status.success() && text(&out).contains("holds other images"), "{}", text(&out));
}

#[test]
fn numerical_faults_never_leave_non_finite_weights_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let out = train(&cache, &dir.path().join("nan"), &["--epochs", "2", "--weight-decay", "NaN"]);
    assert!(!out.status.success() && text(&out).contains("weight_decay must be"), "{}", text(&out));

    let run = dir.path().join("huge");
    let out = train(&cache, &run, &["--epochs", "2", "--lr", "1e10", "--warmup-epochs", "0", "--model", "small-cnn"]);
    let printed = text(&out);
    if out.status.success() {
        // It recovered with lower learning rates: whatever it saved predicts finite numbers.
        let pred = dir.path().join("p.csv");
        let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", pred.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    } else {
        assert!(printed.contains("halved") || printed.contains("not finite"), "{printed}");
    }
    assert!(!printed.contains("panicked"), "{printed}");
}

#[test]
fn evaluate_refuses_duplicate_ids_and_scores_that_are_not_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "16");
    let pred = dir.path().join("p.csv");
    for (text_in, expected) in [
        ("image_name,target\nISIC_0000000,0.2\nISIC_0000000,0.9\n", "appears twice (first on line 2)"),
        ("image_name,target\nISIC_0000000,1.7\n", "expected a probability between 0 and 1, found 1.7"),
    ] {
        std::fs::write(&pred, text_in).unwrap();
        let out = naevus(&["evaluate", "--pred", pred.to_str().unwrap(), "--truth", cache.to_str().unwrap()]);
        assert!(!out.status.success() && text(&out).contains(expected), "{}", text(&out));
    }
}

/// Each epoch's train loss, validation AUC and the weight average's validation AUC.
fn epochs(run: &Path, fold: &str) -> Vec<(f64, Option<f64>, Option<f64>)> {
    std::fs::read_to_string(run.join(fold).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            (m["train_loss"].as_f64().unwrap(), m["val_auc"].as_f64(), m["ema_val_auc"].as_f64())
        })
        .collect()
}

/// The sampler, augmentation and dropout draws depend on the seed, fold and epoch alone, and
/// the weight average is part of the training state, so a run killed and resumed gives the
/// metrics of the uninterrupted one (CPU backend).
#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let recipe = ["--epochs", "6", "--dropout-samples", "2", "--seed", "3", "--ema-decay", "0.9"];
    let whole = dir.path().join("whole");
    let out = train(&cache, &whole, &recipe);
    assert!(out.status.success() && text(&out).contains("out-of-fold AUC of the weight average"), "{}", text(&out));

    let resumed = dir.path().join("resumed");
    let mut args: Vec<&str> = vec!["train", "--data", cache.to_str().unwrap(), "--out", resumed.to_str().unwrap(), "--folds", "2", "--batch-size", "4"];
    args.extend_from_slice(&recipe);
    let mut child = Command::new(env!("CARGO_BIN_EXE_naevus")).args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
    common::wait_for_file(&resumed.join("fold-0/last.bpk"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let out = train(&cache, &resumed, &["--resume"]);
    assert!(out.status.success() && text(&out).contains("resuming after epoch"), "{}", text(&out));
    for fold in ["fold-0", "fold-1"] {
        let (a, b) = (epochs(&whole, fold), epochs(&resumed, fold));
        assert_eq!(a.len(), b.len());
        for (n, ((loss_a, auc_a, ema_a), (loss_b, auc_b, ema_b))) in a.iter().zip(&b).enumerate() {
            assert!((loss_a - loss_b).abs() < 1e-6, "{fold} epoch {}: train loss {loss_a} uninterrupted, {loss_b} resumed", n + 1);
            assert_eq!(auc_a, auc_b, "{fold} epoch {}", n + 1);
            assert!(ema_a.is_some(), "{fold} epoch {}: no ema_val_auc", n + 1);
            assert_eq!(ema_a, ema_b, "{fold} epoch {}: the weight average's AUC", n + 1);
        }
        assert!(resumed.join(fold).join("best_ema.bpk").exists());
    }

    // best_ema re-scores each held-out image as oof_ema.csv has it.
    let rescored = dir.path().join("oof_ema_rescored.csv");
    let out = naevus(&["predict", "--run", whole.to_str().unwrap(), "--oof", "--checkpoint", "best_ema", "--uncalibrated", "--out", rescored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let sorted = |path: &Path| {
        let mut lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(String::from).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&rescored), sorted(&whole.join("oof_ema.csv")));
    assert_eq!(sorted(&resumed.join("oof_ema.csv")).len(), sorted(&whole.join("oof_ema.csv")).len());
    // The average only watches: without it the weights train the same way, and the run says
    // why it has no best_ema.
    let plain = dir.path().join("plain");
    assert!(train(&cache, &plain, &recipe[..recipe.len() - 2]).status.success());
    for fold in ["fold-0", "fold-1"] {
        let with_average: Vec<(f64, Option<f64>)> = epochs(&whole, fold).into_iter().map(|(loss, auc, _)| (loss, auc)).collect();
        let without: Vec<(f64, Option<f64>)> = epochs(&plain, fold).into_iter().map(|(loss, auc, _)| (loss, auc)).collect();
        assert_eq!(with_average, without, "{fold}");
    }
    let out = naevus(&["predict", "--run", plain.to_str().unwrap(), "--oof", "--checkpoint", "best_ema", "--uncalibrated", "--out", rescored.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("has no best_ema checkpoint") && text(&out).contains("ema_decay"), "{}", text(&out));
}

/// A model trained with age and sex says so when it scores images that lack them.
#[test]
fn a_metadata_model_warns_about_images_without_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let run = dir.path().join("run");
    let out = train(&cache, &run, &["--epochs", "1", "--metadata", "sex,age", "--metadata-dropout", "0.5"]);
    assert!(out.status.success(), "{}", text(&out));

    let folders = dir.path().join("folders");
    let out = naevus(&["prepare", "--source", "folders", "--images", fixtures().join("folders").to_str().unwrap(), "--size", "32", "--out", folders.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--data", folders.to_str().unwrap(), "--out", dir.path().join("p.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("100% of these images lack sex against 12% of the training images"), "{}", text(&out));

    // Out-of-fold scoring of the training images with their age and sex blanked (the
    // figure of README's metadata-dropout table) warns as well.
    let source = fixtures().join("isic2017");
    let labels = std::fs::read_to_string(source.join("labels.csv")).unwrap();
    let blanked: Vec<String> = labels
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                return line.to_string();
            }
            let mut fields: Vec<&str> = line.split(',').collect();
            let n = fields.len();
            fields[n - 2] = "";
            fields[n - 1] = "";
            fields.join(",")
        })
        .collect();
    let csv = dir.path().join("labels-blanked.csv");
    std::fs::write(&csv, blanked.join("\n") + "\n").unwrap();
    let blank_cache = dir.path().join("blanked");
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", csv.to_str().unwrap(), "--images", source.join("images").to_str().unwrap(), "--size", "32",
        "--out", blank_cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let oof = dir.path().join("oof.csv");
    let out = naevus(&["predict", "--run", run.to_str().unwrap(), "--oof", "--data", blank_cache.to_str().unwrap(), "--out", oof.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("100% of these images lack sex against 12% of the training images"), "{}", text(&out));
    assert!(text(&out).contains("100% of these images lack age"), "{}", text(&out));
}

/// A byte of one image in the cache's images.u8 flipped: training stops naming the image
/// and what to do, and prepare run again decodes that image again.
#[test]
fn a_damaged_cache_image_stops_training_by_name_and_prepare_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let index = std::fs::read_to_string(cache.join("index.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(index.lines().next().unwrap()).unwrap();
    let (id, slot) = (first["record"]["id"].as_str().unwrap().to_string(), first["slot"].as_u64().unwrap() as usize);
    let mut images = std::fs::read(cache.join("images.u8")).unwrap();
    images[slot * 32 * 32 * 3 + 7] ^= 0x01;
    std::fs::write(cache.join("images.u8"), images).unwrap();

    let run = dir.path().join("run");
    let out = train(&cache, &run, &["--epochs", "1"]);
    assert!(!out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("images.u8") && printed.contains(&id) && printed.contains("checksum") && printed.contains("naevus prepare"), "{printed}");

    let out = prepare_output(&cache, "32");
    assert!(out.status.success() && text(&out).contains("note: 1 finished images no longer matched their checksums"), "{}", text(&out));
    let out = train(&cache, &run, &["--resume"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Temporary files that killed processes left in a run and its folds are removed when the
/// run is resumed, and stderr says how many.
#[cfg(unix)]
#[test]
fn temporaries_of_killed_processes_are_removed_when_a_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "16");
    let run = dir.path().join("run");
    assert!(train(&cache, &run, &["--epochs", "1"]).status.success());
    let mut ended = Command::new("true").spawn().unwrap();
    ended.wait().unwrap();
    let stale = [format!("run.json.{}", ended.id()), format!("fold-0/last.bpk.{}", ended.id()), format!("fold-1/best.bpk.{}", ended.id())];
    let stale: Vec<PathBuf> = stale
        .iter()
        .map(|name| {
            let path = run.join(name);
            path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_str().unwrap()))
        })
        .collect();
    for path in &stale {
        std::fs::write(path, "half a file").unwrap();
    }
    let out = train(&cache, &run, &["--resume", "--epochs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    for folder in [run.clone(), run.join("fold-0"), run.join("fold-1")] {
        let note = format!("note: removed 1 temporary file(s) left in {} by killed naevus processes", folder.display());
        assert!(text(&out).contains(&note), "{note} not in {}", text(&out));
    }
    assert!(stale.iter().all(|path| !path.exists()));
}

/// run.json with a 50 MB model name and config.toml with a 10 MB line: a short message.
#[test]
fn a_run_json_or_config_toml_with_huge_values_gives_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "16");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let info = serde_json::json!({
        "format": naevus_run::RUN_FORMAT, "naevus_version": "0.1.0", "model": "m".repeat(50 << 20), "loss": "bce", "num_outputs": 1,
        "image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "cache": cache, "folds": ["fold-0"],
        "classes": "binary", "dropout_samples": 1
    });
    std::fs::write(run.join("run.json"), serde_json::to_vec(&info).unwrap()).unwrap();
    std::fs::write(run.join("config.toml"), "model = \"small-cnn\"\n").unwrap();
    let predict = || naevus(&["predict", "--run", run.to_str().unwrap(), "--data", cache.to_str().unwrap(), "--out", dir.path().join("p.csv").to_str().unwrap()]);
    let out = predict();
    assert!(!out.status.success() && text(&out).len() < 500, "{} bytes: {}", text(&out).len(), text(&out).chars().take(500).collect::<String>());
    assert!(text(&out).contains("run.json") && text(&out).contains("model is 52428800 bytes long"), "{}", text(&out));

    let mut info = info;
    info["model"] = "small-cnn".into();
    std::fs::write(run.join("run.json"), serde_json::to_vec(&info).unwrap()).unwrap();
    std::fs::write(run.join("config.toml"), format!("model = \"small-cnn\"\ndevice = \"{}\n", "d".repeat(10 << 20))).unwrap();
    let out = predict();
    assert!(!out.status.success() && text(&out).len() < 500, "{} bytes: {}", text(&out).len(), text(&out).chars().take(500).collect::<String>());
    assert!(text(&out).contains("config.toml") && text(&out).contains("line 2, column"), "{}", text(&out));
}
