//! Limits of the token endpoint: failed client authentications counted per client id and
//! per source address (`too_many_failed_attempts`), and the JWT-bearer assertion ids already
//! used (`assertion_replayed`).

use std::collections::HashMap;
use std::sync::Mutex;

/// Counts failed client authentications per client id and per source address.
#[derive(Debug)]
pub(crate) struct FailedAttempts {
    max: u32,
    window: i64,
    counts: Mutex<HashMap<String, (u32, i64)>>,
}

impl FailedAttempts {
    /// At most `max` failures per `window` seconds.
    pub(crate) fn new(max: u32, window: i64) -> Self {
        FailedAttempts {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again, if it is blocked.
    pub(crate) fn blocked(&self, key: &str, now: i64) -> Option<i64> {
        let counts = self.counts.lock().ok()?;
        let (n, start) = counts.get(key)?;
        (*n >= self.max && now < start + self.window).then(|| start + self.window - now)
    }

    pub(crate) fn fail(&self, key: String, now: i64) {
        if let Ok(mut counts) = self.counts.lock() {
            if counts.len() > 100_000 {
                counts.retain(|_, (_, start)| now < *start + self.window);
            }
            let e = counts.entry(key).or_insert((0, now));
            if now >= e.1 + self.window {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    pub(crate) fn succeed(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.remove(key);
        }
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
        let f = FailedAttempts::new(2, 60);
        f.fail("k".into(), 100);
        assert_eq!(f.blocked("k", 101), None);
        f.fail("k".into(), 101);
        assert_eq!(f.blocked("k", 110), Some(50));
        assert_eq!(f.blocked("k", 161), None);
        f.succeed("k");
        assert_eq!(f.blocked("k", 110), None);
    }
}
