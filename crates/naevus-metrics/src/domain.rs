//! How far an image lies from the images a model was trained on, in the model's own feature
//! space: the Mahalanobis distance of its pooled features to the nearest class mean under
//! one covariance the classes share (Lee et al. 2018). The covariance is shrunk towards a
//! scaled identity by the Ledoit-Wolf rule (2004), since a few thousand images cannot pin
//! down a covariance of a thousand or more features.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Class means and the shared, shrunk covariance of training features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureGaussian {
    /// One mean per class present in the training features, each `dimension` values long.
    pub means: Vec<Vec<f32>>,
    /// The lower Cholesky factor L of the covariance (covariance = L Lᵀ), row after row,
    /// packed: row i holds its i + 1 values up to the diagonal.
    pub cholesky: Vec<f32>,
    /// Weight of the scaled identity in the covariance (0: the sample covariance as it is).
    pub shrinkage: f64,
}

impl FeatureGaussian {
    /// Fits the class means (`classes[k]` is the class of `features[k]`) and the shared
    /// covariance of the features around them.
    pub fn fit(features: &[Vec<f32>], classes: &[usize]) -> Result<Self, MetricsError> {
        if features.len() != classes.len() {
            return Err(MetricsError::LengthMismatch { scores: features.len(), labels: classes.len() });
        }
        let n = features.len();
        if n < 2 {
            return Err(MetricsError::Empty);
        }
        let dimension = features[0].len();
        for (index, row) in features.iter().enumerate() {
            if row.len() != dimension || row.iter().any(|v| !v.is_finite()) {
                return Err(MetricsError::NonFinite { index });
            }
        }

        // Means of the classes that occur, in class order.
        let class_count = classes.iter().max().map_or(0, |c| c + 1);
        let mut sums = vec![vec![0.0f64; dimension]; class_count];
        let mut counts = vec![0usize; class_count];
        for (row, &class) in features.iter().zip(classes) {
            counts[class] += 1;
            for (s, &v) in sums[class].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mut slot_of_class = vec![usize::MAX; class_count];
        let mut means: Vec<Vec<f64>> = Vec::new();
        for (class, (sum, count)) in sums.into_iter().zip(&counts).enumerate() {
            if *count > 0 {
                slot_of_class[class] = means.len();
                means.push(sum.into_iter().map(|s| s / *count as f64).collect());
            }
        }

        // Sample covariance around the class means (lower triangle), and the sum of the
        // centred rows' fourth powers of norm that Ledoit-Wolf's estimate needs.
        let mut covariance = vec![0.0f64; dimension * dimension];
        let mut sum_norm4 = 0.0;
        let mut centred = vec![0.0f64; dimension];
        for (row, &class) in features.iter().zip(classes) {
            let mean = &means[slot_of_class[class]];
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(mean) {
                *c = f64::from(v) - m;
            }
            sum_norm4 += centred.iter().map(|c| c * c).sum::<f64>().powi(2);
            for i in 0..dimension {
                let ci = centred[i];
                for (s, &cj) in covariance[i * dimension..i * dimension + i + 1].iter_mut().zip(&centred[..=i]) {
                    *s += ci * cj;
                }
            }
        }
        let nf = n as f64;
        let d = dimension as f64;
        let mut frobenius2 = 0.0;
        let mut trace = 0.0;
        for i in 0..dimension {
            for j in 0..=i {
                let v = covariance[i * dimension + j] / nf;
                covariance[i * dimension + j] = v;
                frobenius2 += if i == j { v * v } else { 2.0 * v * v };
            }
            trace += covariance[i * dimension + i];
        }
        // Ledoit-Wolf: the identity scaled to the mean variance, weighted by how much of
        // the sample covariance's distance from it the sampling noise explains.
        let scale = trace / d;
        let dispersion = (frobenius2 - d * scale * scale) / d;
        let noise = ((sum_norm4 / nf - frobenius2) / (nf * d)).max(0.0);
        let shrinkage = if dispersion > 0.0 { (noise / dispersion).min(1.0) } else { 1.0 };
        for i in 0..dimension {
            for j in 0..=i {
                let v = &mut covariance[i * dimension + j];
                *v *= 1.0 - shrinkage;
                if i == j {
                    *v += shrinkage * scale;
                }
            }
        }
        // A constant feature has no variance at all; a floor keeps the factor defined.
        let floor = (scale * 1e-9).max(f64::MIN_POSITIVE);
        let cholesky = cholesky_packed(&covariance, dimension, floor);
        Ok(Self {
            means: means.into_iter().map(|m| m.into_iter().map(|v| v as f32).collect()).collect(),
            cholesky: cholesky.into_iter().map(|v| v as f32).collect(),
            shrinkage,
        })
    }

    /// Length of the feature vectors.
    pub fn dimension(&self) -> usize {
        self.means.first().map_or(0, Vec::len)
    }

    /// The Mahalanobis distance of `feature` to the nearest class mean; NaN when it is not
    /// `dimension` finite numbers.
    pub fn distance(&self, feature: &[f32]) -> f64 {
        let dimension = self.dimension();
        if feature.len() != dimension || self.cholesky.len() != dimension * (dimension + 1) / 2 {
            return f64::NAN;
        }
        let mut solved = vec![0.0f64; dimension];
        self.means
            .iter()
            .map(|mean| {
                // Forward substitution: L y = x - mean; the distance is |y|.
                let mut row_start = 0;
                for i in 0..dimension {
                    let row = &self.cholesky[row_start..row_start + i + 1];
                    let known: f64 = row[..i].iter().zip(&solved[..i]).map(|(&l, y)| f64::from(l) * y).sum();
                    solved[i] = (f64::from(feature[i]) - f64::from(mean[i]) - known) / f64::from(row[i]);
                    row_start += i + 1;
                }
                solved.iter().map(|y| y * y).sum::<f64>().sqrt()
            })
            .fold(f64::INFINITY, f64::min)
    }
}

/// The lower Cholesky factor of the symmetric positive definite `matrix` (its lower triangle
/// read, row-major, `n` x `n`), packed row after row; pivots below `floor` are raised to it.
fn cholesky_packed(matrix: &[f64], n: usize, floor: f64) -> Vec<f64> {
    let mut factor = vec![0.0f64; n * (n + 1) / 2];
    let start = |i: usize| i * (i + 1) / 2;
    for i in 0..n {
        for j in 0..=i {
            let (row_i, row_j) = (start(i), start(j));
            let dot: f64 = factor[row_i..row_i + j].iter().zip(&factor[row_j..row_j + j]).map(|(a, b)| a * b).sum();
            let value = matrix[i * n + j] - dot;
            factor[row_i + j] = if i == j { value.max(floor).sqrt() } else { value / factor[row_j + j] };
        }
    }
    factor
}

/// The `q` quantile (0..=1, linear between order statistics, as numpy's default) of
/// `values`, NaNs left out; None when no value is a number.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Features of two classes in 6 dimensions with unequal variances.
    fn sample(rng: &mut ChaCha8Rng, class: usize) -> Vec<f32> {
        let spread = [1.0, 2.0, 0.5, 1.0, 3.0, 0.2];
        spread.iter().enumerate().map(|(i, s)| s * rng.random_range(-1.0f32..1.0) + if i == 0 { 4.0 * class as f32 } else { 0.0 }).collect()
    }

    #[test]
    fn points_far_from_every_class_are_farther_than_the_training_points() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let classes: Vec<usize> = (0..2000).map(|k| k % 2).collect();
        let features: Vec<Vec<f32>> = classes.iter().map(|&c| sample(&mut rng, c)).collect();
        let gaussian = FeatureGaussian::fit(&features, &classes).unwrap();
        assert_eq!(gaussian.means.len(), 2);
        // 2000 images in 6 dimensions leave little to shrink.
        assert!(gaussian.shrinkage < 0.05, "{}", gaussian.shrinkage);
        assert!((gaussian.means[1][0] - 4.0).abs() < 0.1, "{:?}", gaussian.means);
        let distances: Vec<f64> = features.iter().map(|f| gaussian.distance(f)).collect();
        let threshold = quantile(&distances, 0.99).unwrap();
        // Uniform features in 6 dimensions, each scaled by its spread: the distance is at
        // most sqrt(6 * 3) = 4.24 once standardised.
        assert!(threshold > 2.0 && threshold < 4.5, "{threshold}");
        // 3 units along the third axis is 6 of its spreads; half a unit from a class mean
        // along the first is well inside.
        assert!(gaussian.distance(&[0.0, 0.0, 3.0, 0.0, 0.0, 0.0]) > 2.0 * threshold);
        assert!(gaussian.distance(&[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]) < threshold);
        assert!(gaussian.distance(&[0.0; 5]).is_nan());
    }

    #[test]
    fn with_few_images_the_covariance_is_shrunk_and_stays_defined() {
        // 4 images in 50 dimensions, one feature constant: the sample covariance is singular.
        let features: Vec<Vec<f32>> = (0..4).map(|k| (0..50).map(|i| if i == 0 { 1.0 } else { ((k * 7 + i * 3) % 11) as f32 }).collect()).collect();
        let gaussian = FeatureGaussian::fit(&features, &[0, 0, 1, 1]).unwrap();
        assert!(gaussian.shrinkage > 0.1, "{}", gaussian.shrinkage);
        assert!(gaussian.cholesky.iter().all(|v| v.is_finite()));
        assert!(features.iter().all(|f| gaussian.distance(f).is_finite()));
    }

    #[test]
    fn bad_features_are_refused() {
        assert!(FeatureGaussian::fit(&[vec![1.0]], &[0]).is_err());
        assert!(FeatureGaussian::fit(&[vec![1.0], vec![f32::NAN]], &[0, 1]).is_err());
        assert!(FeatureGaussian::fit(&[vec![1.0], vec![1.0, 2.0]], &[0, 1]).is_err());
        assert!(FeatureGaussian::fit(&[vec![1.0], vec![2.0]], &[0]).is_err());
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    }
}
