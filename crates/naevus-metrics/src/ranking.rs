//! Threshold-free ranking metrics beyond the full ROC AUC: partial AUC (the
//! ISIC 2024 challenge metric), operating points at a target sensitivity or
//! specificity, and average precision.

use crate::{MetricsError, ascending_order, validate, validate_two_class};
use serde::{Deserialize, Serialize};

/// Slack allowed when comparing an achieved rate with a target rate in
/// [`sensitivity_at_specificity`] and [`specificity_at_sensitivity`], so that
/// e.g. 9 true negatives out of 10 satisfy a target specificity of `0.9`
/// regardless of floating-point rounding.
pub const RATE_TOLERANCE: f64 = 1e-12;

/// Cumulative counts when predicting positive for `score >= threshold`, one
/// entry per distinct score in decreasing order, preceded by `(+inf, 0, 0)`.
struct CountPoint {
    threshold: f64,
    tp: usize,
    fp: usize,
}

/// Input must already be validated.
fn roc_counts(scores: &[f64], labels: &[u8]) -> Vec<CountPoint> {
    let mut order = ascending_order(scores);
    order.reverse();
    let mut out = Vec::with_capacity(order.len() + 1);
    out.push(CountPoint {
        threshold: f64::INFINITY,
        tp: 0,
        fp: 0,
    });
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(CountPoint {
            threshold: s,
            tp,
            fp,
        });
    }
    out
}

/// Raw (unstandardised) area under the ROC curve for false positive rates in
/// `[0, max_fpr]`, range `0..=max_fpr`.
///
/// The ROC curve has one vertex per distinct score (ties form one diagonal
/// segment) and is linearly interpolated at `max_fpr`, exactly as scikit-learn's
/// `roc_auc_score(..., max_fpr=...)` does before its McClish standardisation
/// (see [`mcclish_standardize`]). `max_fpr == 1` gives [`crate::roc_auc`].
///
/// Errors: as for [`crate::roc_auc`], plus [`MetricsError::InvalidParameter`]
/// unless `0 < max_fpr <= 1`.
pub fn partial_roc_auc(scores: &[f64], labels: &[u8], max_fpr: f64) -> Result<f64, MetricsError> {
    let (pos, neg) = validate_two_class(scores, labels)?;
    if !(max_fpr > 0.0 && max_fpr <= 1.0) {
        return Err(MetricsError::InvalidParameter {
            name: "max_fpr",
            value: max_fpr,
            expected: "0 < max_fpr <= 1",
        });
    }
    let pts = roc_counts(scores, labels);
    let (p, n) = (pos as f64, neg as f64);
    let mut area = 0.0;
    for w in pts.windows(2) {
        let (x0, y0) = (w[0].fp as f64 / n, w[0].tp as f64 / p);
        let (x1, y1) = (w[1].fp as f64 / n, w[1].tp as f64 / p);
        if x1 <= max_fpr {
            area += (x1 - x0) * (y0 + y1) / 2.0;
        } else {
            // x0 <= max_fpr < x1: interpolate the curve at max_fpr and stop.
            let y = y0 + (max_fpr - x0) * (y1 - y0) / (x1 - x0);
            area += (max_fpr - x0) * (y0 + y) / 2.0;
            break;
        }
    }
    Ok(area)
}

/// McClish standardisation of a raw partial AUC over `[0, max_fpr]` (as
/// returned by [`partial_roc_auc`]): `0.5 * (1 + (A - m) / (M - m))` with
/// `m = max_fpr^2 / 2` (chance) and `M = max_fpr` (perfect). This is what
/// scikit-learn's `roc_auc_score(..., max_fpr=...)` returns.
pub fn mcclish_standardize(raw_partial_auc: f64, max_fpr: f64) -> f64 {
    let min_area = 0.5 * max_fpr * max_fpr;
    0.5 * (1.0 + (raw_partial_auc - min_area) / (max_fpr - min_area))
}

/// Partial AUC above a true positive rate: the ISIC 2024 challenge metric
/// (`min_tpr = 0.8` gives the challenge score, range `0..=0.2`).
///
/// Follows the official scoring code: labels are flipped (`1 - y`), scores are
/// replaced by `1.0 - score` (computed in `f64`, so scores closer than about
/// `1e-16` to each other near 0 become tied, exactly as in the official code),
/// and the result is the raw partial AUC of that flipped problem over false
/// positive rates `[0, 1 - min_tpr]` (the official code gets it by undoing
/// scikit-learn's McClish standardisation). Geometrically, it is the area of
/// the region of the ROC square with `tpr >= min_tpr` that lies under the
/// ROC curve.
///
/// Errors: as for [`crate::roc_auc`], plus [`MetricsError::InvalidParameter`]
/// unless `0 <= min_tpr < 1`.
pub fn partial_auc_above_tpr(
    scores: &[f64],
    labels: &[u8],
    min_tpr: f64,
) -> Result<f64, MetricsError> {
    validate_two_class(scores, labels)?;
    if !(0.0..1.0).contains(&min_tpr) {
        return Err(MetricsError::InvalidParameter {
            name: "min_tpr",
            value: min_tpr,
            expected: "0 <= min_tpr < 1",
        });
    }
    let flipped_scores: Vec<f64> = scores.iter().map(|&s| 1.0 - s).collect();
    let flipped_labels: Vec<u8> = labels.iter().map(|&l| 1 - l).collect();
    partial_roc_auc(&flipped_scores, &flipped_labels, (1.0 - min_tpr).abs())
}

/// An operating point on the ROC curve: predicting positive for
/// `score >= threshold` gives these rates. `threshold` is `+inf` for the
/// point where nothing is predicted positive (JSON writes it as `null`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub sensitivity: f64,
    pub specificity: f64,
}

fn check_rate(name: &'static str, value: f64) -> Result<(), MetricsError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(MetricsError::InvalidParameter {
            name,
            value,
            expected: "a rate in [0, 1]",
        })
    }
}

/// Best sensitivity subject to `specificity >= spec`.
///
/// Candidates are the vertices of the ROC curve: the thresholds `+inf`
/// (nothing positive) and every distinct score (positive when
/// `score >= threshold`); no interpolation between vertices. Among candidates
/// whose specificity is at least `spec - RATE_TOLERANCE`, the one with the
/// highest sensitivity is returned, ties broken by the highest specificity
/// (i.e. the highest such threshold). The `+inf` point (sensitivity 0,
/// specificity 1) always qualifies.
///
/// Errors: as for [`crate::roc_auc`], plus [`MetricsError::InvalidParameter`]
/// unless `0 <= spec <= 1`.
pub fn sensitivity_at_specificity(
    scores: &[f64],
    labels: &[u8],
    spec: f64,
) -> Result<OperatingPoint, MetricsError> {
    let (pos, neg) = validate_two_class(scores, labels)?;
    check_rate("spec", spec)?;
    let pts = roc_counts(scores, labels);
    // Maximise (tp, tn) lexicographically over feasible points.
    let mut best: Option<&CountPoint> = None;
    for c in &pts {
        let tn = neg - c.fp;
        if (tn as f64 / neg as f64) < spec - RATE_TOLERANCE {
            continue;
        }
        if best.is_none_or(|b| (c.tp, tn) > (b.tp, neg - b.fp)) {
            best = Some(c);
        }
    }
    let b = best.expect("the +inf point is always feasible");
    Ok(OperatingPoint {
        threshold: b.threshold,
        sensitivity: b.tp as f64 / pos as f64,
        specificity: (neg - b.fp) as f64 / neg as f64,
    })
}

/// Best specificity subject to `sensitivity >= sens`.
///
/// Same candidates as [`sensitivity_at_specificity`]: among ROC vertices whose
/// sensitivity is at least `sens - RATE_TOLERANCE`, the one with the highest
/// specificity, ties broken by the highest sensitivity (i.e. the lowest such
/// threshold). The lowest-score vertex (sensitivity 1) always qualifies.
///
/// Errors: as for [`crate::roc_auc`], plus [`MetricsError::InvalidParameter`]
/// unless `0 <= sens <= 1`.
pub fn specificity_at_sensitivity(
    scores: &[f64],
    labels: &[u8],
    sens: f64,
) -> Result<OperatingPoint, MetricsError> {
    let (pos, neg) = validate_two_class(scores, labels)?;
    check_rate("sens", sens)?;
    let pts = roc_counts(scores, labels);
    let mut best: Option<&CountPoint> = None;
    for c in &pts {
        if (c.tp as f64 / pos as f64) < sens - RATE_TOLERANCE {
            continue;
        }
        let tn = neg - c.fp;
        if best.is_none_or(|b| (tn, c.tp) > (neg - b.fp, b.tp)) {
            best = Some(c);
        }
    }
    let b = best.expect("the lowest threshold has sensitivity 1");
    Ok(OperatingPoint {
        threshold: b.threshold,
        sensitivity: b.tp as f64 / pos as f64,
        specificity: (neg - b.fp) as f64 / neg as f64,
    })
}

/// Average precision, scikit-learn's definition:
/// `AP = sum_k (R_k - R_{k-1}) * P_k` over the distinct scores in decreasing
/// order, where `P_k` and `R_k` are precision and recall when predicting
/// positive for `score >= s_k` (`R_0 = 0`). Step-wise, no interpolation; tied
/// scores enter together.
///
/// Needs at least one positive (all-positive input gives `1.0`).
///
/// Errors: [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`], [`MetricsError::InvalidLabel`], and
/// [`MetricsError::OneClass`] when there is no positive.
pub fn average_precision(scores: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    validate(scores, labels)?;
    let pos = labels.iter().filter(|&&l| l == 1).count();
    if pos == 0 {
        return Err(MetricsError::OneClass { class: 0 });
    }
    let pts = roc_counts(scores, labels);
    let mut ap = 0.0;
    let mut prev_tp = 0usize;
    for c in pts.iter().skip(1) {
        if c.tp > prev_tp {
            let precision = c.tp as f64 / (c.tp + c.fp) as f64;
            ap += (c.tp - prev_tp) as f64 / pos as f64 * precision;
            prev_tp = c.tp;
        }
    }
    Ok(ap)
}
