//! The recipe's source-aware options: each source's share of a training epoch
//! ([`SourceShares`]), the rule that picks a fold's best epoch ([`CheckpointSelection`]), and
//! what run.json records of the sources a run trained on ([`TrainingSource`]).
//!
//! A source is what a record's `source` field names: the reader that produced it ("isic2017",
//! "ham10000", ...) or the name given at `naevus prepare --source-name`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Each source's share of a source-balanced epoch: "isic2017=1,ham10000=1" on the command
/// line, a table `{ isic2017 = 1, ham10000 = 1 }` in a recipe. Empty: every source an equal
/// share. A source left out, or given 0, never trains (it is still validated on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceShares(pub BTreeMap<String, f64>);

impl SourceShares {
    /// Whether no share is stated (every source trains, equally).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The share of each of `sources`, in their order (equal shares when none is stated).
    pub fn of(&self, sources: &[String]) -> Vec<f64> {
        sources.iter().map(|s| if self.is_empty() { 1.0 } else { self.0.get(s).copied().unwrap_or(0.0) }).collect()
    }

    /// Shares must be finite and non-negative with one above 0, and names plain.
    pub fn check(&self) -> Result<(), String> {
        for (name, share) in &self.0 {
            if !is_source_name(name) {
                return Err(format!("source_shares: \"{}\" is not a source name (letters, digits, '-', '_', '.')", naevus_data::error::excerpt(name)));
            }
            if !(share.is_finite() && *share >= 0.0 && *share <= 1e6) {
                return Err(format!("source_shares: the share of {name} must be a number from 0 to 1000000, got {share:?}"));
            }
        }
        if !self.is_empty() && self.0.values().all(|&share| share == 0.0) {
            return Err("source_shares: every share is 0, so nothing would train".into());
        }
        Ok(())
    }
}

impl FromStr for SourceShares {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut shares = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, share) = entry.split_once('=').ok_or_else(|| format!("\"{}\": expected source=share, e.g. isic2017=1", naevus_data::error::excerpt(entry)))?;
            let share: f64 = share.trim().parse().map_err(|_| format!("\"{}\": the share is not a number", naevus_data::error::excerpt(entry)))?;
            if shares.insert(name.trim().to_string(), share).is_some() {
                return Err(format!("source_shares names {} twice", naevus_data::error::excerpt(name.trim())));
            }
        }
        let shares = SourceShares(shares);
        shares.check()?;
        Ok(shares)
    }
}

impl fmt::Display for SourceShares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.0.iter().map(|(name, share)| format!("{name}={share}")).collect();
        f.write_str(&entries.join(","))
    }
}

/// Whether `name` may name a source: 1 to 64 letters, digits, '-', '_' or '.'.
pub fn is_source_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Which validation figure picks a fold's best epoch (its `best` checkpoint and the
/// out-of-fold predictions). Recorded in run.json.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CheckpointSelection {
    /// The AUC of every validation image pooled (as naevus always did).
    #[default]
    Pooled,
    /// The AUC on the primary cache's images (not those joined with `naevus combine --external`).
    Primary,
    /// The mean of the per-source AUCs: each source counts once, however many images it has.
    MeanOfSources,
    /// The lowest per-source AUC: a model is as good as its worst source.
    WorstSource,
    /// The AUC on one named source.
    Source(String),
}

/// The validation figures one epoch is judged by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationAucs {
    pub pooled: Option<f64>,
    pub primary: Option<f64>,
    /// Per source, of those whose validation images hold both classes.
    pub by_source: BTreeMap<String, f64>,
}

impl CheckpointSelection {
    /// The figure this rule reads from an epoch's validation (None: it cannot be computed,
    /// e.g. a source with one class only).
    pub fn score(&self, aucs: &ValidationAucs) -> Option<f64> {
        let values = || aucs.by_source.values().copied();
        match self {
            CheckpointSelection::Pooled => aucs.pooled,
            CheckpointSelection::Primary => aucs.primary.or(aucs.pooled),
            CheckpointSelection::MeanOfSources => (!aucs.by_source.is_empty()).then(|| values().sum::<f64>() / aucs.by_source.len() as f64),
            CheckpointSelection::WorstSource => values().reduce(f64::min),
            CheckpointSelection::Source(name) => aucs.by_source.get(name).copied(),
        }
    }

    /// The name a recipe gives it.
    pub fn name(&self) -> String {
        match self {
            CheckpointSelection::Pooled => "pooled".into(),
            CheckpointSelection::Primary => "primary".into(),
            CheckpointSelection::MeanOfSources => "mean-of-sources".into(),
            CheckpointSelection::WorstSource => "worst-source".into(),
            CheckpointSelection::Source(name) => format!("source:{name}"),
        }
    }
}

impl FromStr for CheckpointSelection {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text.trim() {
            "pooled" => CheckpointSelection::Pooled,
            "primary" => CheckpointSelection::Primary,
            "mean-of-sources" => CheckpointSelection::MeanOfSources,
            "worst-source" => CheckpointSelection::WorstSource,
            other => match other.strip_prefix("source:") {
                Some(name) if is_source_name(name) => CheckpointSelection::Source(name.to_string()),
                _ => {
                    return Err(format!(
                        "unknown checkpoint selection \"{}\"; expected pooled, primary, mean-of-sources, worst-source or source:NAME",
                        naevus_data::error::excerpt(other)
                    ));
                }
            },
        })
    }
}

impl fmt::Display for CheckpointSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for CheckpointSelection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for CheckpointSelection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One source of a run's cache, as run.json records it for the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSource {
    pub name: String,
    /// Labelled images of the source in the cache.
    pub images: usize,
    pub melanomas: usize,
    /// Its share of each training epoch under source-balanced sampling (None: as drawn by
    /// the other samplers, in proportion to its images); 0: validated on, never trained on.
    pub epoch_share: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_rules_read_the_documented_figure() {
        let aucs = ValidationAucs {
            pooled: Some(0.80),
            primary: Some(0.75),
            by_source: BTreeMap::from([("ham10000".to_string(), 0.85), ("isic2017".to_string(), 0.70)]),
        };
        let score = |rule: &str| rule.parse::<CheckpointSelection>().unwrap().score(&aucs);
        assert_eq!(score("pooled"), Some(0.80));
        assert_eq!(score("primary"), Some(0.75));
        assert!((score("mean-of-sources").unwrap() - 0.775).abs() < 1e-12);
        assert_eq!(score("worst-source"), Some(0.70));
        assert_eq!(score("source:ham10000"), Some(0.85));
        assert_eq!(score("source:isic2020"), None);
        assert!("best".parse::<CheckpointSelection>().unwrap_err().contains("worst-source"));
        assert!("source:../x".parse::<CheckpointSelection>().is_err());
        assert_eq!(serde_json::to_string(&CheckpointSelection::Source("isic2017".into())).unwrap(), "\"source:isic2017\"");
    }

    #[test]
    fn shares_parse_check_and_apply() {
        let shares: SourceShares = "isic2017=1, ham10000=0.5".parse().unwrap();
        assert_eq!(shares.to_string(), "ham10000=0.5,isic2017=1");
        assert_eq!(shares.of(&["isic2017".into(), "ham10000".into(), "isic2020".into()]), vec![1.0, 0.5, 0.0]);
        assert_eq!(SourceShares::default().of(&["a".into(), "b".into()]), vec![1.0, 1.0]);
        assert!("isic2017".parse::<SourceShares>().unwrap_err().contains("source=share"));
        assert!("isic2017=-1".parse::<SourceShares>().is_err());
        assert!("isic2017=NaN".parse::<SourceShares>().is_err());
        assert!("a=0,b=0".parse::<SourceShares>().unwrap_err().contains("nothing would train"));
        assert!("a=1,a=2".parse::<SourceShares>().unwrap_err().contains("twice"));
    }

    #[test]
    fn source_keys_round_trip_through_config_toml() {
        use crate::recipe::{SamplingKind, TrainConfig};
        let text = "sampling = \"source-balanced\"\nsource_shares = { isic2017 = 1, ham10000 = 0.5 }\ncheckpoint_selection = \"worst-source\"\ncolour_constancy = \"shades-of-gray\"\n";
        let recipe = TrainConfig::from_toml(text).unwrap();
        assert_eq!(recipe.sampling, SamplingKind::SourceBalanced);
        assert_eq!(recipe.checkpoint_selection, CheckpointSelection::WorstSource);
        assert!(recipe.validate().is_ok());
        assert_eq!(TrainConfig::from_toml(&recipe.to_toml().unwrap()).unwrap(), recipe);
        assert_eq!(TrainConfig::from_toml(&TrainConfig::default().to_toml().unwrap()).unwrap(), TrainConfig::default());
        let wrong = TrainConfig { sampling: SamplingKind::Undersample, ..recipe };
        assert!(wrong.validate().unwrap_err().to_string().contains("source-balanced"));
    }
}
