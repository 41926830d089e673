//! The wall clock, passed in wherever a result carries a time (report timestamps, approvals, the audit log), so tests can fix it.

use std::fmt;
use std::sync::Arc;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_secs(&self) -> u64;

    /// The current time as RFC 3339 UTC with seconds, e.g. `2026-11-22T04:09:44Z`.
    fn rfc3339(&self) -> String {
        crate::report::rfc3339_from_unix(self.unix_secs())
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock stopped at one instant (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn unix_secs(&self) -> u64 {
        self.0
    }
}

/// A shared clock, cheap to clone into options and handles; the system clock by default.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Shares `clock`.
    pub fn new(clock: impl Clock + 'static) -> SharedClock {
        SharedClock(Arc::new(clock))
    }
}

impl Default for SharedClock {
    fn default() -> SharedClock {
        SharedClock::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedClock({})", self.rfc3339())
    }
}

impl Clock for SharedClock {
    fn unix_secs(&self) -> u64 {
        self.0.unix_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_reads_its_instant() {
        let clock = SharedClock::new(FixedClock(1_795_320_584));
        assert_eq!(clock.rfc3339(), "2026-11-22T04:09:44Z");
        assert_eq!(clock.clone().unix_secs(), 1_795_320_584);
    }
}
