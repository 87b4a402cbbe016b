//! A simulated node's clock: local time is `offset + t·(1 + drift)` of the
//! true time `t` the event queue runs on, and its inverse (when a node's
//! timer, set in local time, fires in true time).

use crate::plan::ClockSpec;

/// A node's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock(pub(super) ClockSpec);

impl Clock {
    /// Local microseconds at true time `t`.
    pub(super) fn local(self, t: u64) -> u64 {
        // The same arithmetic in 64 bits while nothing overflows (any run
        // shorter than ~100 days): 128-bit division is a library call.
        let fast = || {
            let t = i64::try_from(t).ok()?;
            let skew = t.checked_mul(i64::from(self.0.drift_ppm))? / 1_000_000;
            let local = i64::try_from(self.0.offset_us).ok()?.checked_add(t)?.checked_add(skew)?;
            Some(u64::try_from(local).unwrap_or(0))
        };
        if let Some(local) = fast() {
            return local;
        }
        let skew = i128::from(t) * i128::from(self.0.drift_ppm) / 1_000_000;
        u64::try_from((i128::from(self.0.offset_us) + i128::from(t) + skew).max(0)).unwrap_or(u64::MAX)
    }

    /// The earliest true time at which the local clock reads at least
    /// `local`.
    pub(super) fn true_time(self, local: u64) -> u64 {
        let since = i128::from(local) - i128::from(self.0.offset_us);
        if since <= 0 {
            return 0;
        }
        let rate = 1_000_000 + i128::from(self.0.drift_ppm);
        // As in `local`: 64 bits while nothing overflows.
        let fast = || {
            let (since, rate) = (i64::try_from(since).ok()?, i64::try_from(rate).ok().filter(|&r| r > 0)?);
            u64::try_from(since.checked_mul(1_000_000)?.checked_add(rate - 1)? / rate).ok()
        };
        let mut t = fast().unwrap_or_else(|| u64::try_from((since * 1_000_000 + rate - 1) / rate).unwrap_or(u64::MAX));
        while self.local(t) < local {
            t += 1;
        }
        while t > 0 && self.local(t - 1) >= local {
            t -= 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{RngExt, SeedableRng};

    use super::*;

    #[test]
    fn clock_inverse_is_the_earliest_true_time() {
        for drift_ppm in [-500_000, -1000, 0, 1, 999, 250_000] {
            let clock = Clock(ClockSpec { offset_us: 5_000, drift_ppm });
            for local in [0, 4_999, 5_000, 5_001, 1_000_000, 123_456_789] {
                let t = clock.true_time(local);
                assert!(clock.local(t) >= local || local < 5_000, "drift {drift_ppm} local {local}");
                assert!(t == 0 || clock.local(t - 1) < local, "drift {drift_ppm} local {local}: not the earliest");
            }
        }
    }

    #[test]
    fn the_64_bit_clock_arithmetic_agrees_with_128_bits() {
        // The arithmetic as it was, in 128 bits throughout.
        fn local_128(c: ClockSpec, t: u64) -> u64 {
            let skew = i128::from(t) * i128::from(c.drift_ppm) / 1_000_000;
            u64::try_from((i128::from(c.offset_us) + i128::from(t) + skew).max(0)).unwrap_or(u64::MAX)
        }
        fn true_time_128(c: ClockSpec, local: u64) -> u64 {
            let since = i128::from(local) - i128::from(c.offset_us);
            if since <= 0 {
                return 0;
            }
            let rate = 1_000_000 + i128::from(c.drift_ppm);
            let mut t = u64::try_from((since * 1_000_000 + rate - 1) / rate).unwrap_or(u64::MAX);
            while local_128(c, t) < local {
                t += 1;
            }
            while t > 0 && local_128(c, t - 1) >= local {
                t -= 1;
            }
            t
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let edges = [0, 1, 999_999, 1_000_000, 1 << 40, i64::MAX as u64 / 1_000_000, i64::MAX as u64 - 1, u64::MAX / 2];
        for round in 0..20_000 {
            let offset_us = if round % 4 == 0 { edges[round % edges.len()] } else { rng.random_range(0..1u64 << 44) };
            let drift_ppm = if round % 3 == 0 {
                [-999_999, -1, 0, 1, 999_999][round % 5]
            } else {
                rng.random_range(-500_000..500_000)
            };
            let c = ClockSpec { offset_us, drift_ppm };
            let t = if round % 5 == 0 { edges[(round / 5) % edges.len()] } else { rng.random_range(0..1u64 << 45) };
            assert_eq!(Clock(c).local(t), local_128(c, t), "{c:?} at {t}");
            let local = local_128(c, t).min(u64::MAX / 4);
            assert_eq!(Clock(c).true_time(local), true_time_128(c, local), "{c:?} local {local}");
        }
    }
}
