//! Temperature scaling (Guo et al. 2017) stored with a run: fitted on its out-of-fold (or
//! validation) predictions when training ends, applied by predict, explain and the service (the run's one scale). It changes
//! how confident the probabilities are, never their order, so AUC is unaffected.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::write_atomic;

/// The file in a run directory.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// A fitted temperature and what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Divides the logit: p' = sigmoid(logit(p) / temperature).
    pub temperature: f64,
    /// Which predictions, e.g. "oof.csv".
    pub fitted_on: String,
    pub images: usize,
    /// Mean log loss of those predictions before and after scaling.
    pub log_loss_before: f64,
    pub log_loss_after: f64,
}

impl Calibration {
    /// Fits the temperature that minimises the log loss of `probs` against `labels`.
    pub fn fit(probs: &[f64], labels: &[u8], fitted_on: &str) -> Result<Self, RunError> {
        let failed = |e: naevus_metrics::MetricsError| RunError::Invalid(format!("fitting the temperature on {fitted_on}: {e}"));
        let temperature = naevus_metrics::fit_temperature(probs, labels).map_err(failed)?;
        let scaled: Vec<f64> = probs.iter().map(|&p| naevus_metrics::apply_temperature(p, temperature)).collect();
        Ok(Self {
            temperature,
            fitted_on: fitted_on.to_string(),
            images: probs.len(),
            log_loss_before: naevus_metrics::binary_cross_entropy(probs, labels).map_err(failed)?,
            log_loss_after: naevus_metrics::binary_cross_entropy(&scaled, labels).map_err(failed)?,
        })
    }

    /// Calibrated probabilities.
    pub fn apply(&self, probs: &mut [f64]) {
        for p in probs {
            *p = naevus_metrics::apply_temperature(*p, self.temperature);
        }
    }

    pub fn write(&self, run_dir: &Path) -> Result<(), RunError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| RunError::Invalid(e.to_string()))?;
        Ok(write_atomic(&run_dir.join(CALIBRATION_FILE), json.as_bytes())?)
    }

    pub fn read(run_dir: &Path) -> Result<Self, RunError> {
        let path = run_dir.join(CALIBRATION_FILE);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            RunError::Invalid(format!(
                "{} has no {CALIBRATION_FILE}; fit one with `naevus calibrate --run {}`",
                run_dir.display(),
                run_dir.display()
            ))
        })?;
        let calibration: Self = serde_json::from_str(&text).map_err(|e| RunError::json(&path, 0, &e))?;
        // Only what fitting can give: a temperature of 1e-300 or 1e300 would serve every image
        // as certain or as 0.5.
        let (low, high) = naevus_metrics::TEMPERATURE_RANGE;
        if !(low..=high).contains(&calibration.temperature) {
            return Err(RunError::Invalid(format!(
                "{}: temperature: {} is outside {low}..={high}, the range calibration fits in; the file is damaged (fit it again with `naevus calibrate`)",
                path.display(),
                calibration.temperature
            )));
        }
        Ok(calibration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overconfident_predictions_get_a_temperature_above_one_and_a_lower_log_loss() {
        // Right 80% of the time but always 99% sure.
        let labels: Vec<u8> = (0..100).map(|i| u8::from(i % 2 == 0)).collect();
        let probs: Vec<f64> = (0..100).map(|i| if (i % 2 == 0) == (i % 10 < 8) { 0.99 } else { 0.01 }).collect();
        let calibration = Calibration::fit(&probs, &labels, "test").unwrap();
        assert!(calibration.temperature > 1.0, "{calibration:?}");
        assert!(calibration.log_loss_after < calibration.log_loss_before, "{calibration:?}");
        let mut scaled = probs.clone();
        calibration.apply(&mut scaled);
        assert!(scaled.iter().all(|&p| p > 0.01 && p < 0.99));

        let dir = tempfile::tempdir().unwrap();
        assert!(Calibration::read(dir.path()).unwrap_err().to_string().contains("naevus calibrate"));
        calibration.write(dir.path()).unwrap();
        let read = Calibration::read(dir.path()).unwrap();
        assert!((read.temperature - calibration.temperature).abs() < 1e-12 && read.images == 100, "{read:?}");
    }
}
