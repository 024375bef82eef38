//! Hand-computed values, properties and error paths of the metrics added
//! beyond the original binary set (pAUC, operating points, AP, calibration,
//! multi-class, subgroups).

use naevus_metrics::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ------------------------------------------------------------ partial AUC

#[test]
fn pauc_perfect_random_and_worst() {
    let y = [0, 0, 1, 1, 0, 1];
    let perfect = [0.1, 0.2, 0.8, 0.9, 0.3, 0.7];
    assert!(close(
        partial_auc_above_tpr(&perfect, &y, 0.8).unwrap(),
        0.2
    ));
    let worst: Vec<f64> = perfect.iter().map(|s| 1.0 - s).collect();
    assert!(close(partial_auc_above_tpr(&worst, &y, 0.8).unwrap(), 0.0));
    // all tied: diagonal ROC, area above tpr 0.8 under it = 0.2^2 / 2
    assert!(close(
        partial_auc_above_tpr(&[0.5; 6], &y, 0.8).unwrap(),
        0.02
    ));
    // min_tpr = 0 is the full AUC
    let s = [0.1, 0.4, 0.35, 0.8];
    let l = [0, 0, 1, 1];
    assert!(close(
        partial_auc_above_tpr(&s, &l, 0.0).unwrap(),
        roc_auc(&s, &l).unwrap()
    ));
}

/// Geometric definition: integral over fpr of max(tpr(fpr) - min_tpr, 0) on
/// the piecewise-linear ROC curve (scores away from 0, so 1 - s is exact in order).
fn pauc_geometric(s: &[f64], y: &[u8], min_tpr: f64) -> f64 {
    let c = roc_curve(s, y).unwrap();
    let mut area = 0.0;
    for w in c.windows(2) {
        let (x0, y0, x1, y1) = (w[0].fpr, w[0].tpr - min_tpr, w[1].fpr, w[1].tpr - min_tpr);
        if x1 == x0 {
            continue;
        }
        if y0 >= 0.0 && y1 >= 0.0 {
            area += (x1 - x0) * (y0 + y1) / 2.0;
        } else if y1 > 0.0 {
            // crosses zero upwards inside the segment
            let xc = x0 + (x1 - x0) * (-y0) / (y1 - y0);
            area += (x1 - xc) * y1 / 2.0;
        }
    }
    area
}

#[test]
fn pauc_matches_geometric_definition_and_partial_roc_auc() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..300 {
        let n = rng.random_range(2..60);
        let y: Vec<u8> = (0..n).map(|_| rng.random_range(0..2)).collect();
        if y.iter().all(|&v| v == y[0]) {
            continue;
        }
        let s: Vec<f64> = (0..n)
            .map(|_| 0.05 + rng.random_range(0..10) as f64 / 11.0)
            .collect();
        for min_tpr in [0.0, 0.5, 0.8, 0.95] {
            let got = partial_auc_above_tpr(&s, &y, min_tpr).unwrap();
            assert!((got - pauc_geometric(&s, &y, min_tpr)).abs() < 1e-12);
            assert!((0.0..=1.0 - min_tpr + 1e-15).contains(&got));
        }
        assert!(close(
            partial_roc_auc(&s, &y, 1.0).unwrap(),
            roc_auc(&s, &y).unwrap()
        ));
        let p = partial_roc_auc(&s, &y, 0.3).unwrap();
        assert!((0.0..=0.3).contains(&p));
    }
}

#[test]
fn mcclish_endpoints() {
    assert!(close(mcclish_standardize(0.2, 0.2), 1.0));
    assert!(close(mcclish_standardize(0.02, 0.2), 0.5));
}

#[test]
fn pauc_errors() {
    let y = [0, 1];
    let s = [0.2, 0.4];
    assert!(matches!(
        partial_auc_above_tpr(&s, &y, 1.0),
        Err(MetricsError::InvalidParameter { .. })
    ));
    assert!(partial_auc_above_tpr(&s, &y, -0.1).is_err());
    assert!(partial_auc_above_tpr(&s, &y, f64::NAN).is_err());
    assert!(partial_roc_auc(&s, &y, 0.0).is_err());
    assert_eq!(
        partial_auc_above_tpr(&s, &[1, 1], 0.8),
        Err(MetricsError::OneClass { class: 1 })
    );
    assert_eq!(
        partial_auc_above_tpr(&[0.1, f64::NAN], &y, 0.8),
        Err(MetricsError::NonFinite { index: 1 })
    );
    assert_eq!(
        partial_auc_above_tpr(&[], &[], 0.8),
        Err(MetricsError::Empty)
    );
    assert!(matches!(
        partial_auc_above_tpr(&s, &[0], 0.8),
        Err(MetricsError::LengthMismatch { .. })
    ));
}

// ------------------------------------------------------- operating points

#[test]
fn operating_points_by_hand() {
    // desc: 0.9(1) 0.8(0) 0.7(1) 0.6(1) 0.5(0) 0.4(0) 0.3(1) 0.2(0) ; P=4, N=4
    let s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
    let y = [1, 0, 1, 1, 0, 0, 1, 0];
    // spec >= 0.75 allows fp <= 1: best tp is 3 at threshold 0.6
    let p = sensitivity_at_specificity(&s, &y, 0.75).unwrap();
    assert_eq!(
        (p.threshold, p.sensitivity, p.specificity),
        (0.6, 0.75, 0.75)
    );
    // spec 1: only threshold 0.9 (tp 1) beats +inf (tp 0)
    let p = sensitivity_at_specificity(&s, &y, 1.0).unwrap();
    assert_eq!(
        (p.threshold, p.sensitivity, p.specificity),
        (0.9, 0.25, 1.0)
    );
    // sens >= 0.75: thresholds 0.6, 0.5, 0.4 have tp 3; best spec at 0.6
    let p = specificity_at_sensitivity(&s, &y, 0.75).unwrap();
    assert_eq!(
        (p.threshold, p.sensitivity, p.specificity),
        (0.6, 0.75, 0.75)
    );
    let p = specificity_at_sensitivity(&s, &y, 1.0).unwrap();
    assert_eq!(
        (p.threshold, p.sensitivity, p.specificity),
        (0.3, 1.0, 0.25)
    );
    // sens 0: spec 1 is reached at +inf (tp 0) and at 0.9 (tp 1); the tie
    // goes to the higher sensitivity
    let p = specificity_at_sensitivity(&s, &y, 0.0).unwrap();
    assert_eq!(
        (p.threshold, p.sensitivity, p.specificity),
        (0.9, 0.25, 1.0)
    );
    // spec 1 with a top-scored negative: only the +inf point qualifies
    let p = sensitivity_at_specificity(&[0.9, 0.1], &[0, 1], 1.0).unwrap();
    assert_eq!((p.threshold, p.sensitivity), (f64::INFINITY, 0.0));
    // the threshold reproduces the rates via confusion_at
    let p = sensitivity_at_specificity(&s, &y, 0.5).unwrap();
    let c = confusion_at(&s, &y, p.threshold);
    assert_eq!(
        (c.sensitivity(), c.specificity()),
        (p.sensitivity, p.specificity)
    );
}

#[test]
fn operating_point_target_at_exact_boundary() {
    // 10 negatives, 1 false positive at the chosen threshold: spec exactly 0.9
    let mut s: Vec<f64> = (0..10).map(|i| i as f64 / 20.0).collect();
    let mut y = vec![0u8; 10];
    s.extend([0.95, 0.8]);
    y.extend([1, 1]);
    s[9] = 0.9; // one negative above the second positive
    let p = sensitivity_at_specificity(&s, &y, 0.9).unwrap();
    assert_eq!((p.sensitivity, p.specificity), (1.0, 0.9));
}

#[test]
fn operating_point_errors() {
    assert!(sensitivity_at_specificity(&[0.1, 0.2], &[0, 1], 1.5).is_err());
    assert!(specificity_at_sensitivity(&[0.1, 0.2], &[0, 1], -0.5).is_err());
    assert_eq!(
        specificity_at_sensitivity(&[0.1, 0.2], &[0, 0], 0.9),
        Err(MetricsError::OneClass { class: 0 })
    );
}

// ------------------------------------------------------ average precision

#[test]
fn average_precision_by_hand() {
    // desc: 0.9(1) 0.8(0) 0.7(1): AP = 1/2*1 + 1/2*2/3
    let ap = average_precision(&[0.9, 0.8, 0.7], &[1, 0, 1]).unwrap();
    assert!(close(ap, 0.5 + 1.0 / 3.0));
    // tie group {0.5: 1 pos, 1 neg} enters at once: precision 1/2
    let ap = average_precision(&[0.5, 0.5, 0.1], &[1, 0, 0]).unwrap();
    assert!(close(ap, 0.5));
    assert_eq!(average_precision(&[0.3, 0.2], &[1, 1]).unwrap(), 1.0);
    assert_eq!(
        average_precision(&[0.3, 0.2], &[0, 0]),
        Err(MetricsError::OneClass { class: 0 })
    );
}

// ------------------------------------------------------------ calibration

#[test]
fn calibration_by_hand() {
    let p = [0.05, 0.15, 0.95, 1.0, 0.9];
    let y = [0, 0, 1, 1, 0];
    let bins = reliability_bins(&p, &y, 10).unwrap();
    assert_eq!(bins.len(), 10);
    assert_eq!(bins[0].count, 1);
    assert_eq!(bins[1].count, 1);
    assert_eq!(bins[5].count, 0);
    assert_eq!(bins[5].mean_prob, None);
    // last bin holds 0.9, 0.95 and 1.0
    assert_eq!(bins[9].count, 3);
    assert!(close(bins[9].mean_prob.unwrap(), 0.95));
    assert!(close(bins[9].frac_pos.unwrap(), 2.0 / 3.0));
    let ece = expected_calibration_error(&p, &y, 10).unwrap();
    let want = 0.2 * 0.05 + 0.2 * 0.15 + 0.6 * (0.95 - 2.0 / 3.0);
    assert!(close(ece, want));
    let brier = brier_score(&p, &y).unwrap();
    let want = (0.05f64.powi(2) + 0.15f64.powi(2) + 0.05f64.powi(2) + 0.0 + 0.81) / 5.0;
    assert!(close(brier, want));
    // one class is fine for calibration
    assert!(close(brier_score(&[0.0, 0.0], &[0, 0]).unwrap(), 0.0));
}

#[test]
fn calibration_errors() {
    assert_eq!(
        brier_score(&[0.5, 1.2], &[0, 1]),
        Err(MetricsError::ProbabilityOutOfRange {
            index: 1,
            value: 1.2
        })
    );
    assert!(expected_calibration_error(&[0.5], &[1], 0).is_err());
    assert_eq!(
        expected_calibration_error(&[f64::NAN], &[1], 10),
        Err(MetricsError::NonFinite { index: 0 })
    );
    assert_eq!(reliability_bins(&[], &[], 10), Err(MetricsError::Empty));
}

// ------------------------------------------------------------ multi-class

#[test]
fn balanced_accuracy_by_hand() {
    // class 0: 2/3, class 1: 1/1, class 2: 0/2 -> (2/3 + 1 + 0) / 3
    let t = [0, 0, 0, 1, 2, 2];
    let p = [0, 0, 1, 1, 0, 3];
    assert!(close(
        balanced_accuracy(&p, &t).unwrap(),
        (2.0 / 3.0 + 1.0) / 3.0
    ));
    assert_eq!(balanced_accuracy(&[], &[]), Err(MetricsError::Empty));
    assert!(balanced_accuracy(&[0], &[0, 1]).is_err());
}

#[test]
fn macro_auc_by_hand_and_errors() {
    let rows = vec![
        vec![0.8, 0.1, 0.1],
        vec![0.2, 0.7, 0.1],
        vec![0.3, 0.3, 0.4],
        vec![0.5, 0.4, 0.1],
    ];
    let labels = [0, 1, 2, 1];
    let mut want = 0.0;
    for c in 0..3 {
        let col: Vec<f64> = rows.iter().map(|r| r[c]).collect();
        let bin: Vec<u8> = labels.iter().map(|&l| u8::from(l == c)).collect();
        want += roc_auc(&col, &bin).unwrap() / 3.0;
    }
    assert!(close(macro_auc_ovr(&rows, &labels).unwrap(), want));
    assert_eq!(
        macro_auc_ovr(&rows, &[0, 1, 1, 1]),
        Err(MetricsError::MissingClass { class: 2 })
    );
    assert!(matches!(
        macro_auc_ovr(&rows, &[0, 1, 3, 1]),
        Err(MetricsError::InvalidClass { class: 3, .. })
    ));
    let mut ragged = rows.clone();
    ragged[2].pop();
    assert!(matches!(
        macro_auc_ovr(&ragged, &labels),
        Err(MetricsError::RaggedRows { row: 2, .. })
    ));
    assert!(matches!(
        macro_auc_ovr_flat(&[0.1; 7], 3, &[0, 1]),
        Err(MetricsError::RaggedRows { .. })
    ));
    let mut nan = rows.clone();
    nan[3][0] = f64::NAN;
    assert_eq!(
        macro_auc_ovr(&nan, &labels),
        Err(MetricsError::NonFinite { index: 3 })
    );
    assert_eq!(macro_auc_ovr(&[], &[]), Err(MetricsError::Empty));
    assert!(macro_auc_ovr_flat(&[0.1, 0.2], 1, &[0, 0]).is_err());
}

// -------------------------------------------------------------- subgroups

#[test]
fn subgroups_by_hand() {
    let s = [0.1, 0.9, 0.4, 0.6, 0.2, 0.3];
    let y = [0, 1, 1, 0, 0, 0];
    let k = [
        Some("b".to_string()),
        Some("b".to_string()),
        Some("a".to_string()),
        Some("a".to_string()),
        None,
        Some("c".to_string()),
    ];
    let g = subgroup_aucs(&s, &y, &k).unwrap();
    let keys: Vec<Option<&str>> = g.iter().map(|m| m.key.as_deref()).collect();
    assert_eq!(keys, [None, Some("a"), Some("b"), Some("c")]);
    assert_eq!((g[0].n, g[0].positives, g[0].auc), (1, 0, None));
    assert_eq!((g[1].n, g[1].positives, g[1].auc), (2, 1, Some(0.0)));
    assert_eq!((g[2].n, g[2].positives, g[2].auc), (2, 1, Some(1.0)));
    assert_eq!(g[3].auc, None);
    assert!(matches!(
        subgroup_aucs(&s, &y, &k[..5]),
        Err(MetricsError::GroupLengthMismatch { .. })
    ));
    assert!(subgroup_aucs(&[f64::NAN], &[0], &[None]).is_err());
}
