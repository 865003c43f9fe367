//! Limits of the token endpoint: failed client authentications counted per client id and
//! per source address (`too_many_failed_attempts`), and the JWT-bearer assertion ids already
//! used (`assertion_replayed`).

use super::rate::{KeyBy, Limiter, PolicyConfig, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts failed client authentications per client id and per source address, with the
/// rate limits' machinery: a GCRA bucket of `max` failures that refills one failure per
/// `window / max`, so that a blocked key gets one more try as soon as one is due.
#[derive(Debug)]
pub(crate) struct FailedAttempts {
    limiter: Arc<Limiter>,
}

/// The tag of failed-attempt keys.
const TAG: u8 = b'f';

impl FailedAttempts {
    /// At most `max` failures per `window` seconds; the limiter is filed in `registry`,
    /// which evicts idle keys.
    pub(crate) fn new(max: u32, window: i64, registry: &Registry) -> Self {
        let policy = PolicyConfig {
            name: "failed_attempts".into(),
            limit: max.max(1),
            window: Duration::from_secs(window.max(1) as u64),
            burst: max.max(1),
            key: KeyBy::Address,
        };
        FailedAttempts {
            limiter: registry.limiter("candor.token_endpoint", &policy, 100_000),
        }
    }

    /// Seconds until `key` may try again, if it is blocked.
    pub(crate) fn blocked(&self, key: &str) -> Option<i64> {
        let wait = self.limiter.blocked_own(TAG, key.as_bytes())?;
        Some(crate::time::ceil_secs(wait).max(1) as i64)
    }

    /// Counts a failure of `key`.
    pub(crate) fn fail(&self, key: String) {
        let _ = self.limiter.check(TAG, key.as_bytes());
    }

    /// Forgets `key`'s failures.
    pub(crate) fn succeed(&self, key: &str) {
        self.limiter.forget(TAG, key.as_bytes());
    }
}

/// JWT-bearer assertion ids already used, kept until the assertion would have expired.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    /// Records `key` until `exp`; false if it was already there.
    pub(crate) fn first_use(&self, key: String, exp: i64, now: i64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.len() > 100_000 {
            seen.retain(|_, e| *e > now);
        }
        match seen.get(&key) {
            Some(e) if *e > now => false,
            _ => {
                seen.insert(key, exp);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_per_window() {
        let f = FailedAttempts::new(2, 60, &Registry::default());
        f.fail("k".into());
        assert_eq!(f.blocked("k"), None);
        f.fail("k".into());
        // One failure comes back every 30 s.
        assert_eq!(f.blocked("k"), Some(30));
        assert_eq!(f.blocked("other"), None);
        f.succeed("k");
        assert_eq!(f.blocked("k"), None);
    }

    #[test]
    fn a_store_full_of_made_up_keys_blocks_no_one_else() {
        // The review's finding: past the key cap every new key was read from the shared
        // bucket the sprayed keys had used up, and locked out.
        let policy = PolicyConfig {
            name: "failed_attempts".into(),
            limit: 1,
            window: Duration::from_secs(60),
            burst: 1,
            key: KeyBy::Address,
        };
        let f = FailedAttempts {
            limiter: Arc::new(Limiter::new(policy, 2)),
        };
        for k in ["a", "b", "c", "d"] {
            f.fail(k.into());
        }
        assert!(f.blocked("a").is_some());
        assert_eq!(f.blocked("someone-else"), None);
    }
}
