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

/// Smallest and largest temperature [`fit_temperature`] searches.
pub const TEMPERATURE_RANGE: (f64, f64) = (0.05, 20.0);

/// Probabilities are clamped to `[TEMPERATURE_EPS, 1 - TEMPERATURE_EPS]` before
/// taking their logit in [`apply_temperature`] and [`fit_temperature`].
pub const TEMPERATURE_EPS: f64 = 1e-7;

fn logit(p: f64) -> f64 {
    let p = p.clamp(TEMPERATURE_EPS, 1.0 - TEMPERATURE_EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)` without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Temperature scaling of one probability: `sigmoid(logit(p) / t)`, with `p`
/// clamped to `[1e-7, 1 - 1e-7]` first. `t > 1` pulls probabilities towards
/// 0.5 (less confident), `t < 1` pushes them away; `t = 1` returns `p`
/// (up to rounding, for `p` inside the clamp range).
pub fn apply_temperature(p: f64, t: f64) -> f64 {
    sigmoid(logit(p) / t)
}

/// Mean log loss of the temperature-scaled probabilities, from their logits.
fn scaled_log_loss(logits: &[f64], labels: &[u8], t: f64) -> f64 {
    let sum: f64 = logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let z = z / t;
            // -ln sigmoid(z) = softplus(-z); -ln(1 - sigmoid(z)) = softplus(z).
            if y == 1 { softplus(-z) } else { softplus(z) }
        })
        .sum();
    sum / logits.len() as f64
}

/// Fits the temperature `T` of temperature scaling (Guo et al. 2017): the `T`
/// in [`TEMPERATURE_RANGE`] minimising the mean log loss of
/// `sigmoid(logit(p) / T)` against `labels`. Apply it with
/// [`apply_temperature`].
///
/// The log loss is convex in `1 / T`, hence unimodal in `ln T`, so a
/// golden-section search on `ln T` finds the minimum; when it lies outside the
/// range, the nearest end is returned. If `T = 1` is at least as good as the
/// found value (to rounding), `1.0` is returned, so the fitted log loss is
/// never above the log loss of the unscaled (clamped) probabilities.
///
/// Errors: as for [`brier_score`], plus [`MetricsError::OneClass`] (one class
/// alone has no finite optimum).
pub fn fit_temperature(probs: &[f64], labels: &[u8]) -> Result<f64, MetricsError> {
    validate_probs(probs, labels)?;
    let positives = labels.iter().filter(|&&y| y == 1).count();
    if positives == 0 {
        return Err(MetricsError::OneClass { class: 0 });
    }
    if positives == labels.len() {
        return Err(MetricsError::OneClass { class: 1 });
    }
    let logits: Vec<f64> = probs.iter().map(|&p| logit(p)).collect();
    let loss = |log_t: f64| scaled_log_loss(&logits, labels, log_t.exp());

    // Golden-section search on u = ln T.
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (loss(c), loss(d));
    while b - a > 1e-10 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = loss(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = loss(d);
        }
    }
    // Refine: the best of the bracket's ends and its midpoint.
    let mut best = (0.5 * (a + b), loss(0.5 * (a + b)));
    for u in [a, b, TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln()] {
        let f = loss(u);
        if f < best.1 {
            best = (u, f);
        }
    }
    if loss(0.0) <= best.1 {
        return Ok(1.0);
    }
    Ok(best.0.exp())
}

#[cfg(test)]
mod temperature_tests {
    use super::*;
    use crate::binary_cross_entropy;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Labels drawn from sigmoid(z) while the model reports sigmoid(z * scale).
    fn miscalibrated(n: usize, scale: f64, seed: u64) -> (Vec<f64>, Vec<u8>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut probs = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let z: f64 = rng.random_range(-4.0..4.0);
            let y = u8::from(rng.random::<f64>() < sigmoid(z));
            probs.push(sigmoid(z * scale));
            labels.push(y);
        }
        (probs, labels)
    }

    #[test]
    fn recovers_a_known_temperature() {
        let (probs, labels) = miscalibrated(20_000, 3.0, 1);
        let t = fit_temperature(&probs, &labels).unwrap();
        assert!((t - 3.0).abs() < 0.25, "fitted T = {t}");
        let (probs, labels) = miscalibrated(20_000, 0.5, 2);
        let t = fit_temperature(&probs, &labels).unwrap();
        assert!((t - 0.5).abs() < 0.05, "fitted T = {t}");
    }

    #[test]
    fn temperature_one_is_the_identity() {
        for p in [1e-6, 0.01, 0.2, 0.5, 0.73, 0.999, 1.0 - 1e-6] {
            assert!((apply_temperature(p, 1.0) - p).abs() < 1e-12, "{p}");
        }
        assert!(apply_temperature(0.9, 2.0) < 0.9 && apply_temperature(0.9, 2.0) > 0.5);
        assert!(apply_temperature(0.1, 0.5) < 0.1);
        assert_eq!(apply_temperature(0.5, 7.0), 0.5);
    }

    #[test]
    fn fitting_never_raises_the_log_loss() {
        for (seed, scale) in [(3, 1.0), (4, 0.3), (5, 2.0), (6, 1.05), (7, 8.0)] {
            for n in [5, 40, 500] {
                let (probs, labels) = miscalibrated(n, scale, seed + n as u64);
                if labels.iter().all(|&y| y == labels[0]) {
                    continue;
                }
                let t = fit_temperature(&probs, &labels).unwrap();
                let scaled: Vec<f64> = probs.iter().map(|&p| apply_temperature(p, t)).collect();
                let before = binary_cross_entropy(&probs, &labels).unwrap();
                let after = binary_cross_entropy(&scaled, &labels).unwrap();
                assert!(after <= before + 1e-12, "seed {seed} n {n}: {after} > {before} (T = {t})");
            }
        }
    }

    #[test]
    fn separable_data_hits_the_range_end_and_errors_are_typed() {
        let probs = [0.2, 0.3, 0.7, 0.8];
        let labels = [0, 0, 1, 1];
        let t = fit_temperature(&probs, &labels).unwrap();
        assert!((t - TEMPERATURE_RANGE.0).abs() < 1e-6, "{t}");
        assert_eq!(fit_temperature(&[0.1, 0.2], &[1, 1]), Err(MetricsError::OneClass { class: 1 }));
        assert!(matches!(fit_temperature(&[1.5, 0.2], &[1, 0]), Err(MetricsError::ProbabilityOutOfRange { .. })));
        assert!(matches!(fit_temperature(&[], &[]), Err(MetricsError::Empty)));
    }
}
