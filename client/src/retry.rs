//! When to retry a failed attempt and how long to wait: backoff with full jitter, Retry-After,
//! and a retry budget shared by all clones of a client. Pure: no I/O, no clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Whether repeating a request is safe when its first attempt may have been processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// GET, DELETE, PATCH with `If-Match`, POST with `Idempotency-Key`, dry runs: repeat on any transient failure.
    Safe,
    /// PATCH without `If-Match`: repeat only when the server cannot have processed it.
    Unsafe,
}

/// What one attempt ended with, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The server answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// No connection was made, so the request was not sent.
    ConnectFailed,
    /// The request may have been sent but no complete answer came (timeout, broken connection).
    Interrupted,
    /// A failure that repeating cannot fix (e.g. a request that cannot be built).
    Fatal,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Try again after this delay.
    After(Duration),
    /// Do not retry: the failure is not transient, or repeating is unsafe.
    No,
    /// The failure is transient but the allowed retries are used up.
    Exhausted,
}

/// Backoff parameters for one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Retries allowed after the first attempt.
    pub(crate) max_retries: u32,
    /// The ceiling of the first retry's delay; doubles per retry.
    pub(crate) base: Duration,
    /// The largest ceiling the doubling reaches.
    pub(crate) cap: Duration,
    /// The longest `Retry-After` honoured; longer ones are shortened to this.
    pub(crate) retry_after_cap: Duration,
}

impl RetryPolicy {
    /// 100 ms doubling to 5 s, Retry-After up to 60 s.
    pub(crate) fn new(max_retries: u32) -> Self {
        RetryPolicy { max_retries, base: Duration::from_millis(100), cap: Duration::from_secs(5), retry_after_cap: Duration::from_secs(60) }
    }

    /// Decides what to do after a failed attempt, given how many retries were already made.
    pub(crate) fn decide(&self, retries_done: u32, idempotency: Idempotency, outcome: &Outcome, rng: &mut fastrand::Rng) -> Retry {
        let retry_after = match *outcome {
            Outcome::Status { status: 429, retry_after } => retry_after,
            // 5xx and interrupted requests may have been applied: only safe requests repeat.
            Outcome::Status { status: 500 | 502 | 503 | 504, .. } | Outcome::Interrupted if idempotency == Idempotency::Safe => None,
            Outcome::ConnectFailed => None,
            _ => return Retry::No,
        };
        if retries_done >= self.max_retries {
            return Retry::Exhausted;
        }
        match retry_after {
            Some(wait) => Retry::After(wait.min(self.retry_after_cap)),
            None => Retry::After(self.jittered(retries_done, rng)),
        }
    }

    /// The ceiling of the delay before retry number `retries_done + 1`: base * 2^n, capped.
    pub(crate) fn ceiling(&self, retries_done: u32) -> Duration {
        let factor = 1u32.checked_shl(retries_done.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: a uniform delay between zero and the ceiling.
    fn jittered(&self, retries_done: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retries_done).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.u64(0..=ceiling))
    }
}

/// A token bucket limiting retries across all clones of one client, so that an outage turns
/// into a bounded amount of extra load instead of `max_retries` times the normal load.
/// Counted in thousandths of a token to stay in integers.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    millitokens: AtomicU32,
}

impl RetryBudget {
    /// The most tokens the bucket holds.
    pub(crate) const CAPACITY: u32 = 20_000;
    /// What each first attempt deposits (0.2 tokens).
    pub(crate) const DEPOSIT: u32 = 200;
    /// What each retry withdraws (1 token).
    pub(crate) const WITHDRAWAL: u32 = 1_000;

    /// A full bucket.
    pub(crate) fn new() -> Self {
        RetryBudget { millitokens: AtomicU32::new(Self::CAPACITY) }
    }

    /// Credits the bucket for a first attempt.
    pub(crate) fn deposit(&self) {
        // fetch_update only fails when the closure returns None, which it never does.
        let _ = self.millitokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some((t + Self::DEPOSIT).min(Self::CAPACITY)));
    }

    /// Takes one token for a retry; false (and nothing taken) when the bucket is short.
    pub(crate) fn try_withdraw(&self) -> bool {
        self.millitokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(Self::WITHDRAWAL)).is_ok()
    }

    /// The tokens left, in thousandths.
    #[cfg(test)]
    pub(crate) fn millitokens(&self) -> u32 {
        self.millitokens.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAFE: Idempotency = Idempotency::Safe;
    const UNSAFE: Idempotency = Idempotency::Unsafe;

    fn status(status: u16) -> Outcome {
        Outcome::Status { status, retry_after: None }
    }

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(7)
    }

    #[test]
    fn retry_after_is_honoured_instead_of_backoff() {
        let p = RetryPolicy::new(4);
        let limited = Outcome::Status { status: 429, retry_after: Some(Duration::from_secs(3)) };
        assert_eq!(p.decide(0, SAFE, &limited, &mut rng()), Retry::After(Duration::from_secs(3)));
        // 429 means "not processed", so even unsafe requests wait and repeat.
        assert_eq!(p.decide(2, UNSAFE, &limited, &mut rng()), Retry::After(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_is_capped_at_sixty_seconds() {
        let p = RetryPolicy::new(4);
        let limited = Outcome::Status { status: 429, retry_after: Some(Duration::from_secs(3600)) };
        assert_eq!(p.decide(0, SAFE, &limited, &mut rng()), Retry::After(Duration::from_secs(60)));
    }

    #[test]
    fn backoff_ceiling_doubles_from_100ms_and_caps_at_5s() {
        let p = RetryPolicy::new(10);
        let ceilings: Vec<u128> = (0..9).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_zero_and_the_ceiling_and_varies() {
        let p = RetryPolicy::new(100);
        let mut rng = rng();
        for n in 0..8 {
            let delays: Vec<Duration> = (0..200)
                .map(|_| match p.decide(n, SAFE, &status(503), &mut rng) {
                    Retry::After(d) => d,
                    other => panic!("expected a retry, got {other:?}"),
                })
                .collect();
            assert!(delays.iter().all(|d| *d <= p.ceiling(n)), "retry {n}: {delays:?}");
            let (lo, hi) = (delays.iter().min(), delays.iter().max());
            assert!(lo < hi, "full jitter should spread delays, got {lo:?}..{hi:?}");
            assert!(hi > Some(&(p.ceiling(n) / 2)), "delays should reach the upper half of the range");
        }
    }

    #[test]
    fn transient_failures_of_safe_requests_are_retried() {
        let p = RetryPolicy::new(4);
        for outcome in [status(500), status(502), status(503), status(504), Outcome::ConnectFailed, Outcome::Interrupted] {
            assert!(matches!(p.decide(0, SAFE, &outcome, &mut rng()), Retry::After(_)), "{outcome:?}");
        }
    }

    #[test]
    fn non_idempotent_patch_is_not_retried_on_503_or_timeouts() {
        let p = RetryPolicy::new(4);
        assert_eq!(p.decide(0, UNSAFE, &status(503), &mut rng()), Retry::No);
        assert_eq!(p.decide(0, UNSAFE, &status(500), &mut rng()), Retry::No);
        assert_eq!(p.decide(0, UNSAFE, &Outcome::Interrupted, &mut rng()), Retry::No);
        assert!(matches!(p.decide(0, UNSAFE, &Outcome::ConnectFailed, &mut rng()), Retry::After(_)));
        assert!(matches!(p.decide(0, UNSAFE, &status(429), &mut rng()), Retry::After(_)));
    }

    #[test]
    fn client_errors_and_fatal_failures_are_never_retried() {
        let p = RetryPolicy::new(4);
        for outcome in [status(400), status(401), status(404), status(409), status(412), status(422), status(501), Outcome::Fatal] {
            assert_eq!(p.decide(0, SAFE, &outcome, &mut rng()), Retry::No, "{outcome:?}");
        }
    }

    #[test]
    fn retries_stop_at_max_retries() {
        let p = RetryPolicy::new(2);
        assert!(matches!(p.decide(1, SAFE, &status(503), &mut rng()), Retry::After(_)));
        assert_eq!(p.decide(2, SAFE, &status(503), &mut rng()), Retry::Exhausted);
        assert_eq!(RetryPolicy::new(0).decide(0, SAFE, &Outcome::ConnectFailed, &mut rng()), Retry::Exhausted);
        // A non-retryable answer stays "No" even when retries are used up.
        assert_eq!(p.decide(2, SAFE, &status(404), &mut rng()), Retry::No);
    }

    #[test]
    fn budget_starts_full_and_runs_dry_after_twenty_retries() {
        let budget = RetryBudget::new();
        for i in 0..20 {
            assert!(budget.try_withdraw(), "withdrawal {i} should succeed");
        }
        assert!(!budget.try_withdraw());
        assert_eq!(budget.millitokens(), 0);
    }

    #[test]
    fn budget_refills_by_a_fifth_per_first_attempt_up_to_capacity() {
        let budget = RetryBudget::new();
        while budget.try_withdraw() {}
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.try_withdraw(), "0.8 tokens are not enough for a retry");
        budget.deposit();
        assert!(budget.try_withdraw(), "five first attempts pay for one retry");
        for _ in 0..1000 {
            budget.deposit();
        }
        assert_eq!(budget.millitokens(), RetryBudget::CAPACITY);
    }
}
