//! The random draws every augmentation operation takes its parameters from.

use rand::Rng;

/// Whether an operation of chance `p` happens; certain and impossible ones draw nothing, so
/// that switching an operation off or on for good changes no other operation's draws.
pub(super) fn happens(rng: &mut impl Rng, p: f32) -> bool {
    if p >= 1.0 {
        true
    } else if p > 0.0 {
        rng.random_bool(f64::from(p))
    } else {
        false
    }
}

/// A uniform draw in [-m, m]; 0 (and no draw) when m is zero, negative or not finite.
pub(super) fn symmetric(rng: &mut impl Rng, m: f32) -> f32 {
    if m.is_finite() && m > 0.0 { rng.random_range(-m..=m) } else { 0.0 }
}

/// A uniform draw in [low, high); `low` (and no draw) when the range is empty.
pub(super) fn uniform(rng: &mut impl Rng, low: f32, high: f32) -> f32 {
    if low.is_finite() && high.is_finite() && high > low { rng.random_range(low..high) } else { low }
}

/// Index of the entry chosen in proportion to `weights`; None when no weight is positive.
pub(super) fn choose(rng: &mut impl Rng, weights: &[f32]) -> Option<usize> {
    let positive = |w: f32| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total: f32 = weights.iter().map(|&w| positive(w)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut draw = rng.random_range(0.0..total);
    for (i, &w) in weights.iter().enumerate() {
        if positive(w) > 0.0 && draw < positive(w) {
            return Some(i);
        }
        draw -= positive(w);
    }
    weights.iter().rposition(|&w| positive(w) > 0.0)
}
