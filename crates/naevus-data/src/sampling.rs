//! Per-epoch sample orders: plain shuffle, class-balanced, negative undersampling, or
//! source-balanced (each source its stated share, melanoma and benign undersampled within).

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
    /// Each source its share of the epoch, and within a source one melanoma (label 1) to
    /// `negatives_per_positive` benign images. The epoch is as long as undersampling would
    /// make it over the sources that train (all their melanomas, and that many benign images
    /// per melanoma). A source whose pool is smaller than its quota is drawn through more
    /// than once (each pass in a fresh order); a share of 0 leaves a source out.
    SourceBalanced {
        /// The source of each item, an index into `shares`.
        sources: Vec<usize>,
        /// Each source's share of the epoch (any non-negative numbers; they are normalised).
        shares: Vec<f64>,
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
            let want = ((positives.len() as f64) * ratio(*negatives_per_positive)).round() as usize;
            let keep = want.min(negatives.len());
            negatives.shuffle(&mut rng);
            let mut order = positives;
            order.extend_from_slice(&negatives[..keep]);
            order.shuffle(&mut rng);
            order
        }
        Sampling::SourceBalanced { sources, shares, negatives_per_positive } => source_balanced(labels, sources, shares, ratio(*negatives_per_positive), &mut rng),
    }
}

/// Benign images per melanoma; a value that is not a finite non-negative number counts as 0.
fn ratio(negatives_per_positive: f32) -> f64 {
    if negatives_per_positive.is_finite() { f64::from(negatives_per_positive.max(0.0)) } else { 0.0 }
}

/// See [`Sampling::SourceBalanced`]. Items whose source has no share (an index past
/// `shares`) never train.
fn source_balanced(labels: &[usize], sources: &[usize], shares: &[f64], ratio: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let share = |k: usize| shares.get(k).copied().filter(|s| s.is_finite() && *s > 0.0).unwrap_or(0.0);
    // (melanomas, benign images) of each source that trains.
    let mut pools: Vec<(Vec<usize>, Vec<usize>)> = vec![(Vec::new(), Vec::new()); shares.len()];
    for (i, &label) in labels.iter().enumerate() {
        if let Some(&k) = sources.get(i).filter(|&&k| share(k) > 0.0) {
            if label == 1 { pools[k].0.push(i) } else { pools[k].1.push(i) }
        }
    }
    let training: Vec<usize> = (0..pools.len()).filter(|&k| !pools[k].0.is_empty() || !pools[k].1.is_empty()).collect();
    let total_share: f64 = training.iter().map(|&k| share(k)).sum();
    let positives: usize = training.iter().map(|&k| pools[k].0.len()).sum();
    let length = if positives > 0 {
        (positives as f64 * (1.0 + ratio)).round()
    } else {
        training.iter().map(|&k| pools[k].1.len()).sum::<usize>() as f64
    };
    let mut order = Vec::with_capacity(length as usize);
    for &k in &training {
        let quota = (length * share(k) / total_share).round() as usize;
        let (melanomas, benign) = &pools[k];
        let wanted_melanomas = match (melanomas.is_empty(), benign.is_empty()) {
            (true, _) => 0,
            (false, true) => quota,
            (false, false) => (quota as f64 / (1.0 + ratio)).round() as usize,
        };
        order.extend(draw(melanomas, wanted_melanomas, rng));
        order.extend(draw(benign, quota - wanted_melanomas, rng));
    }
    order.shuffle(rng);
    order
}

/// `n` items of `pool`: whole passes through it, each in a fresh order, as many as needed.
fn draw(pool: &[usize], n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n && !pool.is_empty() {
        let mut pass = pool.to_vec();
        pass.shuffle(rng);
        pass.truncate(n - out.len());
        out.extend(pass);
    }
    out
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
