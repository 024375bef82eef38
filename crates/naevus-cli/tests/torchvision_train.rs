//! `naevus weights fetch MODEL --from FILE.pth` then `naevus train --pretrained true` for the
//! models whose ImageNet weights are torchvision's files, with the stand-ins of
//! scripts/torchvision-standins.sh in their place (the genuine files are not downloadable
//! in CI): the file goes into the weights cache under torchvision's name, with a warning
//! that it is not the published file, and training starts from it. Small: 24 images of
//! data/sample at 64 px, one epoch.

mod common;
#[path = "../../naevus-engine/tests/standins/mod.rs"]
mod standins;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::text;
use standins::{standins, workspace};

/// The binary with `args`, its weights cache in `cache`.
fn naevus(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naevus")).env("NAEVUS_CACHE", cache).args(args).output().expect("the naevus binary runs")
}

/// A 64 px cache of 24 images of data/sample (ISIC 2017, CC0): 16 of its train split, and
/// 3 melanomas and 5 others of its validation split, so that validation has an AUC.
fn prepare(dir: &Path) -> PathBuf {
    let sample = workspace().join("data/sample");
    let labels = std::fs::read_to_string(sample.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    let (mut train, mut melanomas, mut others) = (0, 0, 0);
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let take = match (fields[1], fields[2]) {
            ("train", _) if train < 16 => {
                train += 1;
                true
            }
            ("val", "1") if melanomas < 3 => {
                melanomas += 1;
                true
            }
            ("val", "0") if others < 5 => {
                others += 1;
                true
            }
            _ => false,
        };
        if take {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    assert_eq!((train, melanomas, others), (16, 3, 5));
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
    let cache = dir.join("cache");
    let out = naevus(
        &dir.join("weights"),
        &[
            "prepare", "--source", "isic2017", "--csv", dir.join("labels.csv").to_str().unwrap(), "--images",
            sample.join("images").to_str().unwrap(), "--size", "64", "--out", cache.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    cache
}

/// Fetches `standin` as `model`'s weights into a fresh cache and trains one epoch from them.
fn fetch_and_train(model: &str, standin: &str, cached_as: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let weights = dir.path().join("weights");
    let file = standins().join(standin);
    let out = naevus(&weights, &["weights", "fetch", model, "--from", file.to_str().unwrap()]);
    assert!(out.status.success(), "{model}: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning") && stderr.contains("is not torchvision's published file"), "{model}: {stderr}");
    let cached = weights.join("weights").join(cached_as);
    assert_eq!(std::fs::metadata(&cached).unwrap().len(), std::fs::metadata(&file).unwrap().len(), "{}", cached.display());

    let run = dir.path().join("run");
    let out = naevus(
        &weights,
        &[
            "train", "--data", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--model", model, "--pretrained", "true",
            "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--warmup-epochs", "0", "--augment", "false",
        ],
    );
    assert!(out.status.success(), "{model}: {}", text(&out));
    for checkpoint in ["best.bpk", "last.bpk"] {
        assert!(run.join("fold-0").join(checkpoint).exists(), "{model}: fold-0/{checkpoint} missing\n{}", text(&out));
    }
}

#[test]
fn attention_vgg_trains_from_torchvision_vgg16_bn_weights() {
    fetch_and_train("attn-vgg16-bn", "vgg16_bn-standin.pth", "vgg16_bn-6c64b313.pth");
}

#[test]
fn resnet18_trains_from_torchvision_weights() {
    fetch_and_train("resnet18", "resnet18-standin.pth", "resnet18-f37072fd.pth");
}

#[test]
fn grayscale_resnet18_trains_from_torchvision_weights() {
    fetch_and_train("resnet18-gray", "resnet18-standin.pth", "resnet18-f37072fd.pth");
}

#[test]
fn resnet34_trains_from_torchvision_weights() {
    fetch_and_train("resnet34", "resnet34-standin.pth", "resnet34-b627a593.pth");
}

#[test]
fn resnet50_trains_from_torchvision_weights() {
    fetch_and_train("resnet50", "resnet50-standin.pth", "resnet50-0676ba61.pth");
}
