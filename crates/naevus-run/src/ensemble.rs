//! An ensemble of trained runs used as one model: which runs, with what weights, combined how
//! ([`EnsembleDefinition`], ensemble.json). `naevus export --ensemble FILE` reads one that
//! names runs anywhere; an exported ensemble bundle holds one whose members are its own
//! `members/NAME` folders, each a complete single-run bundle.
//!
//! ```text
//! BUNDLE/
//!   ensemble.json        combination, weights, members and the SHA-256 of each
//!   MODEL_CARD.md        the ensemble's card (model_card.json)
//!   members/NAME/        one exported run per member (run.json, fold-K/, its own card)
//! ```

use std::path::{Path, PathBuf};

use naevus_data::error::excerpt;
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::write_atomic;

/// The file in an ensemble bundle (and the usual name of a saved definition).
pub const ENSEMBLE_FILE: &str = "ensemble.json";

/// The folder of an ensemble bundle that holds its members.
pub const MEMBERS_FOLDER: &str = "members";

/// Most members an ensemble may have (seed 004 rank-averaged 18 models).
pub const MAX_MEMBERS: usize = 32;

/// How the members' melanoma probabilities (each on its own run's one scale: calibrated when
/// it has a calibration) become the ensemble's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combination {
    /// The weighted mean of the probabilities.
    MeanProbability,
    /// The sigmoid of the weighted mean of the logits: a member that is sure counts for more.
    MeanLogit,
}

impl std::str::FromStr for Combination {
    type Err = RunError;

    fn from_str(text: &str) -> Result<Self, RunError> {
        match text {
            "mean-probability" => Ok(Self::MeanProbability),
            "mean-logit" => Ok(Self::MeanLogit),
            other => Err(RunError::Invalid(format!("unknown combination \"{}\": choose mean-probability or mean-logit", excerpt(other)))),
        }
    }
}

impl Combination {
    pub fn name(self) -> &'static str {
        match self {
            Self::MeanProbability => "mean-probability",
            Self::MeanLogit => "mean-logit",
        }
    }

    /// One image's probability from its members' `probabilities`, with `weights` that sum
    /// to 1 (one each). Logits are taken of probabilities kept 1e-7 from 0 and 1, so that a
    /// member that says exactly 0 or 1 does not decide alone.
    pub fn combine(self, probabilities: &[f64], weights: &[f64]) -> f64 {
        match self {
            Self::MeanProbability => probabilities.iter().zip(weights).map(|(p, w)| p * w).sum(),
            Self::MeanLogit => {
                let logit = |p: f64| {
                    let p = p.clamp(1e-7, 1.0 - 1e-7);
                    (p / (1.0 - p)).ln()
                };
                let mean: f64 = probabilities.iter().zip(weights).map(|(&p, w)| logit(p) * w).sum();
                1.0 / (1.0 + (-mean).exp())
            }
        }
    }
}

/// One member: a trained run (or a single-run bundle) and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMember {
    /// Its name in captions, columns and the bundle's `members/` folder: letters, digits,
    /// '-', '_' and '.', not starting with '.'.
    pub name: String,
    /// Where the run is: relative to the file's folder, or absolute. In a bundle always
    /// `members/NAME`.
    pub run: PathBuf,
    /// Any finite number above 0; the weights are normalised to sum 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// In a bundle: [`crate::RunDir::model_sha256`] of the member as exported, checked on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// Several runs as one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleDefinition {
    pub combination: Combination,
    pub members: Vec<EnsembleMember>,
}

impl EnsembleDefinition {
    /// Whether `dir` holds an ensemble (its ensemble.json) rather than one run.
    pub fn is_ensemble(dir: &Path) -> bool {
        dir.join(ENSEMBLE_FILE).is_file()
    }

    /// Reads a definition file. Its members' runs are resolved against the file's folder.
    pub fn read(path: &Path) -> Result<Self, RunError> {
        // At most 1 MiB: a definition is a few hundred bytes, and the path may be a device.
        let mut text = String::new();
        let file = std::fs::File::open(path).map_err(|e| RunError::io(path, e))?;
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 1 << 20), &mut text).map_err(|e| RunError::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| RunError::json(path, 0, &e))?;
        if let Some(problem) = crate::text_limits::overlong_string(&value) {
            return Err(RunError::Invalid(format!("{}: {problem}", path.display())));
        }
        let mut definition: Self = serde_json::from_value(value).map_err(|e| RunError::Invalid(format!("{}: {e}", path.display())))?;
        definition.check().map_err(|problem| RunError::Invalid(format!("{}: {problem}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for member in &mut definition.members {
            member.run = base.join(&member.run);
        }
        Ok(definition)
    }

    /// Reads the ensemble.json of the bundle `dir`: every member must be the bundle's own
    /// `members/NAME` folder (a bundle from elsewhere cannot point outside itself) and carry
    /// its SHA-256. Members' runs come back joined to `dir`.
    pub fn read_bundle(dir: &Path) -> Result<Self, RunError> {
        let path = dir.join(ENSEMBLE_FILE);
        let definition = Self::read(&path)?;
        for (i, member) in definition.members.iter().enumerate() {
            let own = dir.join(MEMBERS_FOLDER).join(&member.name);
            if member.run != own {
                return Err(RunError::Invalid(format!(
                    "{}: members[{i}].run must be \"{MEMBERS_FOLDER}/{}\" in a bundle; the bundle is damaged (export it again)",
                    path.display(),
                    member.name
                )));
            }
            if member.model_sha256.is_none() {
                return Err(RunError::Invalid(format!("{}: members[{i}] has no model_sha256; the bundle is damaged (export it again)", path.display())));
            }
        }
        Ok(definition)
    }

    /// Writes ensemble.json into the bundle `dir` (members' runs written as given).
    pub fn write(&self, dir: &Path) -> Result<(), RunError> {
        self.check().map_err(RunError::Invalid)?;
        let json = serde_json::to_string_pretty(self).map_err(|e| RunError::Invalid(e.to_string()))?;
        Ok(write_atomic(&dir.join(ENSEMBLE_FILE), json.as_bytes())?)
    }

    /// The members' weights normalised to sum 1 (divided by the largest first, so that
    /// weights near f64::MAX do not overflow the sum).
    pub fn weights(&self) -> Vec<f64> {
        let largest = self.members.iter().map(|m| m.weight).fold(0.0, f64::max);
        let scaled: Vec<f64> = self.members.iter().map(|m| m.weight / largest).collect();
        let sum: f64 = scaled.iter().sum();
        scaled.into_iter().map(|w| w / sum).collect()
    }

    /// What makes a definition unusable, named by its place.
    pub fn check(&self) -> Result<(), String> {
        if !(2..=MAX_MEMBERS).contains(&self.members.len()) {
            return Err(format!("an ensemble has 2 to {MAX_MEMBERS} members, this one {}", self.members.len()));
        }
        for (i, member) in self.members.iter().enumerate() {
            check_name(&member.name).map_err(|problem| format!("members[{i}].name: {problem}"))?;
            if self.members[..i].iter().any(|m| m.name == member.name) {
                return Err(format!("members[{i}].name: \"{}\" names two members; give each its own", member.name));
            }
            if !(member.weight.is_finite() && member.weight > 0.0) {
                return Err(format!("members[{i}].weight: {} is not a finite number above 0", member.weight));
            }
        }
        Ok(())
    }
}

/// How far apart members' probabilities of one image lie: the largest minus the smallest
/// (0 for a single run).
pub fn spread(members: &[f64]) -> f64 {
    members.iter().copied().fold(f64::MIN, f64::max) - members.iter().copied().fold(f64::MAX, f64::min)
}

/// A short SHA-256 of the bundle's ensemble.json, which names every member's own: which
/// ensemble answered, for a result's record (as [`crate::RunDir::model_sha256`] for one run).
pub fn bundle_sha256(dir: &Path) -> Result<String, RunError> {
    use sha2::{Digest, Sha256};
    let path = dir.join(ENSEMBLE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| RunError::io(&path, e))?;
    Ok(Sha256::digest(&bytes)[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// A member name becomes a folder of the bundle: it must not be a path.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(format!("\"{}\" is not a member name: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'", excerpt(name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mean_of_logits_leans_towards_the_sure_member() {
        let weights = [0.5, 0.5];
        let probability = Combination::MeanProbability.combine(&[0.5, 0.99], &weights);
        let logit = Combination::MeanLogit.combine(&[0.5, 0.99], &weights);
        assert!((probability - 0.745).abs() < 1e-12);
        // sigmoid(logit(0.99) / 2) = sqrt(99) / (1 + sqrt(99)).
        assert!((logit - 99f64.sqrt() / (1.0 + 99f64.sqrt())).abs() < 1e-12);
        assert!(logit > probability);
        // Agreeing members give their common probability either way.
        for combination in [Combination::MeanProbability, Combination::MeanLogit] {
            assert!((combination.combine(&[0.3, 0.3], &weights) - 0.3).abs() < 1e-12);
        }
        assert!(Combination::MeanLogit.combine(&[0.0, 1.0], &weights).is_finite());
    }

    #[test]
    fn a_definition_names_what_is_wrong_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENSEMBLE_FILE);
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "runs/a", "weight": 3}, {"name": "b", "run": "/abs/b"}]}"#);
        let definition = EnsembleDefinition::read(&path).unwrap();
        assert_eq!(definition.members[0].run, dir.path().join("runs/a"));
        assert_eq!(definition.members[1].run, PathBuf::from("/abs/b"));
        assert_eq!(definition.weights(), vec![0.75, 0.25]);
        for (text, expected) in [
            (r#"{"combination": "median", "members": []}"#, "unknown variant"),
            (r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "a"}]}"#, "2 to 32 members"),
            (r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "a"}, {"name": "a", "run": "b"}]}"#, "names two members"),
            (r#"{"combination": "mean-logit", "members": [{"name": "../x", "run": "a"}, {"name": "b", "run": "b"}]}"#, "members[0].name"),
            (r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "a", "weight": -1}, {"name": "b", "run": "b"}]}"#, "members[0].weight"),
        ] {
            write(text);
            let message = EnsembleDefinition::read(&path).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
        // A bundle's members live in the bundle and carry their checksums.
        write(r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "/elsewhere", "model_sha256": "00"}, {"name": "b", "run": "members/b", "model_sha256": "00"}]}"#);
        assert!(EnsembleDefinition::read_bundle(dir.path()).unwrap_err().to_string().contains("members[0].run must be \"members/a\""));
        write(r#"{"combination": "mean-logit", "members": [{"name": "a", "run": "members/a", "model_sha256": "00"}, {"name": "b", "run": "members/b"}]}"#);
        assert!(EnsembleDefinition::read_bundle(dir.path()).unwrap_err().to_string().contains("members[1] has no model_sha256"));
    }
}
