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

/// The percentile of the training images' own distances that bounds the domain, unless
/// told otherwise.
pub const DEFAULT_GUARD_PERCENTILE: f64 = 99.0;

/// The guard of one fold and what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainGuard {
    /// The checkpoint whose features it measures (e.g. "best").
    pub checkpoint: String,
    /// The percentile of the training images' distances that [`threshold`](Self::threshold) is.
    pub percentile: f64,
    /// Images farther than this are outside the domain.
    pub threshold: f64,
    /// How many of the fold's training images it was fitted on.
    pub training_images: usize,
    /// The fold's validation images (never fitted on), and the share of them beyond the
    /// threshold: the check that the threshold means what its percentile says.
    pub validation_images: usize,
    pub validation_flagged: Option<f64>,
    #[serde(skip)]
    pub gaussian: FeatureGaussian,
}

/// [`DomainGuard`]'s JSON part: the Gaussian without its Cholesky factor.
#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    guard: DomainGuard,
    means: Vec<Vec<f32>>,
    shrinkage: f64,
}

impl DomainGuard {
    /// Fits the guard on the features of a fold's `training` images (with their classes) at
    /// the `percentile` of their own distances, and checks it on its `validation` images.
    pub fn fit(training: &[Vec<f32>], classes: &[usize], validation: &[Vec<f32>], percentile: f64, checkpoint: &str) -> Result<Self, RunError> {
        if !(50.0..=100.0).contains(&percentile) {
            return Err(RunError::Invalid(format!("the guard's percentile must be 50 to 100, got {percentile}")));
        }
        let gaussian = FeatureGaussian::fit(training, classes)
            .map_err(|e| RunError::Invalid(format!("fitting the out-of-domain guard on {} training images: {e}", training.len())))?;
        let distances: Vec<f64> = training.iter().map(|f| gaussian.distance(f)).collect();
        let threshold = quantile(&distances, percentile / 100.0).ok_or_else(|| RunError::Invalid("no training image has a finite feature distance".into()))?;
        let flagged = validation.iter().filter(|f| !(gaussian.distance(f) <= threshold)).count();
        Ok(Self {
            checkpoint: checkpoint.to_string(),
            percentile,
            threshold,
            training_images: training.len(),
            validation_images: validation.len(),
            validation_flagged: (!validation.is_empty()).then(|| flagged as f64 / validation.len() as f64),
            gaussian,
        })
    }

    /// The image's distance in units of the threshold: at most 1 inside the domain. NaN
    /// (outside) when the features are not numbers.
    pub fn relative_distance(&self, features: &[f32]) -> f64 {
        self.gaussian.distance(features) / self.threshold
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
        let header = Header { guard: self.clone(), means: self.gaussian.means.clone(), shrinkage: self.gaussian.shrinkage };
        let json = serde_json::to_vec(&header).map_err(|e| RunError::Invalid(format!("serialising the guard: {e}")))?;
        let mut payload = Vec::with_capacity(8 + json.len() + 4 * self.gaussian.cholesky.len());
        payload.extend_from_slice(&(json.len() as u64).to_le_bytes());
        payload.extend_from_slice(&json);
        for value in &self.gaussian.cholesky {
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
        if !(header.guard.threshold > 0.0 && header.guard.threshold.is_finite()) {
            return Err(damaged(format!("its threshold {} is not a positive number", header.guard.threshold)));
        }
        let cholesky = factor.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(Self { gaussian: FeatureGaussian { means: header.means, cholesky, shrinkage: header.shrinkage }, ..header.guard })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(dir: &Path) -> FoldDir {
        FoldDir { name: "fold-0".into(), path: dir.to_path_buf() }
    }

    fn features(n: usize, offset: f32) -> Vec<Vec<f32>> {
        (0..n).map(|k| (0..8).map(|i| offset + ((k * 31 + i * 17) % 13) as f32 / 13.0).collect()).collect()
    }

    #[test]
    fn a_guard_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let training = features(300, 0.0);
        let classes: Vec<usize> = (0..300).map(|k| k % 2).collect();
        let guard = DomainGuard::fit(&training, &classes, &features(50, 0.0), 99.0, "best").unwrap();
        assert!(guard.validation_flagged.unwrap() < 0.1);
        assert!(guard.relative_distance(&[5.0; 8]) > 2.0);
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
        assert!(DomainGuard::fit(&training, &classes, &[], 20.0, "best").is_err());
    }
}
