//! The learning-rate schedule of the paper and the seed: constant, then linear decay
//! towards 0. The seed's `LambdaLR` counts epochs; runs given in iterations count
//! iterations with the same formula, so one implementation serves both.

/// `lr(i) = base * (1 - max(0, u - decay_from) / (total - decay_from))` with
/// `u = i / unit` the number of whole units (epochs, or iterations when `unit` is 1)
/// completed before iteration `i`: the seed's `LambdaLR(n_epochs, 0, decay_epoch)`, whose
/// factor is applied through epoch `u` and updated after it. The last unit therefore
/// still trains at `base / (total - decay_from)`, as in the seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    /// Iterations per unit (iterations per epoch, or 1).
    pub unit: u64,
    /// Length of the run in units.
    pub total: u64,
    /// The unit where decay starts.
    pub decay_from: u64,
}

impl LrSchedule {
    /// The rate for the (zero-based) iteration `i`; never negative, also past the end.
    pub fn lr(&self, i: u64) -> f64 {
        let u = i / self.unit.max(1);
        let span = self.total.saturating_sub(self.decay_from).max(1) as f64;
        let done = u.saturating_sub(self.decay_from) as f64;
        self.base * (1.0 - done / span).max(0.0)
    }

    /// Iterations in the whole run.
    pub fn total_iterations(&self) -> u64 {
        self.total.saturating_mul(self.unit.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lambda_lr_per_epoch() {
        // n_epochs 4, decay_epoch 2, 3 iterations per epoch: factors 1, 1, 1, 0.5.
        let s = LrSchedule {
            base: 2e-4,
            unit: 3,
            total: 4,
            decay_from: 2,
        };
        let got: Vec<f64> = (0..12).map(|i| s.lr(i) / 2e-4).collect();
        assert_eq!(got, [1., 1., 1., 1., 1., 1., 1., 1., 1., 0.5, 0.5, 0.5]);
        assert_eq!(s.total_iterations(), 12);
        assert_eq!(s.lr(100), 0.0);
    }

    #[test]
    fn per_iteration_decays_linearly_over_the_second_half() {
        let s = LrSchedule {
            base: 1.0,
            unit: 1,
            total: 10,
            decay_from: 5,
        };
        let got: Vec<f64> = (0..10).map(|i| s.lr(i)).collect();
        let want = [1., 1., 1., 1., 1., 1., 0.8, 0.6, 0.4, 0.2];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }
}
