//! `limit.exceeded` and `quota.exceeded` in a flood: a limit that refuses thousands of
//! requests a second is told once a second per route, policy and subject, with the number
//! of refusals the event stands for. Each refused request keeps its own
//! `request.rejected` (its id, code and trail), so `candor explain` still finds every one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a limit refusing one subject is told.
pub(crate) const TELL_EVERY: Duration = Duration::from_secs(1);

/// The most limits and subjects remembered; past it (a flood from as many addresses), those
/// not told within [`TELL_EVERY`] are forgotten, and if none is, each refusal is told.
const MAX_REMEMBERED: usize = 4096;

/// When each limit and subject was last told, and the refusals not told since.
#[derive(Debug, Default)]
pub(crate) struct Told {
    by: Mutex<HashMap<u64, (Instant, u64)>>,
}

impl Told {
    /// Whether a refusal by the limit `policy` of `route` for `subject` is told now, and if
    /// so how many refusals the event stands for (this one and those not told since the
    /// last).
    pub(crate) fn tell(
        &self,
        route: &str,
        policy: &str,
        subject: &str,
        now: Instant,
    ) -> Option<u64> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (route, policy, subject).hash(&mut h);
        let what = h.finish();
        let mut by = self.by.lock().unwrap_or_else(PoisonError::into_inner);
        if by.len() >= MAX_REMEMBERED && !by.contains_key(&what) {
            by.retain(|_, (at, _)| now.duration_since(*at) < TELL_EVERY);
            if by.len() >= MAX_REMEMBERED {
                return Some(1);
            }
        }
        match by.entry(what) {
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

    #[test]
    fn a_flood_is_told_once_a_second_per_limit_and_subject_with_its_count() {
        let told = Told::default();
        let t0 = Instant::now();
        assert_eq!(told.tell("r", "burst", "a", t0), Some(1));
        for i in 1..=99 {
            assert_eq!(
                told.tell("r", "burst", "a", t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another subject, policy or route is told at once.
        assert_eq!(told.tell("r", "burst", "b", t0), Some(1));
        assert_eq!(told.tell("r", "daily", "a", t0), Some(1));
        assert_eq!(told.tell("s", "burst", "a", t0), Some(1));
        // A second on: the 99 untold and this one.
        assert_eq!(told.tell("r", "burst", "a", t0 + TELL_EVERY), Some(100));
        assert_eq!(told.tell("r", "burst", "a", t0 + TELL_EVERY), None);
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let told = Told::default();
        let t0 = Instant::now();
        for i in 0..MAX_REMEMBERED {
            assert_eq!(told.tell("r", "p", &i.to_string(), t0), Some(1));
        }
        // Full of subjects told just now: each new one is told, nothing more is kept.
        assert_eq!(told.tell("r", "p", "new", t0), Some(1));
        assert_eq!(told.tell("r", "p", "new", t0), Some(1));
        assert_eq!(told.by.lock().unwrap().len(), MAX_REMEMBERED);
        // A second later the old ones are forgotten to make room.
        assert_eq!(told.tell("r", "p", "new", t0 + TELL_EVERY), Some(1));
        assert_eq!(told.by.lock().unwrap().len(), 1);
        assert_eq!(told.tell("r", "p", "new", t0 + TELL_EVERY), None);
    }
}
