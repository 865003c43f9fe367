//! `limit.exceeded` and `quota.exceeded` in a flood: a limit that refuses thousands of
//! requests a second is told once a second per route, policy and subject, with the number
//! of refusals the event stands for. Each refused request keeps its own
//! `request.rejected` (its id, code and trail), so `candor explain` still finds every one.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hasher};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a limit refusing one subject is told.
pub(crate) const TELL_EVERY: Duration = Duration::from_secs(1);

/// The most limits and subjects remembered. Past it (a flood from as many sources within a
/// second), those not told within [`TELL_EVERY`] are forgotten, at most once a second; while
/// it is still full, a refusal of a subject not remembered is told on its own, as every
/// refusal was before.
const MAX_REMEMBERED: usize = 4096;

/// The seed of [`identity`]: this process's own, so that no client can choose values that
/// stand for another's.
static SEED: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// What a refusal is told as: the limit and the count it was refused by (for a rate limit,
/// the route, the policy and the limiter's own key, so that what the limiter counts
/// together is told together).
pub(crate) fn identity(parts: &[&[u8]]) -> u64 {
    let mut h = SEED.build_hasher();
    for part in parts {
        h.write_usize(part.len());
        h.write(part);
    }
    h.finish()
}

/// When each limit and subject was last told, and the refusals not told since.
#[derive(Debug, Default)]
pub(crate) struct Told {
    by: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    told: HashMap<u64, (Instant, u64)>,
    swept: Option<Instant>,
}

impl Told {
    /// Whether a refusal of [`identity`] `what` is told now, and if so how many refusals the
    /// event stands for: this one and those of the same identity since the last event. (The
    /// refusals of a flood's last second are told with the next refusal of the same
    /// identity; each has its own `request.rejected` meanwhile.)
    pub(crate) fn tell(&self, what: u64, now: Instant) -> Option<u64> {
        let mut r = self.by.lock().unwrap_or_else(PoisonError::into_inner);
        let r = &mut *r;
        if r.told.len() >= MAX_REMEMBERED && !r.told.contains_key(&what) {
            if r.swept
                .is_none_or(|at| now.duration_since(at) >= TELL_EVERY)
            {
                r.told
                    .retain(|_, (at, _)| now.duration_since(*at) < TELL_EVERY);
                r.swept = Some(now);
            }
            if r.told.len() >= MAX_REMEMBERED {
                return Some(1);
            }
        }
        match r.told.entry(what) {
            Entry::Vacant(v) => {
                v.insert((now, 0));
                Some(1)
            }
            Entry::Occupied(mut o) => {
                let (at, untold) = o.get_mut();
                if now.duration_since(*at) >= TELL_EVERY {
                    let n = *untold + 1;
                    *at = now;
                    *untold = 0;
                    Some(n)
                } else {
                    *untold += 1;
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(route: &str, policy: &str, subject: &str) -> u64 {
        identity(&[route.as_bytes(), policy.as_bytes(), subject.as_bytes()])
    }

    #[test]
    fn a_flood_is_told_once_a_second_per_limit_and_subject_with_its_count() {
        let told = Told::default();
        let t0 = Instant::now();
        assert_eq!(told.tell(id("r", "burst", "a"), t0), Some(1));
        for i in 1..=99 {
            assert_eq!(
                told.tell(id("r", "burst", "a"), t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another subject, policy or route is told at once.
        assert_eq!(told.tell(id("r", "burst", "b"), t0), Some(1));
        assert_eq!(told.tell(id("r", "daily", "a"), t0), Some(1));
        assert_eq!(told.tell(id("s", "burst", "a"), t0), Some(1));
        // A second on: the 99 untold and this one.
        assert_eq!(told.tell(id("r", "burst", "a"), t0 + TELL_EVERY), Some(100));
        assert_eq!(told.tell(id("r", "burst", "a"), t0 + TELL_EVERY), None);
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let told = Told::default();
        let t0 = Instant::now();
        for i in 0..MAX_REMEMBERED {
            assert_eq!(told.tell(id("r", "p", &i.to_string()), t0), Some(1));
        }
        // Full of subjects told just now: each new one is told, nothing more is kept.
        assert_eq!(told.tell(id("r", "p", "new"), t0), Some(1));
        assert_eq!(told.tell(id("r", "p", "new"), t0), Some(1));
        assert_eq!(told.by.lock().unwrap().told.len(), MAX_REMEMBERED);
        // A second later the old ones are forgotten to make room.
        assert_eq!(told.tell(id("r", "p", "new"), t0 + TELL_EVERY), Some(1));
        assert_eq!(told.by.lock().unwrap().told.len(), 1);
        assert_eq!(told.tell(id("r", "p", "new"), t0 + TELL_EVERY), None);
    }
}
