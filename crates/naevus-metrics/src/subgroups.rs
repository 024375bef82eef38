//! Per-subgroup AUC (e.g. by sex, anatomical site, age band).

use crate::{MetricsError, roc_auc, validate};
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
    validate(scores, labels)?;
    if keys.len() != scores.len() {
        return Err(MetricsError::GroupLengthMismatch {
            scores: scores.len(),
            groups: keys.len(),
        });
    }
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        groups.entry(k.as_deref()).or_default().push(i);
    }
    groups
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
            Ok(SubgroupMetrics {
                key: key.map(str::to_owned),
                n: idx.len(),
                positives,
                auc,
            })
        })
        .collect()
}
