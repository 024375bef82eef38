//! metrics.json: the one shape in which naevus gives an [`EvaluationReport`], whether a run
//! wrote it when training ended, `naevus evaluate --out` or `--json` printed it, or
//! `naevus report` put it beside its page. Every metric is `{"value", "ci95"}` (`ci95` null
//! where no interval is computed, `value` null where the metric cannot be), so a reader needs
//! one rule; counts are spelt out.

use std::path::Path;

use naevus_run::write_atomic;
use serde_json::{Value, json};

use crate::ReportError;
use crate::evaluation::{EvaluationReport, OperatingEstimate};

/// The format's name and version (the `format` field).
pub const METRICS_FORMAT: &str = "naevus-metrics/2";

/// The report as metrics.json holds it.
pub fn metrics_document(report: &EvaluationReport) -> Value {
    let b = &report.binary;
    let finite = |value: f64| value.is_finite().then_some(value);
    let interval = |ci: Option<(f64, f64)>| ci.filter(|(lo, hi)| lo.is_finite() && hi.is_finite()).map(|(lo, hi)| json!([lo, hi]));
    let metric = |value: Option<f64>, ci: Option<(f64, f64)>| json!({ "value": value.and_then(finite), "ci95": interval(ci) });
    // The rate that was optimised is the value; the other rate and the threshold go with it.
    let operating = |o: &OperatingEstimate, optimised_sensitivity: bool| {
        let (value, other_name, other) = if optimised_sensitivity { (o.sensitivity, "specificity", o.specificity) } else { (o.specificity, "sensitivity", o.sensitivity) };
        let mut entry = metric(Some(value), o.ci95);
        entry["target"] = json!(o.target);
        entry["threshold"] = json!(o.threshold);
        entry[other_name] = json!(finite(other));
        entry
    };
    json!({
        "format": METRICS_FORMAT,
        "images": b.n,
        "melanomas": b.positives,
        "bootstrap": { "rounds": report.bootstrap_rounds, "unit": report.bootstrap_unit },
        "threshold": b.threshold,
        "metrics": {
            "roc_auc": metric(Some(b.auc), Some(b.auc_ci95)),
            "pauc_above_tpr_80": metric(Some(report.pauc_above_tpr_80.value), report.pauc_above_tpr_80.ci95),
            "average_precision": metric(Some(report.average_precision.value), report.average_precision.ci95),
            "sensitivity_at_specificity_90": operating(&report.sensitivity_at_specificity_90, true),
            "sensitivity_at_specificity_95": operating(&report.sensitivity_at_specificity_95, true),
            "specificity_at_sensitivity_90": operating(&report.specificity_at_sensitivity_90, false),
            "specificity_at_sensitivity_95": operating(&report.specificity_at_sensitivity_95, false),
            "ece_10_bins": metric(report.ece_10_bins, None),
            "brier": metric(report.brier, None),
            "log_loss": metric(Some(b.log_loss), None),
            "accuracy": metric(Some(b.accuracy), None),
            "sensitivity": metric(Some(b.sensitivity), None),
            "specificity": metric(Some(b.specificity), None),
        },
        "confusion": {
            "true_positives": b.confusion.tp,
            "false_positives": b.confusion.fp,
            "true_negatives": b.confusion.tn,
            "false_negatives": b.confusion.fn_,
        },
        "by_source": report.by_source.iter().map(|s| json!({
            "source": s.key.as_deref().unwrap_or("unknown"),
            "images": s.n,
            "melanomas": s.positives,
            "roc_auc": metric(s.auc, s.auc_ci95),
        })).collect::<Vec<_>>(),
    })
}

/// Writes metrics.json at `path` (`-`: standard output).
pub fn write_metrics_json(path: &Path, report: &EvaluationReport) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(&metrics_document(report)).map_err(|e| ReportError::Invalid(format!("metrics.json: {e}")))? + "\n";
    write_atomic(path, text.as_bytes()).map_err(|e| ReportError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_one_shape_and_counts_are_spelt_out() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.05];
        let labels = [0, 0, 1, 1, 1, 0, 1, 0];
        let report = crate::evaluate_scores(&scores, &labels, None, 0.5, 50, 0).unwrap();
        let document = metrics_document(&report);
        assert_eq!(document["format"], METRICS_FORMAT);
        for (name, metric) in document["metrics"].as_object().unwrap() {
            let fields: Vec<&str> = metric.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(fields.contains(&"value") && fields.contains(&"ci95"), "{name}: {metric}");
        }
        assert!((document["metrics"]["roc_auc"]["value"].as_f64().unwrap() - report.binary.auc).abs() < 1e-12);
        assert!(document["metrics"]["roc_auc"]["ci95"].is_array());
        assert_eq!(document["metrics"]["specificity_at_sensitivity_90"]["target"], 0.9);
        assert_eq!(document["confusion"]["false_negatives"], report.binary.confusion.fn_);
        assert!(!document.to_string().contains("fn_"));
    }
}
