//! Test and benchmark knobs: a global token-bucket rate limit and chaos injection
//! (fixed added latency and a seeded random error rate).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token bucket refilled at `rps` per second, holding at most one second's worth.
pub struct RateLimiter {
    rps: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter admitting `rps` requests per second on average.
    pub fn new(rps: f64) -> RateLimiter {
        RateLimiter { rps, state: Mutex::new((rps.max(1.0), Instant::now())) }
    }

    /// Takes a token, or says in how many whole seconds (at least 1) one will be there.
    pub fn try_acquire(&self) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let capacity = self.rps.max(1.0);
        state.0 = (state.0 + now.duration_since(state.1).as_secs_f64() * self.rps).min(capacity);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - state.0) / self.rps;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// Chaos injection for `/v1` requests. Failures are injected before a request is handled,
/// so an injected 503 never leaves a write half done.
pub struct Chaos {
    error_rate: f64,
    /// Added to every `/v1` request.
    pub latency: Duration,
    rng: Mutex<fastrand::Rng>,
}

impl Chaos {
    /// `error_rate` in 0..=1; the same seed gives the same sequence of failures.
    pub fn new(error_rate: f64, latency: Duration, seed: u64) -> Chaos {
        Chaos { error_rate, latency, rng: Mutex::new(fastrand::Rng::with_seed(seed)) }
    }

    /// Whether this request should fail.
    pub fn should_fail(&self) -> bool {
        self.error_rate > 0.0 && self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64() < self.error_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_burst_then_refuses() {
        let limiter = RateLimiter::new(5.0);
        for _ in 0..5 {
            assert!(limiter.try_acquire().is_ok());
        }
        assert_eq!(limiter.try_acquire(), Err(1));
    }

    #[test]
    fn chaos_is_reproducible() {
        let a = Chaos::new(0.5, Duration::ZERO, 7);
        let b = Chaos::new(0.5, Duration::ZERO, 7);
        let sa: Vec<bool> = (0..64).map(|_| a.should_fail()).collect();
        let sb: Vec<bool> = (0..64).map(|_| b.should_fail()).collect();
        assert_eq!(sa, sb);
        assert!(sa.iter().any(|x| *x) && sa.iter().any(|x| !*x));
        assert!(!Chaos::new(0.0, Duration::ZERO, 1).should_fail());
    }
}
