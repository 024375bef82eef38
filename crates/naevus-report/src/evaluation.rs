//! The metric table: point estimates and percentile bootstrap 95% intervals, all computed
//! by naevus-metrics (its `bootstrap_ci` and `WeightedRoc`); this module only assembles them.


use naevus_metrics::{BinaryReport, OperatingPoint, TieRuns, WeightedRoc};
use serde::{Deserialize, Serialize};

use crate::ReportError;

/// A metric and its bootstrap 95% interval (`None` when no resample could compute it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: Option<(f64, f64)>,
}

/// The best operating point for a target rate, with the interval of the optimised rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingEstimate {
    /// The target specificity (for sensitivity at specificity) or sensitivity.
    pub target: f64,
    /// Positive when `score >= threshold`; `None` when nothing is predicted positive.
    pub threshold: Option<f64>,
    pub sensitivity: f64,
    pub specificity: f64,
    /// Bootstrap 95% interval of the optimised rate (the sensitivity for
    /// sensitivity-at-specificity, the specificity for specificity-at-sensitivity).
    pub ci95: Option<(f64, f64)>,
}

/// Everything `naevus evaluate` and `naevus report` show: the fields of
/// [`BinaryReport`] (flattened, so old readers of metrics.json keep working) plus ranking
/// metrics with intervals and calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    #[serde(flatten)]
    pub binary: BinaryReport,
    pub bootstrap_rounds: usize,
    /// "group" when whole patients/lesions were resampled, "image" otherwise.
    pub bootstrap_unit: String,
    /// ISIC 2024 partial AUC above 80% TPR (range 0 to 0.2).
    pub pauc_above_tpr_80: Estimate,
    pub average_precision: Estimate,
    pub sensitivity_at_specificity_90: OperatingEstimate,
    pub sensitivity_at_specificity_95: OperatingEstimate,
    pub specificity_at_sensitivity_90: OperatingEstimate,
    pub specificity_at_sensitivity_95: OperatingEstimate,
    /// Expected calibration error, 10 equal-width bins; `None` when a score is outside [0, 1].
    pub ece_10_bins: Option<f64>,
    /// Brier score; `None` when a score is outside [0, 1].
    pub brier: Option<f64>,
    /// The AUC of each source with its interval, when the images come from more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_source: Vec<naevus_metrics::SubgroupMetrics>,
}

fn operating(target: f64, point: OperatingPoint, ci95: Option<(f64, f64)>) -> OperatingEstimate {
    OperatingEstimate {
        target,
        threshold: point.threshold.is_finite().then_some(point.threshold),
        sensitivity: point.sensitivity,
        specificity: point.specificity,
        ci95,
    }
}

/// Most bootstrap resamples: 100 times the usual 1000, already minutes on a large set; each
/// resample keeps its metrics in memory.
pub const MAX_BOOTSTRAP: usize = 100_000;

/// Refuses a threshold outside [0, 1] (NaN too) and more than [`MAX_BOOTSTRAP`] resamples,
/// naming the option (`threshold ...` or `bootstrap ...`), for every caller of
/// [`evaluate_scores`] that takes them from a user.
pub fn check_threshold_and_bootstrap(threshold: f64, bootstrap: usize) -> Result<(), ReportError> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(ReportError::Invalid(format!("threshold {threshold}: expected a probability, a number from 0 to 1")));
    }
    if bootstrap > MAX_BOOTSTRAP {
        return Err(ReportError::Invalid(format!("bootstrap {bootstrap}: at most {MAX_BOOTSTRAP} resamples")));
    }
    Ok(())
}

/// Computes the full table. `groups` (patient or lesion per sample) makes every bootstrap
/// resample whole groups; `rounds == 0` skips the intervals.
pub fn evaluate_scores(
    scores: &[f64],
    labels: &[u8],
    groups: Option<&[&str]>,
    threshold: f64,
    rounds: usize,
    seed: u64,
) -> Result<EvaluationReport, ReportError> {
    let binary = naevus_metrics::binary_report(scores, labels, groups, threshold, rounds, seed)
        .map_err(ReportError::metrics("ROC AUC"))?;
    let pauc = naevus_metrics::partial_auc_above_tpr(scores, labels, 0.8).map_err(ReportError::metrics("partial AUC"))?;
    let ap = naevus_metrics::average_precision(scores, labels).map_err(ReportError::metrics("average precision"))?;
    let sens90 = naevus_metrics::sensitivity_at_specificity(scores, labels, 0.90).map_err(ReportError::metrics("sensitivity at 90% specificity"))?;
    let sens95 = naevus_metrics::sensitivity_at_specificity(scores, labels, 0.95).map_err(ReportError::metrics("sensitivity at 95% specificity"))?;
    let spec90 = naevus_metrics::specificity_at_sensitivity(scores, labels, 0.90).map_err(ReportError::metrics("specificity at 90% sensitivity"))?;
    let spec95 = naevus_metrics::specificity_at_sensitivity(scores, labels, 0.95).map_err(ReportError::metrics("specificity at 95% sensitivity"))?;
    let probabilities = scores.iter().all(|s| (0.0..=1.0).contains(s));
    let ece = if probabilities {
        Some(naevus_metrics::expected_calibration_error(scores, labels, 10).map_err(ReportError::metrics("calibration error"))?)
    } else {
        None
    };
    let brier = if probabilities { Some(naevus_metrics::brier_score(scores, labels).map_err(ReportError::metrics("Brier score"))?) } else { None };

    let cis = if rounds == 0 {
        vec![None; 6]
    } else {
        let runs = TieRuns::new(scores);
        let mut roc = WeightedRoc::default();
        naevus_metrics::bootstrap_ci(scores.len(), groups, rounds, seed.wrapping_add(1), 6, |weights| {
            roc.fill(&runs, labels, weights);
            vec![
                roc.pauc_above_tpr(0.8),
                roc.average_precision(),
                roc.sensitivity_at_specificity(0.90),
                roc.sensitivity_at_specificity(0.95),
                roc.specificity_at_sensitivity(0.90),
                roc.specificity_at_sensitivity(0.95),
            ]
        })
        .map_err(ReportError::metrics("bootstrap intervals"))?
    };
    Ok(EvaluationReport {
        binary,
        bootstrap_rounds: rounds,
        bootstrap_unit: if groups.is_some() { "group".into() } else { "image".into() },
        pauc_above_tpr_80: Estimate { value: pauc, ci95: cis[0] },
        average_precision: Estimate { value: ap, ci95: cis[1] },
        sensitivity_at_specificity_90: operating(0.90, sens90, cis[2]),
        sensitivity_at_specificity_95: operating(0.95, sens95, cis[3]),
        specificity_at_sensitivity_90: operating(0.90, spec90, cis[4]),
        specificity_at_sensitivity_95: operating(0.95, spec95, cis[5]),
        ece_10_bins: ece,
        brier,
        by_source: Vec::new(),
    })
}

/// One line of the metric table: name, value, 95% interval (empty when none), note.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub name: String,
    pub value: String,
    pub ci95: String,
    pub note: String,
}

fn row(name: &str, value: f64, ci: Option<(f64, f64)>, note: String) -> TableRow {
    let ci95 = match ci {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() => format!("{lo:.4} to {hi:.4}"),
        _ => String::new(),
    };
    TableRow { name: name.to_string(), value: format!("{value:.4}"), ci95, note }
}

fn threshold_note(t: Option<f64>) -> String {
    match t {
        Some(t) => format!("threshold {t:.4}"),
        None => "nothing predicted positive".to_string(),
    }
}

/// The rows shown by `naevus evaluate` and in the HTML report, in display order.
pub fn table_rows(r: &EvaluationReport) -> Vec<TableRow> {
    let b = &r.binary;
    let mut rows = vec![
        row("ROC AUC", b.auc, Some(b.auc_ci95), String::new()),
        row("pAUC above 80% TPR", r.pauc_above_tpr_80.value, r.pauc_above_tpr_80.ci95, "ISIC 2024 metric, range 0 to 0.2".into()),
        row("average precision", r.average_precision.value, r.average_precision.ci95, String::new()),
    ];
    for (name, o) in [("sensitivity at 90% specificity", &r.sensitivity_at_specificity_90), ("sensitivity at 95% specificity", &r.sensitivity_at_specificity_95)] {
        let note = format!("{}, specificity {:.4}", threshold_note(o.threshold), o.specificity);
        rows.push(row(name, o.sensitivity, o.ci95, note));
    }
    for (name, o) in [("specificity at 90% sensitivity", &r.specificity_at_sensitivity_90), ("specificity at 95% sensitivity", &r.specificity_at_sensitivity_95)] {
        let note = format!("{}, sensitivity {:.4}", threshold_note(o.threshold), o.sensitivity);
        rows.push(row(name, o.specificity, o.ci95, note));
    }
    let calibration_note = "scores outside [0, 1]: not probabilities".to_string();
    match r.ece_10_bins {
        Some(e) => rows.push(row("ECE (10 bins)", e, None, String::new())),
        None => rows.push(TableRow { name: "ECE (10 bins)".into(), value: "-".into(), ci95: String::new(), note: calibration_note.clone() }),
    }
    match r.brier {
        Some(e) => rows.push(row("Brier score", e, None, String::new())),
        None => rows.push(TableRow { name: "Brier score".into(), value: "-".into(), ci95: String::new(), note: calibration_note }),
    }
    rows.push(row("log loss", b.log_loss, None, String::new()));
    let at = format!("at threshold {}", b.threshold);
    rows.push(row("accuracy", b.accuracy, None, at.clone()));
    rows.push(row("sensitivity", b.sensitivity, None, at.clone()));
    rows.push(row("specificity", b.specificity, None, at));
    rows
}
