//! The metric table: point estimates from naevus-metrics and percentile bootstrap 95%
//! intervals from one shared resampling loop.
//!
//! The bootstrap sorts the scores once; each resample is a vector of multiplicities
//! (how often each image was drawn), from which every ROC-based metric is computed in one
//! `O(n)` pass over the tied-score runs. 1,000 rounds on 10,000 images take well under a
//! second.


use naevus_metrics::{BinaryReport, OperatingPoint, TieRuns};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// Cumulative weighted counts when predicting positive for `score >= threshold`, one entry
/// per distinct score in decreasing order, preceded by `(0, 0)` (threshold `+inf`).
pub struct RocCounts {
    pub tp: Vec<u64>,
    pub fp: Vec<u64>,
}

impl RocCounts {
    /// The counts of the sample where image `i` appears `weights[i]` times, walking the
    /// runs of tied scores from the highest score down.
    pub fn fill(&mut self, runs: &TieRuns, labels: &[u8], weights: &[u32]) {
        self.tp.clear();
        self.fp.clear();
        self.tp.push(0);
        self.fp.push(0);
        let (mut tp, mut fp) = (0u64, 0u64);
        for w in runs.bounds.windows(2).rev() {
            for &i in &runs.order[w[0]..w[1]] {
                let c = u64::from(weights[i]);
                if labels[i] == 1 {
                    tp += c;
                } else {
                    fp += c;
                }
            }
            self.tp.push(tp);
            self.fp.push(fp);
        }
    }

    fn totals(&self) -> (u64, u64) {
        (*self.tp.last().unwrap_or(&0), *self.fp.last().unwrap_or(&0))
    }

    /// ROC AUC (trapezoids, exact in integers); `None` with one class only.
    pub fn auc(&self) -> Option<f64> {
        let (p, n) = self.totals();
        if p == 0 || n == 0 {
            return None;
        }
        let mut twice_area: u128 = 0;
        for k in 1..self.tp.len() {
            twice_area += u128::from(self.fp[k] - self.fp[k - 1]) * u128::from(self.tp[k] + self.tp[k - 1]);
        }
        Some(twice_area as f64 / (2 * u128::from(p) * u128::from(n)) as f64)
    }

    /// Area of the ROC square with `tpr >= min_tpr` under the curve (the ISIC 2024 pAUC).
    pub fn pauc_above_tpr(&self, min_tpr: f64) -> Option<f64> {
        let (p, n) = self.totals();
        if p == 0 || n == 0 {
            return None;
        }
        let (p, n) = (p as f64, n as f64);
        let mut area = 0.0;
        for k in 1..self.tp.len() {
            let (x0, y0) = (self.fp[k - 1] as f64 / n, self.tp[k - 1] as f64 / p);
            let (x1, y1) = (self.fp[k] as f64 / n, self.tp[k] as f64 / p);
            if y1 <= min_tpr || y1 == y0 {
                continue;
            }
            // The part of the segment with y >= min_tpr, x linear in y.
            let ya = y0.max(min_tpr);
            let xa = x0 + (x1 - x0) * (ya - y0) / (y1 - y0);
            area += (y1 - ya) * (1.0 - (xa + x1) / 2.0);
        }
        Some(area)
    }

    /// scikit-learn's step-wise average precision; `None` without positives.
    pub fn average_precision(&self) -> Option<f64> {
        let (p, _) = self.totals();
        if p == 0 {
            return None;
        }
        let mut ap = 0.0;
        for k in 1..self.tp.len() {
            if self.tp[k] > self.tp[k - 1] {
                let precision = self.tp[k] as f64 / (self.tp[k] + self.fp[k]) as f64;
                ap += (self.tp[k] - self.tp[k - 1]) as f64 / p as f64 * precision;
            }
        }
        Some(ap)
    }

    /// Best sensitivity with specificity >= `spec` (same rule as naevus-metrics).
    pub fn sensitivity_at_specificity(&self, spec: f64) -> Option<f64> {
        let (p, n) = self.totals();
        if p == 0 || n == 0 {
            return None;
        }
        let best = (0..self.tp.len())
            .filter(|&k| (n - self.fp[k]) as f64 / n as f64 >= spec - naevus_metrics::RATE_TOLERANCE)
            .map(|k| self.tp[k])
            .max()?;
        Some(best as f64 / p as f64)
    }

    /// Best specificity with sensitivity >= `sens` (same rule as naevus-metrics).
    pub fn specificity_at_sensitivity(&self, sens: f64) -> Option<f64> {
        let (p, n) = self.totals();
        if p == 0 || n == 0 {
            return None;
        }
        let best = (0..self.tp.len())
            .filter(|&k| self.tp[k] as f64 / p as f64 >= sens - naevus_metrics::RATE_TOLERANCE)
            .map(|k| n - self.fp[k])
            .max()?;
        Some(best as f64 / n as f64)
    }
}

/// Percentile (linear interpolation, like numpy's default) of sorted, non-empty data.
fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Generic percentile bootstrap. Each of `rounds` resamples draws, with replacement, as many
/// units as there are (a unit is a group of samples with the same `groups` id, or one sample
/// when `groups` is `None`) and passes the multiplicity of every sample to `statistics`,
/// which returns one value per statistic (`None` for a statistic undefined on that
/// resample). Returns the 2.5% and 97.5% percentiles of each statistic, `None` where no
/// resample defined it. Deterministic for a given `seed`.
pub fn bootstrap_ci<F>(
    n: usize,
    groups: Option<&[&str]>,
    rounds: usize,
    seed: u64,
    count: usize,
    mut statistics: F,
) -> Result<Vec<Option<(f64, f64)>>, ReportError>
where
    F: FnMut(&[u32]) -> Vec<Option<f64>>,
{
    if let Some(g) = groups
        && g.len() != n
    {
        return Err(ReportError::Invalid(format!("{} group ids for {n} samples", g.len())));
    }
    let units = naevus_metrics::resampling_units(groups, n);
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); count];
    if units.is_empty() {
        return Ok(vec![None; count]);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = vec![0u32; n];
    for _ in 0..rounds {
        weights.iter_mut().for_each(|w| *w = 0);
        for _ in 0..units.len() {
            for &i in &units[rng.random_range(0..units.len())] {
                weights[i] += 1;
            }
        }
        for (k, v) in statistics(&weights).into_iter().enumerate().take(count) {
            if let Some(v) = v {
                values[k].push(v);
            }
        }
    }
    Ok(values
        .into_iter()
        .map(|mut v| {
            if v.is_empty() {
                return None;
            }
            v.sort_unstable_by(|a, b| a.total_cmp(b));
            Some((percentile_sorted(&v, 0.025), percentile_sorted(&v, 0.975)))
        })
        .collect())
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
        let mut counts = RocCounts { tp: Vec::new(), fp: Vec::new() };
        bootstrap_ci(scores.len(), groups, rounds, seed.wrapping_add(1), 6, |weights| {
            counts.fill(&runs, labels, weights);
            vec![
                counts.pauc_above_tpr(0.8),
                counts.average_precision(),
                counts.sensitivity_at_specificity(0.90),
                counts.sensitivity_at_specificity(0.95),
                counts.specificity_at_sensitivity(0.90),
                counts.specificity_at_sensitivity(0.95),
            ]
        })?
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
