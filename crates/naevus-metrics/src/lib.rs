//! Binary classification metrics for naevus.
//!
//! Everything here works on plain slices: `scores` (any real-valued score where
//! larger means "more likely melanoma", typically a probability) and `labels`
//! (`0` = negative, `1` = positive). Functions that return a `Result` validate
//! their input (equal lengths, non-empty, finite scores, labels in `{0, 1}`).
//!
//! * [`roc_auc`]: exact ROC AUC (Mann-Whitney U via average ranks; tied
//!   scores across classes count 1/2), `O(n log n)`.
//! * [`roc_curve`]: one point per distinct threshold plus the origin.
//! * [`confusion_at`] / [`Confusion`]: counts and rates at a threshold.
//! * [`binary_cross_entropy`]: mean log loss with clamped probabilities.
//! * [`bootstrap_auc_ci`]: percentile 95% CI of the AUC, optionally resampling
//!   whole groups (patients, lesions) instead of single images.
//! * [`binary_report`]: all of the above in one serialisable struct.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Probabilities are clamped to `[EPS, 1 - EPS]` before taking logarithms in
/// [`binary_cross_entropy`].
pub const LOG_LOSS_EPS: f64 = 1e-7;

/// Errors from metric computations.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No samples were given.
    #[error("cannot compute a metric on an empty set of samples")]
    Empty,
    /// `scores` and `labels` differ in length.
    #[error("length mismatch: {scores} scores but {labels} labels")]
    LengthMismatch { scores: usize, labels: usize },
    /// All labels are equal to `class`; the metric needs both classes.
    #[error("all labels are {class}: the metric needs both a positive and a negative sample")]
    OneClass { class: u8 },
    /// The score (or probability) at `index` is NaN or infinite.
    #[error("score at index {index} is not finite (NaN or infinity)")]
    NonFinite { index: usize },
    /// A label other than 0 or 1.
    #[error("label at index {index} is {label}; labels must be 0 or 1")]
    InvalidLabel { index: usize, label: u8 },
    /// `groups` differs in length from `scores`.
    #[error("length mismatch: {scores} scores but {groups} group ids")]
    GroupLengthMismatch { scores: usize, groups: usize },
    /// Every bootstrap resample was skipped (it held only one class), or zero
    /// rounds were requested.
    #[error("no usable bootstrap resample out of {rounds} rounds (each held only one class)")]
    NoValidResamples { rounds: usize },
}

/// Checks lengths, emptiness, finiteness and label values (not class balance).
fn validate(scores: &[f64], labels: &[u8]) -> Result<(), MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    if scores.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if let Some(index) = labels.iter().position(|&l| l > 1) {
        return Err(MetricsError::InvalidLabel {
            index,
            label: labels[index],
        });
    }
    Ok(())
}

/// [`validate`] plus: both classes present. Returns `(positives, negatives)`.
fn validate_two_class(scores: &[f64], labels: &[u8]) -> Result<(usize, usize), MetricsError> {
    validate(scores, labels)?;
    let pos = labels.iter().filter(|&&l| l == 1).count();
    let neg = labels.len() - pos;
    if pos == 0 {
        return Err(MetricsError::OneClass { class: 0 });
    }
    if neg == 0 {
        return Err(MetricsError::OneClass { class: 1 });
    }
    Ok((pos, neg))
}

/// Compares finite scores; `-0.0` and `0.0` are equal (a tie).
fn cmp_finite(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Indices of `scores` sorted by ascending score.
fn ascending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| cmp_finite(scores[a], scores[b]));
    order
}

/// Area under the ROC curve.
///
/// Computed exactly as the Mann-Whitney statistic: samples are sorted by score,
/// tied scores share their average rank, and
/// `AUC = (R_pos - P(P+1)/2) / (P * N)` where `R_pos` is the rank sum of the
/// `P` positives and `N` the number of negatives. This equals the fraction of
/// (positive, negative) pairs ranked correctly, a tied pair counting 1/2.
/// All arithmetic is done in integers (doubled ranks) until the final division.
///
/// Errors: [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`], [`MetricsError::InvalidLabel`],
/// [`MetricsError::OneClass`].
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    let (pos, neg) = validate_two_class(scores, labels)?;
    let order = ascending_order(scores);
    // Sum over positives of twice their (1-based, tie-averaged) rank.
    let mut twice_rank_sum: u128 = 0;
    let mut start = 0;
    while start < order.len() {
        let s = scores[order[start]];
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == s {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; average = (start+1+end)/2.
        let twice_avg_rank = (start + 1 + end) as u128;
        let pos_in_group = order[start..end]
            .iter()
            .filter(|&&i| labels[i] == 1)
            .count() as u128;
        twice_rank_sum += twice_avg_rank * pos_in_group;
        start = end;
    }
    let (p, n) = (pos as u128, neg as u128);
    // 2U = 2 R_pos - P(P+1)
    let twice_u = twice_rank_sum - p * (p + 1);
    Ok(twice_u as f64 / (2 * p * n) as f64)
}

/// One point of a ROC curve: predicting positive when `score >= threshold`
/// gives false positive rate `fpr` and true positive rate `tpr`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// Decision threshold. The first point uses `f64::INFINITY` (nothing is
    /// predicted positive); note JSON writes infinity as `null`.
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// ROC curve: the point `(fpr 0, tpr 0)` at threshold `+inf`, then one point per
/// distinct score, in decreasing threshold order (so `fpr` and `tpr` are
/// non-decreasing and the last point is `(1, 1)`).
///
/// The trapezoidal area under these points equals [`roc_auc`].
/// Errors as for [`roc_auc`].
pub fn roc_curve(scores: &[f64], labels: &[u8]) -> Result<Vec<RocPoint>, MetricsError> {
    let (pos, neg) = validate_two_class(scores, labels)?;
    let mut order = ascending_order(scores);
    order.reverse();
    let mut points = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut start = 0;
    while start < order.len() {
        let s = scores[order[start]];
        let mut end = start;
        while end < order.len() && scores[order[end]] == s {
            if labels[order[end]] == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            end += 1;
        }
        points.push(RocPoint {
            threshold: s,
            fpr: fp as f64 / neg as f64,
            tpr: tp as f64 / pos as f64,
        });
        start = end;
    }
    Ok(points)
}

/// Threshold maximising Youden's J = sensitivity + specificity - 1 on the ROC
/// curve (the highest such threshold when several tie). Errors as for [`roc_auc`].
pub fn youden_threshold(scores: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    let curve = roc_curve(scores, labels)?;
    let mut best = (f64::NEG_INFINITY, f64::INFINITY);
    for p in curve.iter().skip(1) {
        let j = p.tpr - p.fpr;
        if j > best.0 {
            best = (j, p.threshold);
        }
    }
    Ok(best.1)
}

/// Confusion matrix counts for a binary decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    /// False negatives (`fn` is a keyword).
    pub fn_: usize,
}

/// `num / den`, or `0.0` when `den == 0`.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl Confusion {
    /// Total number of samples.
    pub fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// Number of actual positives (`tp + fn`).
    pub fn positives(&self) -> usize {
        self.tp + self.fn_
    }
    /// Number of actual negatives (`tn + fp`).
    pub fn negatives(&self) -> usize {
        self.tn + self.fp
    }
    /// `(tp + tn) / total`; `0.0` when there are no samples.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// Sensitivity (recall, true positive rate) `tp / (tp + fn)`;
    /// `0.0` when there are no actual positives.
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Specificity (true negative rate) `tn / (tn + fp)`;
    /// `0.0` when there are no actual negatives.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    /// Precision (positive predictive value) `tp / (tp + fp)`;
    /// `0.0` when nothing is predicted positive.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Balanced accuracy `(sensitivity + specificity) / 2` (with the `0.0`
    /// conventions above).
    pub fn balanced_accuracy(&self) -> f64 {
        0.5 * (self.sensitivity() + self.specificity())
    }
    /// F1 score `2 tp / (2 tp + fp + fn)`; `0.0` when that denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// Confusion counts when predicting positive for `score >= threshold`.
///
/// Unvalidated and infallible: any non-zero label counts as positive, and a NaN
/// score is never `>= threshold`, so it is predicted negative. Use
/// [`try_confusion_at`] for validated input.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn confusion_at(scores: &[f64], labels: &[u8], threshold: f64) -> Confusion {
    assert_eq!(
        scores.len(),
        labels.len(),
        "confusion_at: {} scores but {} labels",
        scores.len(),
        labels.len()
    );
    let mut c = Confusion::default();
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l != 0) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    c
}

/// Validated [`confusion_at`]: errors on length mismatch, empty input,
/// non-finite scores or labels other than 0/1 (one class is allowed).
pub fn try_confusion_at(
    scores: &[f64],
    labels: &[u8],
    threshold: f64,
) -> Result<Confusion, MetricsError> {
    validate(scores, labels)?;
    Ok(confusion_at(scores, labels, threshold))
}

/// Mean binary cross-entropy (log loss) `-mean(y ln p + (1 - y) ln(1 - p))`,
/// natural logarithm, with `p` clamped to `[1e-7, 1 - 1e-7]`
/// ([`LOG_LOSS_EPS`]). One class only is allowed.
///
/// Errors: [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`], [`MetricsError::InvalidLabel`].
pub fn binary_cross_entropy(probs: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    validate(probs, labels)?;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y == 1 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(sum / probs.len() as f64)
}

/// Summary of a binary classifier on one evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// Number of samples.
    pub n: usize,
    /// Number of positive samples.
    pub positives: usize,
    /// ROC AUC ([`roc_auc`]).
    pub auc: f64,
    /// Bootstrap percentile 95% CI of the AUC ([`bootstrap_auc_ci`]);
    /// `(NaN, NaN)` when `bootstrap_rounds == 0` (written as `null` in JSON and
    /// read back as NaN).
    #[serde(deserialize_with = "de_pair_nan")]
    pub auc_ci95: (f64, f64),
    /// Accuracy at `threshold`.
    pub accuracy: f64,
    /// Sensitivity at `threshold`.
    pub sensitivity: f64,
    /// Specificity at `threshold`.
    pub specificity: f64,
    /// The decision threshold (positive when `score >= threshold`).
    pub threshold: f64,
    /// Confusion counts at `threshold`.
    pub confusion: Confusion,
    /// [`binary_cross_entropy`] of the scores read as probabilities.
    pub log_loss: f64,
}

/// Deserialises a pair of floats where `null` stands for NaN.
fn de_pair_nan<'de, D: Deserializer<'de>>(d: D) -> Result<(f64, f64), D::Error> {
    let (a, b) = <(Option<f64>, Option<f64>)>::deserialize(d)?;
    Ok((a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)))
}

/// Computes a [`BinaryReport`]. `scores` should be probabilities in `[0, 1]`
/// for `log_loss` to be meaningful. `groups` (one id per sample, e.g. patient
/// or lesion) only affects the bootstrap; `bootstrap_rounds == 0` skips the
/// bootstrap and gives a `(NaN, NaN)` CI.
///
/// Errors: as for [`roc_auc`] and [`bootstrap_auc_ci`].
pub fn binary_report(
    scores: &[f64],
    labels: &[u8],
    groups: Option<&[&str]>,
    threshold: f64,
    bootstrap_rounds: usize,
    seed: u64,
) -> Result<BinaryReport, MetricsError> {
    let (positives, _) = validate_two_class(scores, labels)?;
    let auc = roc_auc(scores, labels)?;
    let auc_ci95 = if bootstrap_rounds == 0 {
        if let Some(g) = groups {
            check_groups(scores, g)?;
        }
        (f64::NAN, f64::NAN)
    } else {
        bootstrap_auc_ci(scores, labels, groups, bootstrap_rounds, seed)?
    };
    let confusion = confusion_at(scores, labels, threshold);
    Ok(BinaryReport {
        n: scores.len(),
        positives,
        auc,
        auc_ci95,
        accuracy: confusion.accuracy(),
        sensitivity: confusion.sensitivity(),
        specificity: confusion.specificity(),
        threshold,
        confusion,
        log_loss: binary_cross_entropy(scores, labels)?,
    })
}

fn check_groups(scores: &[f64], groups: &[&str]) -> Result<(), MetricsError> {
    if groups.len() != scores.len() {
        return Err(MetricsError::GroupLengthMismatch {
            scores: scores.len(),
            groups: groups.len(),
        });
    }
    Ok(())
}

/// Samples sorted by score and split into runs of tied scores; lets the
/// bootstrap compute a weighted AUC in `O(n)` per resample.
struct TieRuns {
    /// Sample indices in ascending score order.
    order: Vec<usize>,
    /// `order[bounds[k]..bounds[k + 1]]` is the k-th run of tied scores.
    bounds: Vec<usize>,
}

impl TieRuns {
    fn new(scores: &[f64]) -> Self {
        let order = ascending_order(scores);
        let mut bounds = vec![0];
        for i in 1..order.len() {
            if scores[order[i]] != scores[order[i - 1]] {
                bounds.push(i);
            }
        }
        bounds.push(order.len());
        TieRuns { order, bounds }
    }

    /// AUC where sample `i` appears `weights[i]` times; `None` if the weighted
    /// sample has only one class. Exact: counts pairs in integers, a tied
    /// (positive, negative) pair counting 1/2.
    fn weighted_auc(&self, labels: &[u8], weights: &[u64]) -> Option<f64> {
        let mut neg_below: u128 = 0;
        let mut pos_total: u128 = 0;
        let mut twice_u: u128 = 0;
        for w in self.bounds.windows(2) {
            let (mut pos_g, mut neg_g) = (0u128, 0u128);
            for &i in &self.order[w[0]..w[1]] {
                let c = weights[i] as u128;
                if labels[i] == 1 {
                    pos_g += c;
                } else {
                    neg_g += c;
                }
            }
            // Each positive beats every negative strictly below and ties with
            // the negatives in its own run.
            twice_u += pos_g * (2 * neg_below + neg_g);
            neg_below += neg_g;
            pos_total += pos_g;
        }
        if pos_total == 0 || neg_below == 0 {
            return None;
        }
        Some(twice_u as f64 / (2 * pos_total * neg_below) as f64)
    }
}

/// Percentile (linear interpolation between order statistics, like numpy's
/// default) of sorted, non-empty data; `q` in `[0, 1]`.
fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Percentile bootstrap 95% confidence interval `(2.5%, 97.5%)` of the ROC AUC.
///
/// Each of `rounds` resamples draws, with replacement, either `n` samples or,
/// when `groups` is given (one id per sample), as many groups as there are
/// distinct ids, taking every sample of each drawn group (so correlated images
/// of one patient/lesion stay together). Resamples holding only one class are
/// skipped. Deterministic for a given `seed` (ChaCha8).
///
/// Errors: as for [`roc_auc`], plus [`MetricsError::GroupLengthMismatch`] and
/// [`MetricsError::NoValidResamples`] (also for `rounds == 0`).
pub fn bootstrap_auc_ci(
    scores: &[f64],
    labels: &[u8],
    groups: Option<&[&str]>,
    rounds: usize,
    seed: u64,
) -> Result<(f64, f64), MetricsError> {
    validate_two_class(scores, labels)?;
    let n = scores.len();
    // Members of each resampling unit (a group, or a single sample).
    let units: Vec<Vec<usize>> = match groups {
        Some(g) => {
            check_groups(scores, g)?;
            let mut index: HashMap<&str, usize> = HashMap::new();
            let mut units: Vec<Vec<usize>> = Vec::new();
            for (i, &id) in g.iter().enumerate() {
                // First-appearance order keeps this deterministic.
                let k = *index.entry(id).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[k].push(i);
            }
            units
        }
        None => (0..n).map(|i| vec![i]).collect(),
    };
    let runs = TieRuns::new(scores);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = vec![0u64; n];
    let mut aucs = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        weights.iter_mut().for_each(|w| *w = 0);
        for _ in 0..units.len() {
            let u = rng.random_range(0..units.len());
            for &i in &units[u] {
                weights[i] += 1;
            }
        }
        if let Some(a) = runs.weighted_auc(labels, &weights) {
            aucs.push(a);
        }
    }
    if aucs.is_empty() {
        return Err(MetricsError::NoValidResamples { rounds });
    }
    aucs.sort_unstable_by(|a, b| a.total_cmp(b));
    Ok((
        percentile_sorted(&aucs, 0.025),
        percentile_sorted(&aucs, 0.975),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bootstrap's weighted O(n) AUC must equal `roc_auc` on the
    /// materialised resample (each sample repeated `weight` times).
    #[test]
    fn weighted_auc_matches_materialised_resample() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n = rng.random_range(2..40);
            let scores: Vec<f64> = (0..n)
                .map(|_| rng.random_range(0..6) as f64 / 5.0)
                .collect();
            let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..2)).collect();
            let weights: Vec<u64> = (0..n).map(|_| rng.random_range(0..4)).collect();
            let (mut s2, mut l2) = (Vec::new(), Vec::new());
            for i in 0..n {
                for _ in 0..weights[i] {
                    s2.push(scores[i]);
                    l2.push(labels[i]);
                }
            }
            let got = TieRuns::new(&scores).weighted_auc(&labels, &weights);
            match roc_auc(&s2, &l2) {
                Ok(expected) => assert_eq!(got, Some(expected)),
                Err(_) => assert_eq!(got, None),
            }
        }
    }

    #[test]
    fn percentile_interpolates() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&v, 0.0), 0.0);
        assert_eq!(percentile_sorted(&v, 1.0), 4.0);
        assert_eq!(percentile_sorted(&v, 0.5), 2.0);
        assert!((percentile_sorted(&v, 0.025) - 0.1).abs() < 1e-12);
        assert_eq!(percentile_sorted(&[3.5], 0.975), 3.5);
    }
}
