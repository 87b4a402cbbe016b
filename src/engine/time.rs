//! The engine's own clock type.
//!
//! The engine never reads a clock: every input comes with `now`, an
//! [`Instant`] the driver chose. The runtime counts microseconds since the
//! node started; netsim counts virtual microseconds with per-node offset and
//! drift. Durations are [`std::time::Duration`], which is plain data.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point on a node's local clock, in microseconds since an origin the
/// driver picked. Only differences between two `Instant`s of the same node
/// mean anything.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// The instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant(micros)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// Adding saturates at the end of time instead of overflowing: a timer that
/// far away never fires, which is what a caller asking for it meant.
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_micros(1_500_000);
        assert_eq!(t + Duration::from_millis(500), Instant::from_micros(2_000_000));
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_micros(1_500_000));
        assert_eq!(t + Duration::MAX, Instant::from_micros(u64::MAX));
        assert_eq!(format!("{t:?}"), "1.500000s");
    }
}
