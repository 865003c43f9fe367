//! Waits between attempts: exponential back-off with full jitter, `Retry-After`, and the
//! retry budget shared by every request of a client.
//!
//! The back-off is these few lines rather than `backon`: backon's jitter adds a random part
//! on top of the delay (`d + rand(0, d)`), not the full jitter the rules ask for
//! (`rand(0, d)`), and its iterator cannot take a server's `Retry-After` in place of the
//! next delay.

use candor_catalog::{Backoff, Jitter};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), from `now`. A date in
/// the past is a wait of zero.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The upper bound of the wait before retry number `retry` (1 for the first retry).
pub(crate) fn bound(b: &Backoff, retry: u32) -> Duration {
    let factor = u64::from(b.multiplier.max(1)).saturating_pow(retry.saturating_sub(1));
    Duration::from_millis(
        b.initial_delay_ms
            .saturating_mul(factor)
            .min(b.max_delay_ms),
    )
}

/// The wait before retry number `retry`: full jitter draws uniformly in `[0, bound]`.
pub(crate) fn delay(b: &Backoff, retry: u32, rng: &mut fastrand::Rng) -> Duration {
    let max = bound(b, retry);
    match b.jitter {
        Jitter::None => max,
        Jitter::Full => Duration::from_millis(rng.u64(0..=max.as_millis() as u64)),
    }
}

/// A token bucket of retries shared by a client's requests: each retry takes one token,
/// each first attempt that succeeds gives back `refill` of one. When many requests fail at
/// once the bucket empties and errors come back at once instead of multiplying the load
/// (gRPC's retry throttling works the same way).
#[derive(Debug)]
pub(crate) struct Budget {
    tokens: Mutex<f64>,
    max: f64,
    refill: f64,
}

impl Budget {
    pub(crate) fn new(max: u32, refill: f64) -> Budget {
        Budget {
            tokens: Mutex::new(f64::from(max)),
            max: f64::from(max),
            refill,
        }
    }

    /// Takes one retry; false when the budget is spent.
    pub(crate) fn take(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }

    /// A success puts part of a token back.
    pub(crate) fn succeeded(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        *t = (*t + self.refill).min(self.max);
    }

    /// Retries left now (whole tokens).
    pub(crate) fn left(&self) -> u32 {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_catalog::Retry;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:28:00 GMT is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn the_bound_doubles_up_to_the_cap_and_full_jitter_stays_under_it() {
        let b = Backoff::for_class(Retry::WithBackoff);
        assert_eq!(bound(&b, 1), Duration::from_millis(200));
        assert_eq!(bound(&b, 2), Duration::from_millis(400));
        assert_eq!(bound(&b, 3), Duration::from_millis(800));
        assert_eq!(bound(&b, 40), Duration::from_millis(b.max_delay_ms));
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<Duration> = (0..200).map(|_| delay(&b, 3, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
        // Full jitter spreads over the whole range, not only above the base.
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(600)));
        let fixed = Backoff::for_class(Retry::AfterDelay);
        assert_eq!(delay(&fixed, 1, &mut rng), Duration::from_millis(1000));
    }

    #[test]
    fn the_budget_empties_and_refills_with_successes() {
        let b = Budget::new(2, 0.5);
        assert!(b.take());
        assert!(b.take());
        assert!(!b.take());
        b.succeeded();
        assert!(!b.take());
        b.succeeded();
        assert!(b.take());
        for _ in 0..10 {
            b.succeeded();
        }
        assert_eq!(b.left(), 2);
    }
}
