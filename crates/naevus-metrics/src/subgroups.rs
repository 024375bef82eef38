//! Per-subgroup AUC (e.g. by source, sex, anatomical site, age band), with bootstrap
//! intervals when asked.

use crate::{MetricsError, bootstrap_auc_ci, roc_auc, validate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Size, positives and ROC AUC of one subgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupMetrics {
    /// The subgroup key; `None` collects the samples with a missing key.
    pub key: Option<String>,
    pub n: usize,
    pub positives: usize,
    /// [`roc_auc`] within the subgroup; `None` when it holds one class only.
    pub auc: Option<f64>,
    /// Bootstrap percentile 95% interval of `auc` within the subgroup (resampling its
    /// patients when groups are given); `None` without an AUC or when not asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_ci95: Option<(f64, f64)>,
}

impl SubgroupMetrics {
    /// One line for a table: "isic2017: AUC 0.812 (0.785-0.840), 430 images, 80 positive".
    pub fn describe(&self) -> String {
        let auc = match (self.auc, self.auc_ci95) {
            (Some(auc), Some((low, high))) if low.is_finite() && high.is_finite() => format!("AUC {auc:.3} ({low:.3}-{high:.3})"),
            (Some(auc), _) => format!("AUC {auc:.3}"),
            (None, _) => "AUC n/a (one class)".into(),
        };
        format!("{}: {auc}, {} images, {} positive", self.key.as_deref().unwrap_or("unknown"), self.n, self.positives)
    }
}

/// Splits samples by `keys` (one per sample; `None` = missing, kept as its own
/// subgroup) and returns each subgroup's [`SubgroupMetrics`], sorted by key
/// (the missing-key group first). The whole input is validated first; a
/// subgroup with a single class gets `auc: None` rather than an error.
///
/// Errors: [`MetricsError::LengthMismatch`], [`MetricsError::Empty`],
/// [`MetricsError::NonFinite`], [`MetricsError::InvalidLabel`],
/// [`MetricsError::GroupLengthMismatch`].
pub fn subgroup_aucs(
    scores: &[f64],
    labels: &[u8],
    keys: &[Option<String>],
) -> Result<Vec<SubgroupMetrics>, MetricsError> {
    subgroup_aucs_with_intervals(scores, labels, keys, None, 0, 0)
}

/// [`subgroup_aucs`] with each subgroup's AUC interval from `rounds` bootstrap resamples
/// within it ([`bootstrap_auc_ci`], whole `groups` resampled when given; seeded by `seed`).
/// `rounds` = 0 gives no intervals.
///
/// Errors: as [`subgroup_aucs`], and [`MetricsError::GroupLengthMismatch`] for `groups`.
pub fn subgroup_aucs_with_intervals(
    scores: &[f64],
    labels: &[u8],
    keys: &[Option<String>],
    groups: Option<&[&str]>,
    rounds: usize,
    seed: u64,
) -> Result<Vec<SubgroupMetrics>, MetricsError> {
    validate(scores, labels)?;
    if let Some(groups) = groups
        && groups.len() != scores.len()
    {
        return Err(MetricsError::GroupLengthMismatch { scores: scores.len(), groups: groups.len() });
    }
    if keys.len() != scores.len() {
        return Err(MetricsError::GroupLengthMismatch {
            scores: scores.len(),
            groups: keys.len(),
        });
    }
    let mut subgroups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        subgroups.entry(k.as_deref()).or_default().push(i);
    }
    subgroups
        .into_iter()
        .map(|(key, idx)| {
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
            let positives = l.iter().filter(|&&y| y == 1).count();
            let auc = match roc_auc(&s, &l) {
                Ok(a) => Some(a),
                Err(MetricsError::OneClass { .. }) => None,
                Err(e) => return Err(e),
            };
            let auc_ci95 = match (auc, rounds) {
                (Some(_), 1..) => {
                    let g: Option<Vec<&str>> = groups.map(|groups| idx.iter().map(|&i| groups[i]).collect());
                    Some(bootstrap_auc_ci(&s, &l, g.as_deref(), rounds, seed)?)
                }
                _ => None,
            };
            Ok(SubgroupMetrics {
                key: key.map(str::to_owned),
                n: idx.len(),
                positives,
                auc,
                auc_ci95,
            })
        })
        .collect()
}

/// Each source's AUC with its interval ([`subgroup_aucs_with_intervals`] keyed by
/// `sources`), or nothing when every sample comes from one source: a multi-source figure is
/// only ever shown beside the pooled one.
pub fn per_source_aucs(
    scores: &[f64],
    labels: &[u8],
    sources: &[Option<String>],
    groups: Option<&[&str]>,
    rounds: usize,
    seed: u64,
) -> Result<Vec<SubgroupMetrics>, MetricsError> {
    if sources.iter().all(|s| s == &sources[0]) {
        return Ok(Vec::new());
    }
    subgroup_aucs_with_intervals(scores, labels, sources, groups, rounds, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subgroup_gets_its_own_interval() {
        // Source "a" is ranked perfectly, source "b" inversely; pooled they would blur.
        let scores = [0.9, 0.8, 0.2, 0.1, 0.1, 0.2, 0.8, 0.9];
        let labels = [1, 1, 0, 0, 1, 1, 0, 0];
        let keys: Vec<Option<String>> = ["a", "a", "a", "a", "b", "b", "b", "b"].iter().map(|k| Some(k.to_string())).collect();
        let rows = subgroup_aucs_with_intervals(&scores, &labels, &keys, None, 200, 1).unwrap();
        assert_eq!((rows[0].auc, rows[0].auc_ci95), (Some(1.0), Some((1.0, 1.0))));
        assert_eq!((rows[1].auc, rows[1].auc_ci95), (Some(0.0), Some((0.0, 0.0))));
        assert!(subgroup_aucs(&scores, &labels, &keys).unwrap().iter().all(|row| row.auc_ci95.is_none()));
        assert!(subgroup_aucs_with_intervals(&scores, &labels, &keys, Some(&["p"; 3]), 10, 1).is_err());
        assert_eq!(per_source_aucs(&scores, &labels, &keys, None, 0, 1).unwrap().len(), 2);
        assert!(per_source_aucs(&scores, &labels, &vec![Some("a".to_string()); 8], None, 0, 1).unwrap().is_empty());
    }
}
