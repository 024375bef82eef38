//! A prediction job spread over processes: `predict --shard K/N` (or env/N with a Kubernetes
//! or Slurm index) in each, `naevus merge` after; N shards merged equal one unsharded run, and
//! the merge refuses shards that do not add up.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::serve::trained_bundle;
use common::{fixtures, naevus, text};

/// `image_name -> the rest of its row` of a CSV, and its header.
fn rows(csv: &Path) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r.iter().skip(1).map(str::to_string).collect())).collect();
    (header, rows)
}

fn succeed(args: &[&str]) -> String {
    let out = naevus(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

#[test]
fn shards_merged_equal_one_unsharded_run_and_the_merge_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bundle = trained_bundle(d, &[]);
    let model = bundle.to_str().unwrap();
    let cache = d.join("cache");

    // A cache in three shards, 8 images: 3, 3 and 2.
    let whole = d.join("whole.csv");
    let out = naevus(&["predict", "--run", model, "--data", cache.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    // --json: the closing summary alone on standard output.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("standard output is the JSON alone");
    assert_eq!((summary["images"].as_u64(), summary["skipped"].as_u64()), (Some(8), Some(0)), "{summary}");
    let shards: Vec<PathBuf> = (0..3).map(|k| d.join(format!("shard-{k}.csv"))).collect();
    for (k, shard) in shards.iter().enumerate() {
        let said = succeed(&["predict", "--run", model, "--data", cache.to_str().unwrap(), "--shard", &format!("{k}/3"), "--out", shard.to_str().unwrap()]);
        assert!(said.contains(&format!("shard {k} of 3: {} of the job's 8 images", if k < 2 { 3 } else { 2 })), "{said}");
    }
    let merged = d.join("merged.csv");
    let mut args = vec!["merge", "--out", merged.to_str().unwrap()];
    args.extend(shards.iter().rev().map(|p| p.to_str().unwrap()));
    let said = succeed(&args);
    assert!(said.contains("merged 3 shards") && said.contains("8 of the job's 8 images scored, each once"), "{said}");
    assert_eq!(rows(&merged), rows(&whole));

    // Image files, the index from a Kubernetes Indexed Job's environment; one file unreadable.
    let images = d.join("images");
    std::fs::create_dir(&images).unwrap();
    for entry in std::fs::read_dir(fixtures().join("isic2017/images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(images.join("broken.jpg"), b"\xff\xd8 not a jpeg").unwrap();
    let whole = d.join("whole-files.csv");
    succeed(&["predict", "--run", model, "--images", images.to_str().unwrap(), "--out", whole.to_str().unwrap()]);
    let shards: Vec<PathBuf> = (0..2).map(|k| d.join(format!("files-{k}.csv"))).collect();
    for (k, shard) in shards.iter().enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_naevus"))
            .args(["predict", "--run", model, "--images", images.to_str().unwrap(), "--shard", "env/2", "--out", shard.to_str().unwrap()])
            .env("JOB_COMPLETION_INDEX", k.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let merged = d.join("merged-files.csv");
    let said = succeed(&["merge", "--out", merged.to_str().unwrap(), shards[0].to_str().unwrap(), shards[1].to_str().unwrap()]);
    assert!(said.contains("8 of the job's 9 images scored, each once; 1 could not be read: broken"), "{said}");
    assert_eq!(rows(&merged), rows(&whole));

    // Shards that do not add up are refused, naming why.
    let cached: Vec<String> = (0..3).map(|k| d.join(format!("shard-{k}.csv")).to_str().unwrap().to_string()).collect();
    let out_arg = d.join("refused.csv");
    let refuse = |shard_files: &[&str], expected: &str| {
        let mut args = vec!["merge", "--out", out_arg.to_str().unwrap()];
        args.extend_from_slice(shard_files);
        let out = naevus(&args);
        assert!(!out.status.success() && text(&out).contains(expected), "{shard_files:?}: {}", text(&out));
        assert!(!out_arg.exists());
    };
    refuse(&[&cached[0], &cached[1]], "1 of the 3 shards are missing (shard 2)");
    refuse(&[&cached[0], &cached[1], &cached[1]], "shard 1 is given twice");
    refuse(&[&cached[0], &cached[1], shards[1].to_str().unwrap()], "they are not shards of one job");
    refuse(&[&cached[0], &cached[1], whole.to_str().unwrap()], "the CSV of `naevus predict --shard`?");
    let text_of_shard = std::fs::read_to_string(&cached[2]).unwrap();
    std::fs::write(&cached[2], text_of_shard.lines().take(2).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    refuse(&[&cached[0], &cached[1], &cached[2]], "holds 1 rows, its record says its shard scored 2");

    // --shard is checked before any work.
    for (shard, expected) in [("3/3", "must be below the shard count 3"), ("env/2", "none of JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID is set")] {
        let out = Command::new(env!("CARGO_BIN_EXE_naevus"))
            .args(["predict", "--run", model, "--data", cache.to_str().unwrap(), "--shard", shard, "--out", out_arg.to_str().unwrap()])
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .output()
            .unwrap();
        assert!(!out.status.success() && text(&out).contains(expected), "{shard}: {}", text(&out));
    }
}
