//! An upstream's targets: which one a request goes to (round-robin or the fewest
//! outstanding requests), passive health (a target failing `eject_after` times in a row is
//! ejected for a growing interval, at most `max_ejected_percent` of an upstream's targets at
//! once), the retry budget, and what `GET /upstreams` shows.
//!
//! A target's state is kept per route, address and TLS settings for the whole process,
//! across configuration reloads (not across a route's renaming): one route's failures, CA
//! file or retry rules never take a target from another route. Choosing a target takes no
//! lock and allocates nothing; a failure takes the target's lock.

use super::{Target, Upstream};
use http::uri::Authority;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How many recent failures a target keeps for `GET /upstreams`.
const RECENT: usize = 10;
/// The longest a target is ejected, however often it failed.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The instant ejection deadlines count from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since [`EPOCH`] (at least 1: 0 means "not ejected").
fn nanos(t: Instant) -> u64 {
    (t.saturating_duration_since(*EPOCH).as_nanos() as u64).max(1)
}

/// One failure of a target.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    /// When (wall clock, for reports).
    pub(crate) at: SystemTime,
    /// What happened, in words.
    pub(crate) cause: String,
}

#[derive(Debug, Default)]
struct Health {
    /// Times ejected since it last succeeded: each ejection lasts twice the one before.
    ejections: u32,
    recent: VecDeque<Failure>,
    failures: u64,
}

/// One target address's state.
#[derive(Debug, Default)]
pub(crate) struct TargetState {
    /// Requests sent to it and not yet answered.
    outstanding: AtomicUsize,
    /// Failures in a row.
    consecutive: AtomicU32,
    /// Until when it is ejected (nanoseconds since [`EPOCH`]; 0: it is not).
    ejected_until: AtomicU64,
    /// Whether it was ejected since it last succeeded.
    ejected_since_success: AtomicU32,
    answered: AtomicU64,
    /// Out of rotation by its health checks, until enough pass.
    check_down: std::sync::atomic::AtomicBool,
    /// Health checks passed (or failed) in a row.
    check_passes: AtomicU32,
    check_fails: AtomicU32,
    health: Mutex<Health>,
}

impl TargetState {
    /// How long it stays ejected, if it is (`now` is read only when it may be).
    fn ejected_for(&self, now: &mut Option<Instant>) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let now = *now.get_or_insert_with(Instant::now);
        let left = until.saturating_sub(nanos(now));
        if self.check_down.load(Ordering::Acquire) {
            // Out until a check passes: the next one is due within `left`.
            return Some(Duration::from_nanos(left.max(1_000_000)));
        }
        (left > 0).then(|| Duration::from_nanos(left))
    }
}

/// Counts a request outstanding on a target until dropped.
pub(crate) struct Outstanding<'u>(&'u TargetState);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The chosen target of one try.
pub(crate) struct Pick<'u> {
    /// Its index in the upstream's targets.
    pub(crate) index: usize,
    /// The target.
    pub(crate) target: &'u Target,
    /// Its state.
    pub(crate) state: &'u TargetState,
}

/// A target's state's key: route, address, TLS settings (0: plain).
type StateKey = (Arc<str>, Authority, u64);

/// Every target's state, by route and address: the process's, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    states: Mutex<HashMap<StateKey, Arc<TargetState>>>,
    /// Where `upstream.down` / `upstream.up` go, once the server has its event log.
    events: std::sync::OnceLock<Arc<crate::events::EventLog>>,
    /// Held while deciding an ejection, so that targets failing at once cannot together
    /// exceed `max_ejected_percent`.
    ejecting: Mutex<()>,
}

/// Why no target can be tried: each target's last failure and when it is tried again.
#[derive(Debug)]
pub(crate) struct NoneHealthy {
    /// Per target: the target, its last failure, until when it is ejected.
    pub(crate) targets: Vec<(Target, Option<Failure>, Duration)>,
}

impl NoneHealthy {
    /// The soonest a target is tried again.
    pub(crate) fn soonest(&self) -> Duration {
        self.targets
            .iter()
            .map(|t| t.2)
            .min()
            .unwrap_or(Duration::ZERO)
    }
}

impl Targets {
    /// Sends this upstream's health changes to `events`.
    pub(crate) fn set_events(&self, events: Arc<crate::events::EventLog>) {
        let _ = self.events.set(events);
    }

    /// `upstream.down` (warning; critical when no target is left) or `upstream.up`.
    fn health_event(&self, up: &Upstream, index: usize, down: bool, cause: Option<&str>) {
        use crate::events::{Event, Severity, kinds};
        let Some(events) = self.events.get() else {
            return;
        };
        let mut now = Some(Instant::now());
        let healthy = self
            .states_of(up)
            .iter()
            .filter(|s| s.ejected_for(&mut now).is_none() && !s.check_down.load(Ordering::Acquire))
            .count();
        let (kind, severity) = match (down, healthy) {
            (true, 0) => (kinds::UPSTREAM_DOWN, Severity::Critical),
            (true, _) => (kinds::UPSTREAM_DOWN, Severity::Warning),
            (false, _) => (kinds::UPSTREAM_UP, Severity::Info),
        };
        let mut ev = Event::new(kind, severity)
            .fact("route", &*up.route)
            .fact("target", up.targets[index].display.as_str())
            .fact("healthy_targets", healthy)
            .fact("targets", up.targets.len())
            .route(&up.route);
        if let Some(c) = cause {
            ev = ev.fact("cause", c);
        }
        events.emit(ev);
    }

    fn state(&self, up: &Upstream, authority: &Authority) -> Arc<TargetState> {
        let Ok(mut states) = self.states.lock() else {
            return Arc::default();
        };
        let key = (
            up.route.clone(),
            authority.clone(),
            up.tls.as_ref().map_or(0, |t| t.id),
        );
        states.entry(key).or_default().clone()
    }

    /// `up`'s targets' states, looked up once per configuration generation.
    fn states_of<'u>(&self, up: &'u Upstream) -> &'u [Arc<TargetState>] {
        up.states.get_or_init(|| {
            let states: Vec<Arc<TargetState>> = up
                .targets
                .iter()
                .map(|t| self.state(up, &t.authority))
                .collect();
            // A route whose health checks were removed: what they decided no longer holds.
            if up.health_check.is_none() {
                for s in &states {
                    if s.check_down.swap(false, Ordering::AcqRel) {
                        s.ejected_until.store(0, Ordering::Release);
                    }
                }
            }
            states
        })
    }

    /// The target of the next try on `up`: not ejected and not among `tried` (a bit per
    /// target index; unless every healthy one was), by the upstream's balance.
    pub(crate) fn pick<'u>(&self, up: &'u Upstream, tried: u64) -> Result<Pick<'u>, NoneHealthy> {
        let states = self.states_of(up);
        let mut now = None;
        let n = states.len();
        let pick = |index: usize| Pick {
            index,
            target: &up.targets[index],
            state: &states[index],
        };
        if n == 1 {
            return match states[0].ejected_for(&mut now) {
                None => Ok(pick(0)),
                Some(_) => Err(self.none_healthy(up, states, &mut now)),
            };
        }
        // A request's first try takes the next turn; its retries do not (else with a dead
        // target every request's first try would land on it).
        let turn = if tried == 0 {
            up.turn.fetch_add(1, Ordering::Relaxed)
        } else {
            up.turn.load(Ordering::Relaxed)
        };
        let healthy = |i: usize, now: &mut Option<Instant>| states[i].ejected_for(now).is_none();
        let mut best: Option<usize> = None;
        // Those not tried yet first; then any healthy one.
        for fresh_only in [true, false] {
            for k in 0..n {
                let i = (turn + k) % n;
                if (fresh_only && tried & (1 << i) != 0) || !healthy(i, &mut now) {
                    continue;
                }
                match up.balance {
                    Balance::RoundRobin => return Ok(pick(i)),
                    Balance::LeastRequests => {
                        let load = |j: usize| states[j].outstanding.load(Ordering::Acquire);
                        if best.is_none_or(|b| load(i) < load(b)) {
                            best = Some(i);
                        }
                    }
                }
            }
            if let Some(b) = best {
                return Ok(pick(b));
            }
        }
        Err(self.none_healthy(up, states, &mut now))
    }

    fn none_healthy(
        &self,
        up: &Upstream,
        states: &[Arc<TargetState>],
        now: &mut Option<Instant>,
    ) -> NoneHealthy {
        NoneHealthy {
            targets: up
                .targets
                .iter()
                .zip(states)
                .map(|(t, s)| {
                    let last = s.health.lock().ok().and_then(|h| h.recent.back().cloned());
                    let until = s.ejected_for(now).unwrap_or(Duration::ZERO);
                    (t.clone(), last, until)
                })
                .collect(),
        }
    }

    /// Counts a request outstanding on `pick` until the guard is dropped.
    pub(crate) fn start<'u>(pick: &Pick<'u>) -> Outstanding<'u> {
        pick.state.outstanding.fetch_add(1, Ordering::AcqRel);
        Outstanding(pick.state)
    }

    /// A try on `pick` got an answer.
    pub(crate) fn succeeded(pick: &Pick<'_>) {
        let s = pick.state;
        s.answered.fetch_add(1, Ordering::Relaxed);
        if s.consecutive.load(Ordering::Relaxed) != 0 {
            s.consecutive.store(0, Ordering::Relaxed);
        }
        if s.ejected_since_success.load(Ordering::Relaxed) != 0 {
            s.ejected_since_success.store(0, Ordering::Relaxed);
            if let Ok(mut h) = s.health.lock() {
                h.ejections = 0;
            }
        }
    }

    /// A try on `pick` failed with `cause`; ejects the target when it failed `eject_after`
    /// times in a row and the upstream may have one more ejected. Returns for how long it
    /// was ejected, if it was.
    pub(crate) fn failed(&self, up: &Upstream, pick: &Pick<'_>, cause: &str) -> Option<Duration> {
        let states = self.states_of(up);
        let now = Instant::now();
        let allowed = up.targets.len() * usize::from(up.health.max_ejected_percent) / 100;
        let s = pick.state;
        let mut h = s.health.lock().ok()?;
        h.failures += 1;
        if h.recent.len() == RECENT {
            h.recent.pop_front();
        }
        h.recent.push_back(Failure {
            at: SystemTime::now(),
            cause: cause.to_owned(),
        });
        let consecutive = s.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if up.health.eject_after == 0
            || consecutive < up.health.eject_after
            || s.ejected_for(&mut Some(now)).is_some()
        {
            return None;
        }
        // Counted and decided under one lock: two targets failing at once see each other.
        let _deciding = self.ejecting.lock().ok()?;
        let ejected_now = states
            .iter()
            .filter(|t| t.ejected_for(&mut Some(now)).is_some())
            .count();
        if ejected_now >= allowed {
            return None;
        }
        let factor = 1u32 << h.ejections.min(16);
        let time = up
            .health
            .ejection_time
            .saturating_mul(factor)
            .min(MAX_EJECTION);
        s.ejected_until.store(nanos(now + time), Ordering::Release);
        s.ejected_since_success.store(1, Ordering::Relaxed);
        h.ejections += 1;
        s.consecutive.store(0, Ordering::Release);
        tracing::warn!(
            target: "candor::upstream",
            route = %up.route,
            target = %pick.target.display,
            cause = %cause,
            failures_in_a_row = consecutive,
            ejected_for_ms = time.as_millis() as u64,
            "target ejected"
        );
        drop(h);
        if let Some(index) = states.iter().position(|t| std::ptr::eq(&**t, s)) {
            self.health_event(
                up,
                index,
                true,
                Some(&format!(
                    "{cause} ({consecutive} failures in a row; ejected for {})",
                    crate::time::human_duration(time)
                )),
            );
        }
        Some(time)
    }

    /// A health check of `up`'s target `index` passed (`Ok`) or failed with a cause.
    pub(crate) fn checked(
        &self,
        up: &Upstream,
        index: usize,
        check: &super::health::HealthCheck,
        result: Result<(), String>,
    ) {
        let s = &self.states_of(up)[index];
        match result {
            Ok(()) => {
                s.check_fails.store(0, Ordering::Release);
                let passes = s.check_passes.fetch_add(1, Ordering::AcqRel) + 1;
                if s.check_down.load(Ordering::Acquire) && passes >= check.healthy_after {
                    s.check_down.store(false, Ordering::Release);
                    s.ejected_until.store(0, Ordering::Release);
                    s.consecutive.store(0, Ordering::Release);
                    tracing::info!(target: "candor::upstream", target = %up.targets[index].display, "health checks pass again: back in rotation");
                    self.health_event(up, index, false, None);
                }
            }
            Err(cause) => {
                s.check_passes.store(0, Ordering::Release);
                let fails = s.check_fails.fetch_add(1, Ordering::AcqRel) + 1;
                if let Ok(mut h) = s.health.lock() {
                    h.failures += 1;
                    if h.recent.len() == RECENT {
                        h.recent.pop_front();
                    }
                    h.recent.push_back(Failure {
                        at: SystemTime::now(),
                        cause: cause.clone(),
                    });
                }
                if fails >= check.unhealthy_after {
                    // Out of rotation; the deadline is the next check.
                    s.ejected_until
                        .store(nanos(Instant::now() + check.interval), Ordering::Release);
                    if !s.check_down.swap(true, Ordering::AcqRel) {
                        tracing::warn!(target: "candor::upstream", target = %up.targets[index].display, cause = %cause, "health checks fail: out of rotation");
                        self.health_event(up, index, true, Some(&cause));
                    }
                }
            }
        }
    }

    /// Whether each target of `upstreams` (route name, upstream) is in rotation now: route,
    /// target as configured, healthy (for `/metrics`).
    pub(crate) fn health<'u>(
        &self,
        upstreams: impl Iterator<Item = (&'u str, &'u Upstream)>,
    ) -> Vec<(String, String, bool)> {
        let mut now = None;
        let mut out = Vec::new();
        for (route, up) in upstreams {
            for (t, s) in up.targets.iter().zip(self.states_of(up)) {
                let healthy = s.ejected_for(&mut now).is_none();
                out.push((route.to_owned(), t.display.clone(), healthy));
            }
        }
        out
    }

    /// Every known target's state, for `GET /upstreams`.
    pub(crate) fn report(&self) -> serde_json::Value {
        let now = Instant::now();
        let wall = SystemTime::now();
        let Ok(states) = self.states.lock() else {
            return serde_json::json!([]);
        };
        let mut rows: Vec<(String, serde_json::Value)> = states
            .iter()
            .map(|((route, a, tls), s)| {
                let h = s.health.lock();
                let left = s.ejected_for(&mut Some(now));
                let consecutive = s.consecutive.load(Ordering::Acquire);
                let ok = s.answered.load(Ordering::Acquire);
                let (state, until, ejections, recent, failed) = match &h {
                    Ok(h) => (
                        if left.is_some() { "ejected" } else { "healthy" },
                        left.map(|l| rfc3339_of(wall + l)),
                        h.ejections,
                        h.recent
                            .iter()
                            .rev()
                            .map(|f| serde_json::json!({"at": rfc3339_of(f.at), "cause": f.cause}))
                            .collect::<Vec<_>>(),
                        h.failures,
                    ),
                    Err(_) => ("unknown", None, 0, Vec::new(), 0),
                };
                (
                    format!("{route} {a} {tls}"),
                    serde_json::json!({
                        "route": route.as_ref(),
                        "target": a.to_string(),
                        "tls": *tls != 0,
                        "state": state,
                        "ejected_until": until,
                        "health_checks": if s.check_down.load(Ordering::Acquire) { "failing" } else { "passing or none" },
                        "outstanding": s.outstanding.load(Ordering::Acquire),
                        "consecutive_failures": consecutive,
                        "ejections": ejections,
                        "answered": ok,
                        "failed": failed,
                        "recent_failures": recent,
                    }),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        serde_json::Value::Array(rows.into_iter().map(|r| r.1).collect())
    }
}

fn rfc3339_of(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::time::rfc3339(secs)
}

/// How a request picks among an upstream's targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests outstanding.
    LeastRequests,
}

/// Passive health: when a target is ejected.
#[derive(Clone, Copy, Debug)]
pub struct PassiveHealth {
    /// Failures in a row that eject a target (0: never).
    pub eject_after: u32,
    /// The first ejection's length; each next one doubles, up to 5 minutes.
    pub ejection_time: Duration,
    /// The most of an upstream's targets ejected at once, as a share (50: one of two, none
    /// of one).
    pub max_ejected_percent: u8,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        PassiveHealth {
            eject_after: 5,
            ejection_time: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

/// When a failed try is tried again.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries after the first (0: none).
    pub retries: u32,
    /// Retry when no connection could be made (the request never left).
    pub on_connect: bool,
    /// Retry when the connection failed after the request was sent (idempotent requests
    /// and those with an Idempotency-Key only).
    pub on_reset: bool,
    /// Retry on these upstream statuses (idempotent requests and those with an
    /// Idempotency-Key only).
    pub on_status: Vec<u16>,
    /// The back-off's base: try n waits a random time up to base × 2^n (full jitter).
    pub backoff: Duration,
    /// Retries in flight at most this share of the requests in flight to the upstream
    /// (at least 3).
    pub budget: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 1,
            on_connect: true,
            // Opt-in: a request that went out is copied before each try to be sent again.
            on_reset: false,
            on_status: Vec::new(),
            backoff: Duration::from_millis(25),
            budget: 0.2,
        }
    }
}

/// The requests and retries in flight to one upstream, for the retry budget.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    active: AtomicUsize,
    retrying: AtomicUsize,
}

/// Counts a request in flight (or a retry) on a [`Budget`] until dropped.
pub(crate) struct InFlight<'b>(&'b AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Budget {
    /// Counts a request in flight.
    pub(crate) fn request(&self) -> InFlight<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.active)
    }

    /// Counts a retry if the budget has room for one: `share` of the requests in flight,
    /// at least 3 (none when `share` is 0).
    pub(crate) fn retry(&self, share: f64) -> Option<InFlight<'_>> {
        if share <= 0.0 {
            return None;
        }
        let active = self.active.load(Ordering::Acquire);
        let room = ((active as f64 * share) as usize).max(3);
        self.retrying
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < room).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(&self.retrying))
    }
}

/// The wait before try `n` (1 for the first retry): full jitter up to base × 2^(n-1),
/// at most 1 s.
pub(crate) fn backoff(base: Duration, n: u32) -> Duration {
    let cap = base
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
        .min(Duration::from_secs(1));
    cap.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(n: usize, eject_after: u32, pct: u8) -> Upstream {
        let mut up = crate::config::parse_upstream_list(
            &(0..n)
                .map(|i| format!("http://127.0.0.1:{}", 1000 + i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        up.health = PassiveHealth {
            eject_after,
            ejection_time: Duration::from_secs(30),
            max_ejected_percent: pct,
        };
        up
    }

    #[test]
    fn round_robin_skips_ejected_and_tried_targets() {
        let t = Targets::default();
        let up = upstream(3, 2, 50);
        let picks: Vec<usize> = (0..3).map(|_| t.pick(&up, 0).unwrap().index).collect();
        assert_eq!(picks, [0, 1, 2]);
        assert_ne!(t.pick(&up, 1).unwrap().index, 0);
        // Retries do not take turns: the first tries still alternate over the targets.
        let firsts: Vec<usize> = (0..3)
            .map(|_| {
                let first = t.pick(&up, 0).unwrap().index;
                t.pick(&up, 1 << first).unwrap();
                first
            })
            .collect();
        assert_eq!(firsts.len(), 3);
        assert!(
            firsts[0] != firsts[1] && firsts[1] != firsts[2],
            "{firsts:?}"
        );
        let p = t.pick(&up, 0b110).unwrap();
        assert_eq!(p.index, 0);
        assert_eq!(t.failed(&up, &p, "refused"), None);
        assert_eq!(t.failed(&up, &p, "refused"), Some(Duration::from_secs(30)));
        for _ in 0..6 {
            assert_ne!(t.pick(&up, 0).unwrap().index, 0);
        }
        // At most half of three (one) ejected: the next target's failures do not eject it.
        let states = t.states_of(&up);
        let p1 = Pick {
            index: 1,
            target: &up.targets[1],
            state: &states[1],
        };
        t.failed(&up, &p1, "x");
        assert_eq!(t.failed(&up, &p1, "x"), None);
    }

    #[test]
    fn every_target_ejected_says_when_each_returns() {
        let t = Targets::default();
        let up = upstream(2, 1, 100);
        for _ in 0..2 {
            let p = t.pick(&up, 0).unwrap();
            assert!(t.failed(&up, &p, "connection refused").is_some());
        }
        let none = t.pick(&up, 0).err().unwrap();
        assert_eq!(none.targets.len(), 2);
        assert_eq!(
            none.targets[0].1.as_ref().unwrap().cause,
            "connection refused"
        );
        assert!(none.soonest() <= Duration::from_secs(30));
        let report = t.report();
        assert_eq!(report[0]["state"], "ejected");
        assert_eq!(
            report[0]["recent_failures"][0]["cause"],
            "connection refused"
        );
    }

    #[test]
    fn least_requests_prefers_the_idle_target() {
        let t = Targets::default();
        let mut up = upstream(2, 5, 50);
        up.balance = Balance::LeastRequests;
        let busy = t.pick(&up, 0).unwrap();
        let _held = Targets::start(&busy);
        for _ in 0..4 {
            assert_ne!(t.pick(&up, 0).unwrap().index, busy.index);
        }
    }

    #[test]
    fn the_budget_and_the_backoff_are_bounded() {
        let b = Budget::default();
        let _reqs: Vec<_> = (0..10).map(|_| b.request()).collect();
        let retries: Vec<_> = (0..10).filter_map(|_| b.retry(0.2)).collect();
        assert_eq!(retries.len(), 3);
        for n in 1..20 {
            assert!(backoff(Duration::from_millis(25), n) <= Duration::from_secs(1));
        }
        assert!(backoff(Duration::from_millis(25), 1) <= Duration::from_millis(25));
    }
}
