//! Calibration of predicted probabilities: Brier score, expected calibration
//! error and reliability-diagram bins.

use crate::{MetricsError, validate};
use serde::{Deserialize, Serialize};

/// [`validate`] plus: every probability in `[0, 1]`.
fn validate_probs(probs: &[f64], labels: &[u8]) -> Result<(), MetricsError> {
    validate(probs, labels)?;
    if let Some(index) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(MetricsError::ProbabilityOutOfRange {
            index,
            value: probs[index],
        });
    }
    Ok(())
}

/// Brier score `mean((p - y)^2)` (scikit-learn's `brier_score_loss`).
/// One class only is allowed.
///
/// Errors: [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`], [`MetricsError::InvalidLabel`],
/// [`MetricsError::ProbabilityOutOfRange`].
pub fn brier_score(probs: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    validate_probs(probs, labels)?;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - y as f64).powi(2))
        .sum();
    Ok(sum / probs.len() as f64)
}

/// One equal-width probability bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Bin edges `k / bins` and `(k + 1) / bins`.
    pub lower: f64,
    pub upper: f64,
    /// Number of samples in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin; `None` when empty.
    pub mean_prob: Option<f64>,
    /// Fraction of positives in the bin; `None` when empty.
    pub frac_pos: Option<f64>,
}

fn check_bins(bins: usize) -> Result<(), MetricsError> {
    if bins == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "bins",
            value: 0.0,
            expected: "at least 1 bin",
        });
    }
    Ok(())
}

/// Index of the bin of `p` in `[0, 1]`: `min(floor(p * bins), bins - 1)`, so
/// bins are `[k/b, (k+1)/b)` except the last, which also holds `1.0`.
fn bin_index(p: f64, bins: usize) -> usize {
    ((p * bins as f64) as usize).min(bins - 1)
}

/// Equal-width reliability bins over `[0, 1]` (all `bins` of them, empty ones
/// included, in increasing order). A probability `p` goes to bin
/// `min(floor(p * bins), bins - 1)`. One class only is allowed.
///
/// Errors: as for [`brier_score`], plus [`MetricsError::InvalidParameter`]
/// when `bins == 0`.
pub fn reliability_bins(
    probs: &[f64],
    labels: &[u8],
    bins: usize,
) -> Result<Vec<ReliabilityBin>, MetricsError> {
    validate_probs(probs, labels)?;
    check_bins(bins)?;
    let mut count = vec![0usize; bins];
    let mut sum_p = vec![0.0f64; bins];
    let mut pos = vec![0usize; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let k = bin_index(p, bins);
        count[k] += 1;
        sum_p[k] += p;
        pos[k] += y as usize;
    }
    Ok((0..bins)
        .map(|k| {
            let c = count[k];
            ReliabilityBin {
                lower: k as f64 / bins as f64,
                upper: (k + 1) as f64 / bins as f64,
                count: c,
                mean_prob: (c > 0).then(|| sum_p[k] / c as f64),
                frac_pos: (c > 0).then(|| pos[k] as f64 / c as f64),
            }
        })
        .collect())
}

/// Expected calibration error with `bins` equal-width bins (see
/// [`reliability_bins`] for the binning):
/// `sum_k (n_k / n) * |mean_prob_k - frac_pos_k|` over non-empty bins.
/// The usual choice is `bins = 10`.
///
/// Errors: as for [`reliability_bins`].
pub fn expected_calibration_error(
    probs: &[f64],
    labels: &[u8],
    bins: usize,
) -> Result<f64, MetricsError> {
    let n = probs.len() as f64;
    let rb = reliability_bins(probs, labels, bins)?;
    Ok(rb
        .iter()
        .filter_map(|b| {
            let (m, f) = (b.mean_prob?, b.frac_pos?);
            Some(b.count as f64 / n * (m - f).abs())
        })
        .sum())
}
