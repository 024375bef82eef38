use naevus_metrics::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ---------------------------------------------------------------- roc_auc

#[test]
fn auc_simple_case() {
    // positives 0.35, 0.8; negatives 0.1, 0.4.
    // pairs: 0.35>0.1 (1), 0.35<0.4 (0), 0.8>0.1 (1), 0.8>0.4 (1) -> 3/4.
    // ranks: 0.1:1 0.35:2 0.4:3 0.8:4; R_pos = 6, U = 6 - 2*3/2 = 3, 3/(2*2).
    let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]).unwrap();
    assert_eq!(auc, 0.75);
}

#[test]
fn auc_all_tied_is_half() {
    // every (pos, neg) pair is tied and counts 1/2: 4 pairs * 0.5 / 4 = 0.5.
    assert_eq!(roc_auc(&[0.5; 4], &[0, 1, 0, 1]).unwrap(), 0.5);
    assert_eq!(roc_auc(&[0.0; 7], &[1, 1, 0, 0, 0, 1, 0]).unwrap(), 0.5);
}

#[test]
fn auc_single_cross_class_tie_counts_half() {
    // positives 0.5, 0.9; negatives 0.2, 0.5.
    // pairs: 0.5>0.2 (1), 0.5=0.5 (1/2), 0.9>0.2 (1), 0.9>0.5 (1) -> 3.5/4.
    // ranks: 0.2:1, 0.5,0.5:2.5 each, 0.9:4; R_pos = 6.5, U = 6.5 - 3 = 3.5.
    let auc = roc_auc(&[0.2, 0.5, 0.5, 0.9], &[0, 0, 1, 1]).unwrap();
    assert_eq!(auc, 0.875);
}

#[test]
fn auc_several_tie_runs() {
    // scores 0.1 0.3 0.3 0.3 0.7 0.7 0.9
    // labels  0   1   0   0   1   0   1   P = 3, N = 4, 12 pairs.
    // pos 0.3: >0.1 (1), ties two 0.3 negs (2 * 1/2), <0.7 (0)   = 2
    // pos 0.7: >0.1, >0.3, >0.3 (3), tie 0.7 neg (1/2)           = 3.5
    // pos 0.9: beats all 4 negatives                               = 4
    // U = 9.5 -> AUC = 9.5/12 = 19/24.
    // ranks: 0.1:1, 0.3 x3: avg 3, 0.7 x2: avg 5.5, 0.9: 7;
    // R_pos = 3 + 5.5 + 7 = 15.5, U = 15.5 - 3*4/2 = 9.5.
    let auc = roc_auc(&[0.1, 0.3, 0.3, 0.3, 0.7, 0.7, 0.9], &[0, 1, 0, 0, 1, 0, 1]).unwrap();
    assert!(close(auc, 19.0 / 24.0), "{auc}");
}

#[test]
fn auc_mostly_wrong_with_tie() {
    // positives 0.5, 0.1; negatives 0.9, 0.5.
    // pos 0.5: <0.9 (0), =0.5 (1/2); pos 0.1: 0 + 0 -> U = 0.5, AUC = 0.5/4.
    let auc = roc_auc(&[0.9, 0.5, 0.5, 0.1], &[0, 1, 0, 1]).unwrap();
    assert_eq!(auc, 0.125);
}

#[test]
fn auc_negative_zero_ties_with_zero() {
    // -0.0 == 0.0, so this is a full tie -> 0.5.
    assert_eq!(roc_auc(&[-0.0, 0.0], &[1, 0]).unwrap(), 0.5);
}

#[test]
fn auc_perfect_and_inverted() {
    let labels = [0, 0, 0, 1, 1];
    let scores = [0.1, 0.2, 0.3, 0.8, 0.9];
    assert_eq!(roc_auc(&scores, &labels).unwrap(), 1.0);
    let inverted: Vec<f64> = scores.iter().map(|s| -s).collect();
    assert_eq!(roc_auc(&inverted, &labels).unwrap(), 0.0);
    // Order-independent: shuffle the input.
    assert_eq!(
        roc_auc(&[0.9, 0.1, 0.8, 0.3, 0.2], &[1, 0, 1, 0, 0]).unwrap(),
        1.0
    );
}

#[test]
fn auc_is_invariant_to_monotone_transform() {
    let scores = [0.1, 0.3, 0.3, 0.3, 0.7, 0.7, 0.9];
    let labels = [0, 1, 0, 0, 1, 0, 1];
    let logits: Vec<f64> = scores.iter().map(|p: &f64| (p / (1.0 - p)).ln()).collect();
    assert_eq!(
        roc_auc(&scores, &labels).unwrap(),
        roc_auc(&logits, &labels).unwrap()
    );
}

#[test]
fn auc_errors() {
    assert_eq!(roc_auc(&[], &[]), Err(MetricsError::Empty));
    assert_eq!(
        roc_auc(&[0.1, 0.2], &[0]),
        Err(MetricsError::LengthMismatch {
            scores: 2,
            labels: 1
        })
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2, 0.3], &[1, 1, 1]),
        Err(MetricsError::OneClass { class: 1 })
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2], &[0, 0]),
        Err(MetricsError::OneClass { class: 0 })
    );
    assert_eq!(
        roc_auc(&[0.1, f64::NAN, 0.3], &[0, 1, 1]),
        Err(MetricsError::NonFinite { index: 1 })
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2, f64::INFINITY], &[0, 1, 1]),
        Err(MetricsError::NonFinite { index: 2 })
    );
    assert_eq!(
        roc_auc(&[0.1, 0.2, 0.3], &[0, 1, 2]),
        Err(MetricsError::InvalidLabel { index: 2, label: 2 })
    );
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        MetricsError::LengthMismatch {
            scores: 3,
            labels: 2
        }
        .to_string(),
        "length mismatch: 3 scores but 2 labels"
    );
    assert!(
        MetricsError::OneClass { class: 1 }
            .to_string()
            .contains("all labels are 1")
    );
    assert!(
        MetricsError::NonFinite { index: 4 }
            .to_string()
            .contains("index 4")
    );
    assert!(MetricsError::Empty.to_string().contains("empty"));
}

/// O(n^2) reference: fraction of (pos, neg) pairs ordered correctly, ties 1/2.
fn brute_force_auc(scores: &[f64], labels: &[u8]) -> f64 {
    let (mut num, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        if labels[i] != 1 {
            continue;
        }
        for (j, &sj) in scores.iter().enumerate() {
            if labels[j] != 0 {
                continue;
            }
            pairs += 1.0;
            if si > sj {
                num += 1.0;
            } else if si == sj {
                num += 0.5;
            }
        }
    }
    num / pairs
}

#[test]
fn auc_matches_brute_force_on_random_tied_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(2017);
    let mut checked = 0;
    for round in 0..500 {
        let n = rng.random_range(2..120);
        // Few distinct levels -> many ties, within and across classes.
        let levels = rng.random_range(1..12);
        let scores: Vec<f64> = (0..n)
            .map(|_| rng.random_range(0..levels) as f64 * 0.1)
            .collect();
        let p_pos: f64 = rng.random_range(0.05..0.95);
        let labels: Vec<u8> = (0..n).map(|_| u8::from(rng.random_bool(p_pos))).collect();
        match roc_auc(&scores, &labels) {
            Ok(auc) => {
                let reference = brute_force_auc(&scores, &labels);
                assert!(
                    (auc - reference).abs() < 1e-12,
                    "round {round}: {auc} vs {reference}"
                );
                // The trapezoidal area under roc_curve agrees as well.
                let curve = roc_curve(&scores, &labels).unwrap();
                let area: f64 = curve
                    .windows(2)
                    .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
                    .sum();
                assert!(
                    (area - reference).abs() < 1e-9,
                    "round {round}: area {area}"
                );
                checked += 1;
            }
            Err(MetricsError::OneClass { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(checked > 400);
}

// ---------------------------------------------------------------- roc_curve

#[test]
fn roc_curve_points() {
    // descending: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg); P = N = 2.
    let curve = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]).unwrap();
    let expected = [
        (f64::INFINITY, 0.0, 0.0),
        (0.8, 0.0, 0.5),
        (0.4, 0.5, 0.5),
        (0.35, 0.5, 1.0),
        (0.1, 1.0, 1.0),
    ];
    assert_eq!(curve.len(), expected.len());
    for (p, &(t, fpr, tpr)) in curve.iter().zip(&expected) {
        assert_eq!((p.threshold, p.fpr, p.tpr), (t, fpr, tpr));
    }
}

#[test]
fn roc_curve_one_point_per_distinct_threshold() {
    // distinct scores 0.9, 0.5, 0.2 -> 3 points + origin.
    let curve = roc_curve(&[0.5, 0.5, 0.2, 0.9, 0.5], &[1, 0, 0, 1, 0]).unwrap();
    assert_eq!(curve.len(), 4);
    assert_eq!((curve[1].fpr, curve[1].tpr), (0.0, 0.5)); // >= 0.9
    assert!(close(curve[2].fpr, 2.0 / 3.0) && curve[2].tpr == 1.0); // >= 0.5
    assert_eq!((curve[3].fpr, curve[3].tpr), (1.0, 1.0)); // >= 0.2
    assert_eq!(
        roc_curve(&[0.1], &[1]),
        Err(MetricsError::OneClass { class: 1 })
    );
}

#[test]
fn youden_picks_the_best_cut() {
    // Cut at >= 0.6 separates the classes perfectly.
    let t = youden_threshold(&[0.1, 0.2, 0.6, 0.7, 0.3], &[0, 0, 1, 1, 0]).unwrap();
    assert_eq!(t, 0.6);
}

// ---------------------------------------------------------------- confusion

#[test]
fn confusion_counts_and_rates() {
    let scores = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5];
    let labels = [0, 0, 1, 1, 0, 1];
    // >= 0.4: 0.4 neg (fp), 0.8 pos (tp), 0.5 neg (fp), 0.5 pos (tp);
    // <  0.4: 0.1 neg (tn), 0.35 pos (fn).
    let c = confusion_at(&scores, &labels, 0.4);
    assert_eq!(
        c,
        Confusion {
            tp: 2,
            fp: 2,
            tn: 1,
            fn_: 1
        }
    );
    assert_eq!(c.accuracy(), 0.5); // (2 + 1) / 6
    assert!(close(c.sensitivity(), 2.0 / 3.0)); // 2 / (2 + 1)
    assert!(close(c.specificity(), 1.0 / 3.0)); // 1 / (1 + 2)
    assert_eq!(c.precision(), 0.5); // 2 / (2 + 2)
    assert_eq!(c.f1(), 4.0 / 7.0); // 4 / (4 + 2 + 1)
    assert_eq!((c.total(), c.positives(), c.negatives()), (6, 3, 3));

    // Threshold above everything: all negative.
    let c = confusion_at(&scores, &labels, 0.95);
    assert_eq!(
        c,
        Confusion {
            tp: 0,
            fp: 0,
            tn: 3,
            fn_: 3
        }
    );
    assert_eq!(
        (c.sensitivity(), c.specificity(), c.accuracy()),
        (0.0, 1.0, 0.5)
    );
    // Threshold at the minimum: all positive.
    let c = confusion_at(&scores, &labels, 0.1);
    assert_eq!(
        c,
        Confusion {
            tp: 3,
            fp: 3,
            tn: 0,
            fn_: 0
        }
    );
}

#[test]
fn confusion_zero_denominators_give_zero() {
    let c = Confusion::default();
    assert_eq!(
        (c.accuracy(), c.sensitivity(), c.specificity(), c.f1()),
        (0.0, 0.0, 0.0, 0.0)
    );
    // Only negatives: sensitivity undefined -> 0.0, specificity defined.
    let c = confusion_at(&[0.2, 0.7], &[0, 0], 0.5);
    assert_eq!((c.sensitivity(), c.specificity()), (0.0, 0.5));
    assert!(!c.sensitivity().is_nan());
}

#[test]
fn try_confusion_validates() {
    assert_eq!(
        try_confusion_at(&[0.1, f64::NAN], &[0, 1], 0.5),
        Err(MetricsError::NonFinite { index: 1 })
    );
    assert_eq!(try_confusion_at(&[0.7], &[1], 0.5).unwrap().tp, 1);
}

#[test]
#[should_panic(expected = "2 scores but 1 labels")]
fn confusion_panics_on_length_mismatch() {
    confusion_at(&[0.1, 0.2], &[0], 0.5);
}

// ---------------------------------------------------------------- log loss

#[test]
fn log_loss_values() {
    // -(ln 0.9 + ln(1 - 0.2)) / 2 = (0.1053605157 + 0.2231435513) / 2
    let l = binary_cross_entropy(&[0.9, 0.2], &[1, 0]).unwrap();
    assert!((l - 0.164_252_033_5).abs() < 1e-9, "{l}");
    // 0.5 everywhere -> ln 2
    let l = binary_cross_entropy(&[0.5; 3], &[1, 0, 1]).unwrap();
    assert!(close(l, std::f64::consts::LN_2));
    // Clamping: p = 0 for a positive costs -ln(1e-7) = 16.1180956510, not inf.
    let l = binary_cross_entropy(&[0.0], &[1]).unwrap();
    assert!((l - 16.118_095_651).abs() < 1e-6, "{l}");
    let l = binary_cross_entropy(&[1.0, 0.0], &[1, 0]).unwrap();
    assert!(l > 0.0 && l < 1e-6);
    assert_eq!(binary_cross_entropy(&[], &[]), Err(MetricsError::Empty));
    assert_eq!(
        binary_cross_entropy(&[0.5, f64::NAN], &[1, 0]),
        Err(MetricsError::NonFinite { index: 1 })
    );
}

// ---------------------------------------------------------------- bootstrap

fn synthetic(n: usize, seed: u64) -> (Vec<f64>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<u8> = (0..n).map(|_| u8::from(rng.random_bool(0.3))).collect();
    let scores = labels
        .iter()
        .map(|&l| {
            let s: f64 = rng.random_range(0.0..1.0) + 0.4 * l as f64;
            (s * 20.0).round() / 20.0 // quantise: ties
        })
        .collect();
    (scores, labels)
}

#[test]
fn bootstrap_ci_contains_estimate_and_is_deterministic() {
    let (scores, labels) = synthetic(300, 1);
    let auc = roc_auc(&scores, &labels).unwrap();
    let (lo, hi) = bootstrap_auc_ci(&scores, &labels, None, 500, 42).unwrap();
    assert!(lo < auc && auc < hi, "{lo} {auc} {hi}");
    assert!(hi - lo > 0.01 && hi - lo < 0.3, "{lo} {hi}");
    assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
    assert_eq!(
        bootstrap_auc_ci(&scores, &labels, None, 500, 42).unwrap(),
        (lo, hi)
    );
    assert_ne!(
        bootstrap_auc_ci(&scores, &labels, None, 500, 43).unwrap(),
        (lo, hi)
    );
}

#[test]
fn grouped_bootstrap_runs() {
    let (scores, labels) = synthetic(240, 2);
    // 40 "patients" with 6 images each.
    let ids: Vec<String> = (0..240).map(|i| format!("patient{}", i / 6)).collect();
    let groups: Vec<&str> = ids.iter().map(String::as_str).collect();
    let auc = roc_auc(&scores, &labels).unwrap();
    let ci = bootstrap_auc_ci(&scores, &labels, Some(&groups), 400, 9).unwrap();
    assert!(ci.0 < auc && auc < ci.1, "{ci:?} {auc}");
    assert_eq!(
        bootstrap_auc_ci(&scores, &labels, Some(&groups), 400, 9).unwrap(),
        ci
    );
    // Grouping changes the resampling, hence the interval.
    assert_ne!(
        bootstrap_auc_ci(&scores, &labels, None, 400, 9).unwrap(),
        ci
    );
    // One id per sample is the ungrouped bootstrap in distribution (different draws).
    let singles: Vec<String> = (0..240).map(|i| i.to_string()).collect();
    let singles: Vec<&str> = singles.iter().map(String::as_str).collect();
    let ci1 = bootstrap_auc_ci(&scores, &labels, Some(&singles), 400, 9).unwrap();
    assert!(ci1.0 < auc && auc < ci1.1);
    assert_eq!(
        bootstrap_auc_ci(&scores, &labels, Some(&groups[..10]), 10, 0),
        Err(MetricsError::GroupLengthMismatch {
            scores: 240,
            groups: 10
        })
    );
}

#[test]
fn bootstrap_skips_one_class_resamples() {
    // One positive among 4: about (3/4)^4 ~ 32% of resamples miss it and are skipped.
    let ci = bootstrap_auc_ci(&[0.1, 0.2, 0.3, 0.9], &[0, 0, 0, 1], None, 200, 5).unwrap();
    assert_eq!(ci, (1.0, 1.0));
    // A single group holding everything: every resample is the full data.
    let g = ["a"; 4];
    let ci = bootstrap_auc_ci(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1], Some(&g), 50, 5).unwrap();
    assert_eq!(ci, (0.75, 0.75));
    assert_eq!(
        bootstrap_auc_ci(&[0.1, 0.9], &[0, 1], None, 0, 5),
        Err(MetricsError::NoValidResamples { rounds: 0 })
    );
}

// ---------------------------------------------------------------- report

#[test]
fn binary_report_fields_and_json_roundtrip() {
    let scores = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5];
    let labels = [0, 0, 1, 1, 0, 1];
    let r = binary_report(&scores, &labels, None, 0.4, 200, 3).unwrap();
    assert_eq!((r.n, r.positives, r.threshold), (6, 3, 0.4));
    // pairs (pos x neg): 0.35 beats 0.1 only (1); 0.8 beats all (3); 0.5 beats 0.1, 0.4,
    // ties 0.5 (2.5) -> 6.5 / 9.
    assert!(close(r.auc, 6.5 / 9.0));
    assert!(r.auc_ci95.0 <= r.auc && r.auc <= r.auc_ci95.1);
    assert_eq!(
        r.confusion,
        Confusion {
            tp: 2,
            fp: 2,
            tn: 1,
            fn_: 1
        }
    );
    assert_eq!(r.accuracy, 0.5);
    assert!(close(r.sensitivity, 2.0 / 3.0) && close(r.specificity, 1.0 / 3.0));
    assert!(close(
        r.log_loss,
        binary_cross_entropy(&scores, &labels).unwrap()
    ));

    let json = serde_json::to_string(&r).unwrap();
    let back: BinaryReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);

    // No bootstrap: NaN interval, which survives a JSON round trip as null.
    let r0 = binary_report(&scores, &labels, None, 0.5, 0, 3).unwrap();
    assert!(r0.auc_ci95.0.is_nan() && r0.auc_ci95.1.is_nan());
    let json = serde_json::to_string(&r0).unwrap();
    assert!(json.contains("\"auc_ci95\":[null,null]"), "{json}");
    let back: BinaryReport = serde_json::from_str(&json).unwrap();
    assert!(back.auc_ci95.0.is_nan() && back.auc == r0.auc);

    let groups = ["a", "a", "b", "b", "c", "c"];
    assert!(binary_report(&scores, &labels, Some(&groups), 0.5, 100, 1).is_ok());
    assert_eq!(
        binary_report(&scores, &[0, 0, 0, 0, 0, 0], None, 0.5, 10, 1),
        Err(MetricsError::OneClass { class: 0 })
    );
}
