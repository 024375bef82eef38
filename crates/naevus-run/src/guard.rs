//! The out-of-domain guard of a fold: where its training images lie in the network's
//! feature space ([`FeatureGaussian`]) and the distance beyond which an image is outside the
//! model's domain. Fitted when training ends (or again by `naevus guard`), sealed in
//! `fold-K/guard.bin`, copied into bundles; predict, explain and the service report it.
//!
//! Payload: the JSON of everything but the Cholesky factor, its length first (u64 LE), then
//! the factor as f32 LE (a 1280-feature network's is 3.3 MB, ten times that as JSON).

use std::path::Path;

use naevus_metrics::{FeatureGaussian, quantile};
use serde::{Deserialize, Serialize};

use crate::dir::FoldDir;
use crate::error::RunError;
use crate::sealed::{read_sealed, write_sealed};

/// The file in each fold's directory.
pub const GUARD_FILE: &str = "guard.bin";
const GUARD_KIND: &str = "guard";

/// Fewer training images than this leave too few to fit a guard on and set its threshold
/// with: such a fold goes without one.
pub const MIN_GUARD_TRAINING_IMAGES: usize = 50;

/// The percentiles of the training images' own distances a threshold may sit at.
pub const GUARD_PERCENTILES: std::ops::RangeInclusive<f64> = 50.0..=100.0;

/// What the guard measures of images, one row per image: the network's pooled features, and
/// the image statistics of [`naevus_data::image_statistics`] (what a flat or shaded picture
/// cannot hide, though the network's features may).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardInputs {
    pub features: Vec<Vec<f32>>,
    pub statistics: Vec<Vec<f32>>,
}

/// The guard of one fold and what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainGuard {
    /// The checkpoint whose features it measures (e.g. "best"), and the SHA-256 of its
    /// weights (a fold trained further gets a new guard).
    pub checkpoint: String,
    #[serde(default)]
    pub weights_sha256: String,
    /// The percentile of the training images' distances that each threshold is.
    pub percentile: f64,
    /// Images farther than either threshold, in network features or in image statistics,
    /// are outside the domain.
    pub feature_threshold: f64,
    pub statistics_threshold: f64,
    /// How many of the fold's training images it was fitted on.
    pub training_images: usize,
    /// The fold's validation images (never fitted on), and the share of them beyond a
    /// threshold: the check that the thresholds mean what their percentile says.
    pub validation_images: usize,
    pub validation_flagged: Option<f64>,
    #[serde(skip)]
    pub features: FeatureGaussian,
    pub statistics: FeatureGaussian,
}

/// [`DomainGuard`]'s JSON part: the feature Gaussian without its Cholesky factor.
#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    guard: DomainGuard,
    means: Vec<Vec<f32>>,
    shrinkage: f64,
}

/// A Gaussian fitted on every other row (with its class) and the `percentile` of the other
/// rows' distances to it: with about as many images as features, the images a covariance
/// was fitted on lie much nearer to it than any other image does.
fn fit_with_threshold(rows: &[Vec<f32>], classes: &[usize], percentile: f64, what: &str) -> Result<(FeatureGaussian, f64), RunError> {
    let (fit_rows, threshold_rows): (Vec<usize>, Vec<usize>) = (0..rows.len()).partition(|k| k % 2 == 0);
    let picked: Vec<Vec<f32>> = fit_rows.iter().map(|&k| rows[k].clone()).collect();
    let picked_classes: Vec<usize> = fit_rows.iter().map(|&k| classes[k]).collect();
    let gaussian = FeatureGaussian::fit(&picked, &picked_classes)
        .map_err(|e| RunError::Invalid(format!("fitting the out-of-domain guard's {what} on {} training images: {e}", picked.len())))?;
    let distances: Vec<f64> = threshold_rows.iter().map(|&k| gaussian.distance(&rows[k])).collect();
    let threshold = quantile(&distances, percentile / 100.0)
        .filter(|t| *t > 0.0)
        .ok_or_else(|| RunError::Invalid(format!("the training images' {what} give no positive distance to set the guard's threshold at")))?;
    Ok((gaussian, threshold))
}

impl DomainGuard {
    /// Fits the guard on a fold's `training` images (with their classes) at the
    /// `percentile` of their own distances, and checks it on its `validation` images.
    pub fn fit(training: &GuardInputs, classes: &[usize], validation: &GuardInputs, percentile: f64, checkpoint: &str) -> Result<Self, RunError> {
        if !GUARD_PERCENTILES.contains(&percentile) {
            return Err(RunError::Invalid(format!("the guard's percentile must lie between 50 and 100, got {percentile}")));
        }
        let n = training.features.len();
        if n < MIN_GUARD_TRAINING_IMAGES {
            return Err(RunError::Invalid(format!("{n} training images are too few to fit a guard on (it takes {MIN_GUARD_TRAINING_IMAGES})")));
        }
        if classes.len() != n || training.statistics.len() != n || validation.statistics.len() != validation.features.len() {
            return Err(RunError::Invalid(format!(
                "the guard needs as many classes and image statistics as images: {n} images, {} classes, {} statistics",
                classes.len(),
                training.statistics.len()
            )));
        }
        let (features, feature_threshold) = fit_with_threshold(&training.features, classes, percentile, "network features")?;
        let (statistics, statistics_threshold) = fit_with_threshold(&training.statistics, &vec![0; n], percentile, "image statistics")?;
        let mut guard = Self {
            checkpoint: checkpoint.to_string(),
            weights_sha256: String::new(),
            percentile,
            feature_threshold,
            statistics_threshold,
            training_images: n,
            validation_images: validation.features.len(),
            validation_flagged: None,
            features,
            statistics,
        };
        let flagged = validation.features.iter().zip(&validation.statistics).filter(|(f, s)| !(guard.relative_distance(f, s) <= 1.0)).count();
        guard.validation_flagged = (guard.validation_images > 0).then(|| flagged as f64 / guard.validation_images as f64);
        Ok(guard)
    }

    /// The image's distance in units of the thresholds, the larger of its network features'
    /// and its image statistics': at most 1 inside the domain. NaN (outside) when the
    /// features are not numbers.
    pub fn relative_distance(&self, features: &[f32], statistics: &[f32]) -> f64 {
        let in_features = self.features.distance(features) / self.feature_threshold;
        let in_statistics = self.statistics.distance(statistics) / self.statistics_threshold;
        if in_features.is_nan() || in_statistics.is_nan() { f64::NAN } else { in_features.max(in_statistics) }
    }

    /// One line on what the guard is and how it did on the fold's validation images.
    pub fn summary(&self) -> String {
        let check = match self.validation_flagged {
            Some(share) => format!("{:.1}% of the {} validation images lie beyond it", 100.0 * share, self.validation_images),
            None => "no validation images to check it on".into(),
        };
        format!(
            "out-of-domain guard at the {}th percentile of {} training images' distances ({} network features, {} image statistics); {check}",
            self.percentile,
            self.training_images,
            self.features.dimension(),
            self.statistics.dimension()
        )
    }

    /// The guard of `fold`, or None when the fold has none (trained by an older naevus).
    pub fn read(fold: &FoldDir) -> Result<Option<Self>, RunError> {
        let path = fold.path.join(GUARD_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Self::from_payload(&path, &read_sealed(&path, GUARD_KIND)?).map(Some)
    }

    /// Writes the guard of `fold`, sealed, atomically.
    pub fn write(&self, fold: &FoldDir) -> Result<(), RunError> {
        let header = Header { guard: self.clone(), means: self.features.means.clone(), shrinkage: self.features.shrinkage };
        let json = serde_json::to_vec(&header).map_err(|e| RunError::Invalid(format!("serialising the guard: {e}")))?;
        let mut payload = Vec::with_capacity(8 + json.len() + 4 * self.features.cholesky.len());
        payload.extend_from_slice(&(json.len() as u64).to_le_bytes());
        payload.extend_from_slice(&json);
        for value in &self.features.cholesky {
            payload.extend_from_slice(&value.to_le_bytes());
        }
        write_sealed(&fold.path.join(GUARD_FILE), GUARD_KIND, &payload)
    }

    fn from_payload(path: &Path, payload: &[u8]) -> Result<Self, RunError> {
        let damaged = |what: String| RunError::Damaged { path: path.to_path_buf(), what };
        let length = payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).ok_or_else(|| damaged("it is too short".into()))?;
        let json_end = usize::try_from(length).ok().and_then(|l| l.checked_add(8)).filter(|&end| end <= payload.len()).ok_or_else(|| damaged("its header length is beyond its end".into()))?;
        let header: Header = serde_json::from_slice(&payload[8..json_end]).map_err(|e| damaged(format!("its header is not a guard: {e}")))?;
        let factor = &payload[json_end..];
        let dimension = header.means.first().map_or(0, Vec::len);
        if header.means.iter().any(|m| m.len() != dimension) || factor.len() != 4 * dimension * (dimension + 1) / 2 {
            return Err(damaged(format!("it holds {} bytes of covariance for {dimension} features", factor.len())));
        }
        let guard = &header.guard;
        for threshold in [guard.feature_threshold, guard.statistics_threshold] {
            if !(threshold > 0.0 && threshold.is_finite()) {
                return Err(damaged(format!("its threshold {threshold} is not a positive number")));
            }
        }
        let statistics = guard.statistics.dimension();
        if guard.statistics.cholesky.len() != statistics * (statistics + 1) / 2 {
            return Err(damaged(format!("its image statistics' covariance does not fit their {statistics} dimensions")));
        }
        let cholesky = factor.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(Self { features: FeatureGaussian { means: header.means, cholesky, shrinkage: header.shrinkage }, ..header.guard })
    }
}

/// What a fold ensemble's guards say of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DomainCheck {
    /// The mean over folds of the image's distance in units of each fold's threshold.
    pub distance: f64,
    /// Whether that is at most 1: the image lies where the training images did.
    pub within: bool,
}

impl DomainCheck {
    /// The check of one image from each fold's [`DomainGuard::relative_distance`].
    pub fn of_folds(relative_distances: &[f64]) -> Self {
        let distance = if relative_distances.is_empty() { f64::NAN } else { relative_distances.iter().sum::<f64>() / relative_distances.len() as f64 };
        Self { distance, within: distance <= 1.0 }
    }

    /// The check of one image by an ensemble from each member's: the farthest member's
    /// distance, so that an image is within only when every member says so (a member that
    /// cannot measure it, NaN, puts it outside).
    pub fn of_members(checks: &[DomainCheck]) -> Self {
        let nan = checks.is_empty() || checks.iter().any(|c| c.distance.is_nan());
        let distance = if nan { f64::NAN } else { checks.iter().map(|c| c.distance).fold(f64::MIN, f64::max) };
        Self { distance, within: distance <= 1.0 }
    }
}

/// How well a run's guards tell kinds of images that are not dermoscopy from its validation
/// images: what `naevus guard --check DIR` measured, kept in the run ([`GUARD_CHECK_FILE`])
/// for the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardCheck {
    /// The guards' percentile.
    pub percentile: f64,
    /// Every fold's validation images, each measured by its own fold's guard, and the share
    /// of them beyond the threshold.
    pub validation_images: usize,
    pub validation_flagged: f64,
    pub kinds: Vec<KindCheck>,
}

/// One kind of image (a folder of `--check DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindCheck {
    pub kind: String,
    pub images: usize,
    /// The share outside the domain (by the fold ensemble's guards, as predict reports it).
    pub flagged: f64,
    /// The AUROC of the distance at telling these images from the validation images, each
    /// fold's guard on its own validation images, averaged over folds.
    pub auroc: f64,
}

/// The file in a run directory.
pub const GUARD_CHECK_FILE: &str = "guard_check.json";

impl GuardCheck {
    /// The check stored in the run directory `dir`, if any.
    pub fn read(dir: &Path) -> Result<Option<Self>, RunError> {
        let path = dir.join(GUARD_CHECK_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| RunError::io(&path, e))?;
        serde_json::from_str(&text).map(Some).map_err(|e| RunError::json(&path, 0, &e))
    }

    pub fn write(&self, dir: &Path) -> Result<(), RunError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| RunError::Invalid(format!("serialising the guard check: {e}")))?;
        Ok(crate::write_atomic(&dir.join(GUARD_CHECK_FILE), &json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensemble_image_is_within_only_when_every_member_says_so() {
        let check = |distance: f64| DomainCheck { distance, within: distance <= 1.0 };
        assert_eq!(DomainCheck::of_members(&[check(0.5), check(0.9)]), check(0.9));
        assert!(!DomainCheck::of_members(&[check(0.5), check(1.2)]).within);
        // A member that cannot measure the image puts it outside.
        assert!(!DomainCheck::of_members(&[check(0.5), check(f64::NAN)]).within);
        assert!(!DomainCheck::of_members(&[]).within);
    }

    fn fold(dir: &Path) -> FoldDir {
        FoldDir { name: "fold-0".into(), path: dir.to_path_buf() }
    }

    fn features(n: usize, offset: f32) -> Vec<Vec<f32>> {
        (0..n).map(|k| (0..8).map(|i| offset + ((k * 31 + i * 17) % 13) as f32 / 13.0).collect()).collect()
    }

    #[test]
    fn a_guard_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = |n: usize| GuardInputs { features: features(n, 0.0), statistics: features(n, 1.0) };
        assert!(DomainGuard::fit(&inputs(49), &[0; 49], &inputs(5), 99.0, "best").unwrap_err().to_string().contains("too few"));
        let (training, classes): (GuardInputs, Vec<usize>) = (inputs(300), (0..300).map(|k| k % 2).collect());
        let guard = DomainGuard::fit(&training, &classes, &inputs(50), 99.0, "best").unwrap();
        assert!(guard.validation_flagged.unwrap() < 0.1);
        assert!(guard.relative_distance(&training.features[0], &training.statistics[0]) < 1.0);
        // Far out in either measure is outside.
        assert!(guard.relative_distance(&[5.0; 8], &training.statistics[0]) > 2.0);
        assert!(guard.relative_distance(&training.features[0], &[5.0; 8]) > 2.0);
        assert!(guard.relative_distance(&training.features[0], &[1.0; 3]).is_nan());
        guard.write(&fold(dir.path())).unwrap();
        let back = DomainGuard::read(&fold(dir.path())).unwrap().unwrap();
        assert_eq!(back, guard);

        let path = dir.path().join(GUARD_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = DomainGuard::read(&fold(dir.path())).unwrap_err().to_string();
        assert!(error.contains("guard.bin") && error.contains("checksum"), "{error}");
        assert!(DomainGuard::read(&fold(&dir.path().join("none"))).unwrap().is_none());
        assert!(DomainGuard::fit(&training, &classes, &GuardInputs::default(), 20.0, "best").is_err());
        assert!(DomainGuard::fit(&training, &classes[1..], &GuardInputs::default(), 99.0, "best").is_err());
    }
}
