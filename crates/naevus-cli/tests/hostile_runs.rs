//! A run directory under a careless or hostile user (issue 18): damaged checkpoints, two
//! processes on one run, a resume on another cache, numerical faults, duplicate or
//! impossible predictions, and a resumed run that must repeat the uninterrupted one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixtures, naevus, text};

fn prepare(dir: &Path, name: &str, size: &str) -> PathBuf {
    let source = fixtures().join("isic2017");
    let cache = dir.join(name);
    let out = naevus(&[
        "prepare", "--source", "isic2017", "--csv", source.join("labels.csv").to_str().unwrap(), "--images",
        source.join("images").to_str().unwrap(), "--size", size, "--out", cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    cache
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

    // A file of another program in a checkpoint's place.
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
    while !run.join("run.json").exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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

fn epochs(run: &Path, fold: &str) -> Vec<(f64, Option<f64>)> {
    std::fs::read_to_string(run.join(fold).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            (m["train_loss"].as_f64().unwrap(), m["val_auc"].as_f64())
        })
        .collect()
}

/// The sampler, augmentation and dropout draws depend on the seed, fold and epoch alone, so a
/// run killed and resumed gives the metrics of the uninterrupted one (CPU backend).
#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = prepare(dir.path(), "cache", "32");
    let recipe = ["--epochs", "6", "--dropout-samples", "2", "--seed", "3"];
    let whole = dir.path().join("whole");
    assert!(train(&cache, &whole, &recipe).status.success());

    let resumed = dir.path().join("resumed");
    let mut args: Vec<&str> = vec!["train", "--data", cache.to_str().unwrap(), "--out", resumed.to_str().unwrap(), "--folds", "2", "--batch-size", "4"];
    args.extend_from_slice(&recipe);
    let mut child = Command::new(env!("CARGO_BIN_EXE_naevus")).args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
    while !resumed.join("fold-0/last.bpk").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = train(&cache, &resumed, &["--resume"]);
    assert!(out.status.success() && text(&out).contains("resuming after epoch"), "{}", text(&out));
    for fold in ["fold-0", "fold-1"] {
        let (a, b) = (epochs(&whole, fold), epochs(&resumed, fold));
        assert_eq!(a.len(), b.len());
        for (n, ((loss_a, auc_a), (loss_b, auc_b))) in a.iter().zip(&b).enumerate() {
            assert!((loss_a - loss_b).abs() < 1e-6, "{fold} epoch {}: train loss {loss_a} uninterrupted, {loss_b} resumed", n + 1);
            assert_eq!(auc_a, auc_b, "{fold} epoch {}", n + 1);
        }
    }
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
}
