//! Combining several prediction files into one: mean, weighted mean, or (weighted) mean
//! of normalised ranks. (An ensemble used as one model, whose answers must stay probabilities,
//! combines by mean probability or mean logit instead: [`naevus_run::Combination`].)

use std::collections::{HashMap, HashSet};

use crate::ReportError;
use naevus_data::error::excerpt;
use naevus_run::Predictions;

/// How the scores of the files are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain mean of the scores.
    Mean,
    /// Mean of each file's normalised ranks (weighted when weights are given).
    Rank,
    /// Weighted mean of the scores (weights required).
    Weighted,
}

impl std::str::FromStr for Mode {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Mode, ReportError> {
        match s {
            "mean" => Ok(Mode::Mean),
            "rank" => Ok(Mode::Rank),
            "weighted" => Ok(Mode::Weighted),
            _ => Err(ReportError::Invalid(format!("unknown ensemble mode \"{s}\": expected mean, rank or weighted"))),
        }
    }
}

/// Normalised ranks in `[0, 1]`: the smallest score gets 0, the largest 1, tied scores share
/// their average rank; `(rank - 1) / (n - 1)` with 1-based ranks. A single score gets 0.5.
pub fn normalized_ranks(scores: &[f64]) -> Vec<f64> {
    let n = scores.len();
    if n == 1 {
        return vec![0.5];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; n];
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // 0-based positions start..end share the average position (start + end - 1) / 2.
        let average = (start + end - 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = average / (n - 1) as f64;
        }
        start = end;
    }
    ranks
}

/// Checks the weights against the mode and the number of files and returns them normalised
/// to sum 1 (equal weights when none are given and the mode allows it). Each weight must be
/// finite and above 0; they are divided by the largest before summing, so that weights near
/// f64::MAX do not overflow the sum.
fn resolve_weights(mode: Mode, weights: Option<&[f64]>, files: usize) -> Result<Vec<f64>, ReportError> {
    let weights = match (mode, weights) {
        (Mode::Mean, Some(_)) => {
            return Err(ReportError::Invalid("--weights was given with --mode mean: use --mode weighted (or rank)".into()));
        }
        (Mode::Weighted, None) => return Err(ReportError::Invalid("--mode weighted needs --weights, one per file".into())),
        (_, None) => vec![1.0; files],
        (_, Some(w)) => w.to_vec(),
    };
    if weights.len() != files {
        return Err(ReportError::Invalid(format!("{} weights for {files} prediction files: give one weight per file", weights.len())));
    }
    if let Some((i, w)) = weights.iter().enumerate().find(|(_, w)| !(w.is_finite() && **w > 0.0)) {
        return Err(ReportError::Invalid(format!(
            "--weights: weight {} ({w}) is not a finite number above 0 and at most {:e}",
            i + 1,
            f64::MAX
        )));
    }
    let largest = weights.iter().copied().fold(0.0, f64::max);
    // Each scaled weight is in (0, 1], so the sum is at most the number of files.
    let scaled: Vec<f64> = weights.iter().map(|w| w / largest).collect();
    let sum: f64 = scaled.iter().sum();
    Ok(scaled.iter().map(|w| w / sum).collect())
}

/// Up to five examples, as `: "a", "b", ...`; empty when there are none.
fn examples(ids: &[&str]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = ids.iter().take(5).map(|id| format!("\"{}\"", excerpt(id))).collect();
    let more = if ids.len() > 5 { ", ..." } else { "" };
    format!(" ({}{more})", shown.join(", "))
}

/// Combines prediction files joined on image id. Every file must hold exactly the ids of the
/// first (duplicates are refused when reading). The result follows the first file's order.
pub fn combine(files: &[Predictions], mode: Mode, weights: Option<&[f64]>) -> Result<(Vec<String>, Vec<f64>), ReportError> {
    let Some(reference) = files.first() else {
        return Err(ReportError::Invalid("no prediction files to combine".into()));
    };
    let weights = resolve_weights(mode, weights, files.len())?;
    let position: HashMap<&str, usize> = reference.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();

    let mut combined = vec![0.0; reference.len()];
    for (file, weight) in files.iter().zip(&weights) {
        let ids: HashSet<&str> = file.ids.iter().map(String::as_str).collect();
        let missing: Vec<&str> = reference.ids.iter().map(String::as_str).filter(|id| !ids.contains(id)).collect();
        let extra: Vec<&str> = file.ids.iter().map(String::as_str).filter(|id| !position.contains_key(id)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(ReportError::IdSetMismatch {
                path: file.path.clone(),
                reference: reference.path.clone(),
                n_missing: missing.len(),
                missing_list: examples(&missing),
                n_extra: extra.len(),
                extra_list: examples(&extra),
            });
        }
        let values = match mode {
            Mode::Rank => normalized_ranks(&file.scores),
            Mode::Mean | Mode::Weighted => file.scores.clone(),
        };
        for (id, v) in file.ids.iter().zip(values) {
            combined[position[id.as_str()]] += weight * v;
        }
    }
    Ok((reference.ids.clone(), combined))
}
