//! Seeded random draws shared by the synthetic generators (traffic, quality and feedback).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A seeded stream of draws: the same seed and the same calls give the same values (for a
/// given `rand` version).
pub(crate) struct Dice {
    pub rng: SmallRng,
    /// Second value of the last pair of normal samples.
    spare_normal: Option<f64>,
}

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice {
            rng: SmallRng::seed_from_u64(seed),
            spare_normal: None,
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal: Marsaglia's polar method (Box-Muller without the trigonometry), both
    /// values of each pair used.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        loop {
            let x = 2.0 * self.unit() - 1.0;
            let y = 2.0 * self.unit() - 1.0;
            let s = x * x + y * y;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare_normal = Some(y * f);
                return x * f;
            }
        }
    }

    /// Log-normal with the given median and log standard deviation.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}
