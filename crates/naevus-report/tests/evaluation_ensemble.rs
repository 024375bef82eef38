//! The metric table, and ensembles on hand-made CSVs with hand-computed results.

use std::path::Path;

use naevus_report::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn evaluation_report_has_intervals_around_the_estimates_and_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 400;
    let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 5 == 0)).collect();
    let scores: Vec<f64> = labels.iter().map(|&y| (0.3 * f64::from(y) + rng.random_range(0.0..0.7)).min(1.0)).collect();
    let report = evaluate_scores(&scores, &labels, None, 0.5, 300, 1).unwrap();
    for e in [report.pauc_above_tpr_80, report.average_precision] {
        let (lo, hi) = e.ci95.unwrap();
        assert!(lo <= e.value && e.value <= hi, "{e:?}");
    }
    let s = report.sensitivity_at_specificity_90;
    let (lo, hi) = s.ci95.unwrap();
    assert!(lo <= s.sensitivity && s.sensitivity <= hi && s.specificity >= 0.9);
    assert!(report.ece_10_bins.is_some() && report.brier.is_some());
    let json = serde_json::to_string(&report).unwrap();
    // The BinaryReport fields stay at the top level of metrics.json.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["n", "positives", "auc", "auc_ci95", "accuracy", "sensitivity", "specificity", "threshold", "confusion", "log_loss"] {
        assert!(value.get(key).is_some(), "{key} missing from {json}");
    }
    // serde_json's default float parsing may differ in the last bit: compare loosely.
    let back: EvaluationReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.binary.confusion, report.binary.confusion);
    assert!((back.average_precision.value - report.average_precision.value).abs() < 1e-12);
    assert!((back.binary.auc_ci95.1 - report.binary.auc_ci95.1).abs() < 1e-12);
    assert_eq!(table_rows(&report).len(), 13);

    // Scores that are not probabilities: no calibration metrics, no error.
    let logits: Vec<f64> = scores.iter().map(|s| 10.0 * s - 5.0).collect();
    let report = evaluate_scores(&logits, &labels, None, 0.0, 0, 1).unwrap();
    assert_eq!((report.ece_10_bins, report.brier), (None, None));
    assert_eq!(report.average_precision.ci95, None);
}

#[test]
fn group_bootstrap_is_deterministic() {
    let scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.05];
    let labels = [0, 0, 1, 1, 1, 0, 1, 0];
    let groups = ["a", "a", "b", "b", "c", "d", "e", "f"];
    let a = evaluate_scores(&scores, &labels, Some(&groups), 0.5, 200, 3).unwrap();
    let b = evaluate_scores(&scores, &labels, Some(&groups), 0.5, 200, 3).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.bootstrap_unit, "group");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn read(dir: &Path, name: &str, text: &str) -> Predictions {
    read_predictions(&write(dir, name, text)).unwrap()
}

#[test]
fn normalised_ranks_average_ties() {
    assert_eq!(normalized_ranks(&[0.3, 0.1, 0.9]), vec![0.5, 0.0, 1.0]);
    // Ranks 1, 2.5, 2.5, 4 -> (r - 1) / 3.
    assert_eq!(normalized_ranks(&[0.1, 0.5, 0.5, 0.7]), vec![0.0, 0.5, 0.5, 1.0]);
    assert_eq!(normalized_ranks(&[0.2, 0.2, 0.2]), vec![0.5, 0.5, 0.5]);
    assert_eq!(normalized_ranks(&[4.0]), vec![0.5]);
}

#[test]
fn mean_weighted_and_rank_ensembles_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let a = read(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\nz,0.4\n");
    // Other order, an extra column, a BOM.
    let b = read(dir.path(), "b.csv", "\u{feff}image_name,target,fold\nz,0.9,1\nx,0.0,0\ny,0.3,2\n");
    let files = [a, b];

    let (ids, mean) = combine(&files, Mode::Mean, None).unwrap();
    assert_eq!(ids, ["x", "y", "z"]);
    let expected = [0.1, 0.45, 0.65];
    assert!(mean.iter().zip(expected).all(|(m, e)| close(*m, e)), "{mean:?}");

    // Weights 3:1 -> 0.75 a + 0.25 b.
    let (_, weighted) = combine(&files, Mode::Weighted, Some(&[3.0, 1.0])).unwrap();
    let expected = [0.15, 0.525, 0.525];
    assert!(weighted.iter().zip(expected).all(|(m, e)| close(*m, e)), "{weighted:?}");

    // Ranks: a: x 0, y 1, z 0.5; b: x 0, y 0.5, z 1.
    let (_, rank) = combine(&files, Mode::Rank, None).unwrap();
    assert_eq!(rank, vec![0.0, 0.75, 0.75]);
    let (_, rank) = combine(&files, Mode::Rank, Some(&[1.0, 3.0])).unwrap();
    assert_eq!(rank, vec![0.0, 0.625, 0.875]);

    let out = dir.path().join("ens.csv");
    write_predictions(&out, &ids, &rank).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image_name,target\nx,0\ny,0.625\nz,0.875\n");
    assert_eq!(read_predictions(&out).unwrap().scores, rank);
}

#[test]
fn ensemble_refuses_bad_inputs_with_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = read(dir.path(), "a.csv", "image_name,target\nx,0.2\ny,0.6\nz,0.4\n");
    let c = read(dir.path(), "c.csv", "image_name,target\nx,0.2\ny,0.6\nw,0.1\nv,0.3\n");
    let err = combine(&[a.clone(), c], Mode::Mean, None).unwrap_err().to_string();
    assert!(err.contains("c.csv") && err.contains("a.csv"), "{err}");
    assert!(err.contains("1 missing (\"z\")") && err.contains("2 extra (\"w\", \"v\")"), "{err}");

    let err = read_predictions(&write(dir.path(), "dup.csv", "image_name,target\nx,0.2\ny,0.6\nx,0.4\n")).unwrap_err().to_string();
    assert!(err.contains("dup.csv line 4, column 1") && err.contains("\"x\" appears twice (first on line 2)"), "{err}");

    let err = read_predictions(&write(dir.path(), "nan.csv", "image_name,target\nx,0.2\ny,abc\n")).unwrap_err().to_string();
    assert!(err.contains("nan.csv line 3, column 2 (target)") && err.contains("\"abc\""), "{err}");

    let err = read_predictions(&write(dir.path(), "inf.csv", "id,target\nx,inf\n")).unwrap_err().to_string();
    assert!(err.contains("inf.csv line 1") && err.contains("image_name or image_id or image") && err.contains("id, target"), "{err}");

    let err = read_predictions(&write(dir.path(), "empty.csv", "image_name,target\n")).unwrap_err().to_string();
    assert!(err.contains("empty.csv") && err.contains("no predictions"), "{err}");

    let err = read_predictions(&write(dir.path(), "ragged.csv", "image_name,target\nx,0.2\ny\n")).unwrap_err().to_string();
    assert!(err.contains("ragged.csv line 3"), "{err}");

    let b = a.clone();
    assert!(combine(&[a.clone(), b.clone()], Mode::Weighted, None).unwrap_err().to_string().contains("needs --weights"));
    assert!(combine(&[a.clone(), b.clone()], Mode::Mean, Some(&[1.0, 1.0])).unwrap_err().to_string().contains("--mode weighted"));
    assert!(combine(&[a.clone(), b.clone()], Mode::Weighted, Some(&[1.0])).unwrap_err().to_string().contains("1 weights for 2"));
    assert!(combine(&[a.clone(), b], Mode::Weighted, Some(&[1.0, -1.0])).unwrap_err().to_string().contains("-1"));
    assert!("median".parse::<Mode>().is_err());
}
