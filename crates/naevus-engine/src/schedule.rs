//! Learning-rate schedule: linear warm-up, then cosine decay.

/// Learning rate at optimiser step `step` of `total` steps, after `warmup` warm-up steps.
/// Warm-up climbs linearly from 1% of `base`; the cosine then decays to 1% of `base`.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, base: f64) -> f64 {
    let floor = base * 0.01;
    if step < warmup {
        return floor + (base - floor) * (step as f64 + 1.0) / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::warmup_cosine;

    #[test]
    fn warms_up_then_decays() {
        let base = 1e-3;
        assert!((warmup_cosine(0, 100, 10, base) - (1e-5 + (1e-3 - 1e-5) / 10.0)).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, base) - base).abs() < 1e-12);
        assert!((warmup_cosine(10, 100, 10, base) - base).abs() < 1e-12);
        // Half way through the cosine: the midpoint between base and floor.
        assert!((warmup_cosine(55, 100, 10, base) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-12);
        assert!((warmup_cosine(100, 100, 10, base) - 1e-5).abs() < 1e-12);
        // No warm-up at all starts at the base rate.
        assert!((warmup_cosine(0, 100, 0, base) - base).abs() < 1e-12);
    }
}
