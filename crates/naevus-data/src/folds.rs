//! Patient-grouped, class-stratified k-fold assignment.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::DataError;

/// Assigns each item a fold in 0..k so that no group spans two folds and each fold's
/// per-class counts stay close to 1/k of the totals. Deterministic for a given seed.
///
/// Greedy, in the spirit of scikit-learn's StratifiedGroupKFold: groups are shuffled by
/// the seed, then taken largest first, each into the fold where it least increases the
/// squared deviation of per-class counts from their targets (ties: smaller fold, then
/// lower fold index). With singleton groups every fold ends within 1 of ideal per class.
pub fn stratified_group_kfold(labels: &[usize], groups: &[&str], k: usize, seed: u64) -> Result<Vec<usize>, DataError> {
    if labels.len() != groups.len() {
        return Err(DataError::InvalidArgument(format!(
            "stratified_group_kfold: {} labels but {} groups; expected one group per item",
            labels.len(),
            groups.len()
        )));
    }
    // Group ids in first-seen order, so results do not depend on hash order.
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut item_group = Vec::with_capacity(groups.len());
    for g in groups {
        let next = group_of.len();
        item_group.push(*group_of.entry(g).or_insert(next));
    }
    let n_groups = group_of.len();
    if k < 2 || k > n_groups {
        return Err(DataError::InvalidArgument(format!(
            "stratified_group_kfold: k must be between 2 and the number of groups ({n_groups}), got {k}"
        )));
    }

    let n_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut group_counts = vec![vec![0usize; n_classes]; n_groups];
    let mut class_totals = vec![0usize; n_classes];
    for (item, &label) in labels.iter().enumerate() {
        group_counts[item_group[item]][label] += 1;
        class_totals[label] += 1;
    }
    let targets: Vec<f64> = class_totals.iter().map(|&t| t as f64 / k as f64).collect();

    let mut order: Vec<usize> = (0..n_groups).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    // Stable sort keeps the seeded order among equal-size groups.
    order.sort_by_key(|&g| std::cmp::Reverse(group_counts[g].iter().sum::<usize>()));

    let mut fold_counts = vec![vec![0usize; n_classes]; k];
    let mut fold_sizes = vec![0usize; k];
    let mut group_fold = vec![0usize; n_groups];
    for g in order {
        let counts = &group_counts[g];
        let mut best = 0;
        let mut best_key = (f64::INFINITY, usize::MAX);
        for f in 0..k {
            // Change in squared deviation if group g joins fold f.
            let delta: f64 = (0..n_classes)
                .filter(|&c| counts[c] > 0)
                .map(|c| {
                    let before = fold_counts[f][c] as f64 - targets[c];
                    let after = before + counts[c] as f64;
                    after * after - before * before
                })
                .sum();
            let key = (delta, fold_sizes[f]);
            if key.0 < best_key.0 - 1e-9 || ((key.0 - best_key.0).abs() <= 1e-9 && key.1 < best_key.1) {
                best = f;
                best_key = key;
            }
        }
        for c in 0..n_classes {
            fold_counts[best][c] += counts[c];
        }
        fold_sizes[best] += counts.iter().sum::<usize>();
        group_fold[g] = best;
    }
    Ok(item_group.iter().map(|&g| group_fold[g]).collect())
}
