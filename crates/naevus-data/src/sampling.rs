//! Per-epoch sample orders: plain shuffle, class-balanced, or negative undersampling.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to draw the items of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Sampling {
    /// Every item once, in a fresh random order.
    Shuffle,
    /// Same epoch length, each class drawn equally often (items with replacement).
    Balanced,
    /// All positives (label 1) plus a fresh random subset of negatives each epoch.
    Undersample {
        /// Negatives kept per positive (e.g. 3.0 keeps three negatives per melanoma).
        negatives_per_positive: f32,
    },
}

/// The rng for one epoch: the seed picks the key, the epoch picks the ChaCha stream.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    rng
}

/// Indices into `labels` for one epoch; deterministic for (seed, epoch).
pub fn epoch_order(labels: &[usize], sampling: &Sampling, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = epoch_rng(seed, epoch);
    match sampling {
        Sampling::Shuffle => shuffled_all(labels.len(), &mut rng),
        Sampling::Balanced => balanced(labels, &mut rng),
        Sampling::Undersample { negatives_per_positive } => {
            let positives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1).collect();
            let mut negatives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != 1).collect();
            // Without positives there is nothing to balance against: fall back to a shuffle.
            if positives.is_empty() {
                return shuffled_all(labels.len(), &mut rng);
            }
            let ratio = if negatives_per_positive.is_finite() { negatives_per_positive.max(0.0) } else { 0.0 };
            let want = ((positives.len() as f64) * f64::from(ratio)).round() as usize;
            let keep = want.min(negatives.len());
            negatives.shuffle(&mut rng);
            let mut order = positives;
            order.extend_from_slice(&negatives[..keep]);
            order.shuffle(&mut rng);
            order
        }
    }
}

fn shuffled_all(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// Classes take turns (so each appears len/n_classes times, +-1), items drawn with replacement.
fn balanced(labels: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n_classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let by_class: Vec<Vec<usize>> = (0..n_classes)
        .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect::<Vec<_>>())
        .filter(|items| !items.is_empty())
        .collect();
    if by_class.is_empty() {
        return Vec::new();
    }
    let mut class_slots: Vec<usize> = (0..labels.len()).map(|i| i % by_class.len()).collect();
    class_slots.shuffle(rng);
    class_slots
        .into_iter()
        .map(|c| by_class[c][rng.random_range(0..by_class[c].len())])
        .collect()
}
