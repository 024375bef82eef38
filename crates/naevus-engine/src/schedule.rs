//! Learning-rate schedule: linear warm-up, then cosine decay, optionally restarting at the
//! peak every few epochs (SGDR, as seed 004's CosineAnnealingWarmRestarts).

use crate::config::TrainConfig;

/// The cosine ends at this share of the peak learning rate.
const FLOOR: f64 = 0.01;

/// The learning-rate factor (share of the peak) at every optimiser step of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    total: usize,
    warmup: usize,
    /// Steps per cosine cycle; 0: one cycle over everything after the warm-up.
    cycle: usize,
    /// Factor at the first warm-up step's start.
    warmup_start: f64,
}

impl Schedule {
    pub fn new(config: &TrainConfig, steps_per_epoch: usize) -> Self {
        let steps = |epochs: f64| (epochs * steps_per_epoch as f64).round() as usize;
        Self {
            total: steps_per_epoch * config.epochs,
            warmup: steps(config.warmup_epochs),
            cycle: steps(config.restart_epochs),
            warmup_start: config.warmup_start,
        }
    }

    /// Factor at optimiser step `step`: the warm-up climbs linearly from `warmup_start` to 1;
    /// each cosine cycle then decays from 1 to 1% of the peak.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.warmup_start + (1.0 - self.warmup_start) * (step as f64 + 1.0) / self.warmup as f64;
        }
        let since = (step - self.warmup) as f64;
        let progress = if self.cycle > 0 {
            (since % self.cycle as f64) / self.cycle as f64
        } else {
            (since / self.total.saturating_sub(self.warmup).max(1) as f64).min(1.0)
        };
        FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(epochs: usize, warmup_epochs: f64, restart_epochs: f64, warmup_start: f64) -> Schedule {
        let config = TrainConfig { epochs, warmup_epochs, restart_epochs, warmup_start, ..TrainConfig::default() };
        Schedule::new(&config, 10)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warms_up_then_decays() {
        let s = schedule(10, 1.0, 0.0, 0.01);
        assert!(close(s.factor(0), 0.01 + 0.99 / 10.0));
        assert!(close(s.factor(9), 1.0));
        assert!(close(s.factor(10), 1.0));
        // Half way through the cosine: the midpoint between peak and floor.
        assert!(close(s.factor(55), 0.01 + 0.99 * 0.5));
        assert!(close(s.factor(100), 0.01));
        // No warm-up at all starts at the peak.
        assert!(close(schedule(10, 0.0, 0.0, 0.01).factor(0), 1.0));
    }

    #[test]
    fn seed_004_warm_up_is_a_tenfold_ramp_and_cycles_restart() {
        // One warm-up epoch from a tenth of the peak, then 2-epoch cosine cycles.
        let s = schedule(5, 1.0, 2.0, 0.1);
        assert!(close(s.factor(0), 0.1 + 0.9 / 10.0));
        assert!(close(s.factor(9), 1.0));
        assert!(close(s.factor(10), 1.0), "first cycle starts at the peak");
        assert!(close(s.factor(20), 0.01 + 0.99 * 0.5), "half a 20-step cycle");
        assert!(s.factor(29) < 0.02, "the cycle ends near the floor");
        assert!(close(s.factor(30), 1.0), "and restarts at the peak");
    }
}
