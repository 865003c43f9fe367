//! Rate limits: GCRA per route, policy and key (the `governor` crate), with the fields of
//! the IETF httpapi draft (`RateLimit-Policy`, `RateLimit`) and `Retry-After`.
//!
//! Each policy of a route is one keyed limiter. Limiters live in the [`Registry`], which
//! outlives configuration reloads: a policy whose route, name, limit, window, burst and key
//! are unchanged keeps its counts. Key state is bounded: keys whose bucket is full again
//! are evicted every few seconds, and a limiter holding `max_keys` keys counts keys it does
//! not know yet together, in one shared bucket, until eviction makes room.

use crate::time::ceil_secs;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{NotUntil, Quota, RateLimiter};
use http::HeaderName;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// What a policy counts requests by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyBy {
    /// The authenticated client (for API keys: the key).
    Client,
    /// The authenticated principal's account (else its client).
    Account,
    /// The API key the request authenticated with.
    ApiKey,
    /// The client's address (behind trusted proxies); IPv6 addresses by their /64.
    Address,
    /// A request header's value (else the address).
    Header(HeaderName),
    /// The route as a whole.
    Route,
}

impl KeyBy {
    /// The words of the configuration (`client`, `header:X-Tenant`, ...).
    pub(crate) fn parse(s: &str) -> Result<KeyBy, String> {
        Ok(match s {
            "client" => KeyBy::Client,
            "account" => KeyBy::Account,
            "api_key" => KeyBy::ApiKey,
            "address" => KeyBy::Address,
            "route" => KeyBy::Route,
            _ => match s.strip_prefix("header:") {
                Some(name) => KeyBy::Header(
                    HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| format!("`{}` is not a header name", name.trim()))?,
                ),
                None => return Err(format!("`{s}` is not a key")),
            },
        })
    }

    /// Whether the key is known only once the request is authenticated.
    pub(crate) fn needs_principal(&self) -> bool {
        matches!(self, KeyBy::Client | KeyBy::Account | KeyBy::ApiKey)
    }

    /// The key in words, for `candor check` and messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            KeyBy::Client => "client".into(),
            KeyBy::Account => "account".into(),
            KeyBy::ApiKey => "API key".into(),
            KeyBy::Address => "client address".into(),
            KeyBy::Header(h) => format!("{h} header"),
            KeyBy::Route => "route".into(),
        }
    }
}

/// One rate-limit policy of a route, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PolicyConfig {
    /// The policy's name (in the RateLimit fields and `violated-policies`).
    pub(crate) name: String,
    /// Requests per window.
    pub(crate) limit: u32,
    /// The window, whole seconds.
    pub(crate) window: Duration,
    /// How many requests may come at once (at most `limit` by default).
    pub(crate) burst: u32,
    /// What requests are counted by.
    pub(crate) key: KeyBy,
}

impl PolicyConfig {
    /// The window in words: "second", "minute", "day", "10 seconds".
    pub(crate) fn window_words(&self) -> String {
        let s = self.window.as_secs();
        let units = [
            (86_400, "day"),
            (3600, "hour"),
            (60, "minute"),
            (1, "second"),
        ];
        for (size, unit) in units {
            if s == size {
                return unit.into();
            }
            if s.is_multiple_of(size) {
                return format!("{} {unit}s", s / size);
            }
        }
        format!("{s} seconds")
    }

    fn quota(&self) -> Quota {
        let per = self.window / self.limit.max(1);
        Quota::with_period(per.max(Duration::from_nanos(1)))
            .expect("a period of at least 1 ns")
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("at least 1"))
    }
}

/// The key a limiter is filed under in the registry: the route and its policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LimiterId {
    route: String,
    policy: PolicyConfig,
    max_keys: usize,
}

/// The key of the shared bucket a full limiter counts unknown keys in.
const OVERFLOW: u64 = u64::MAX;

/// A DashMap of keys' states with a cap on the number of keys (shared with its limiter, which
/// reads and forgets keys without counting).
#[derive(Debug)]
pub(crate) struct BoundedStore {
    inner: Arc<DashMapStateStore<u64>>,
    max_keys: usize,
    /// The policy's name, for the warning when the store is full.
    policy: String,
    /// When that warning was last logged (Unix seconds): at most once a minute.
    warned: std::sync::atomic::AtomicI64,
    /// A limiter of [`FAIL_OPEN_ROUTE`]: its owner logs a full store in its own words.
    quiet: bool,
}

/// The route the token endpoint's failed-attempt limiters are filed under. They fail open
/// (a key the full store does not hold is never blocked) and say so themselves, so the
/// rate limits' warning about a full store, which names limits.max_rate_limit_keys and a
/// shared bucket, is not logged for them.
pub(crate) const FAIL_OPEN_ROUTE: &str = "candor.token_endpoint";

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if self.inner.len() >= self.max_keys && !self.inner.contains_key(key) {
            if self.quiet {
                return self.inner.measure_and_replace(&OVERFLOW, f);
            }
            let now = crate::time::unix_now();
            let last = self.warned.load(std::sync::atomic::Ordering::Relaxed);
            if now - last >= 60
                && self
                    .warned
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                tracing::warn!(target: "candor::limits", policy = %self.policy, max_keys = self.max_keys, "rate-limit policy holds limits.max_rate_limit_keys keys: new keys share one bucket until idle keys are evicted");
            }
            return self.inner.measure_and_replace(&OVERFLOW, f);
        }
        self.inner.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.inner, drop_below)
    }
    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.inner)
    }
    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.inner)
    }
    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.inner)
    }
}

type Governor = RateLimiter<u64, BoundedStore, DefaultClock, StateInformationMiddleware>;

/// One policy's keyed limiter.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// The policy it enforces.
    pub(crate) policy: PolicyConfig,
    governor: Governor,
    hasher: std::hash::RandomState,
    /// The governor's state, to read and forget keys without counting.
    states: Arc<DashMapStateStore<u64>>,
    /// No earlier than the governor's start, which its states count from.
    start: <DefaultClock as Clock>::Instant,
    /// The most keys held (beyond, keys share the overflow bucket).
    max_keys: usize,
}

/// A policy's state for one request, for the RateLimit fields.
#[derive(Clone, Debug)]
pub(crate) struct PolicyState {
    /// The policy's name.
    pub(crate) name: String,
    /// Its limit per window.
    pub(crate) limit: u32,
    /// Its window in seconds.
    pub(crate) window: u64,
    /// Requests left now.
    pub(crate) remaining: u32,
    /// Seconds until the whole quota is back (the bucket full again), rounded up.
    pub(crate) reset: u64,
}

/// A refusal: the policy and how long until the next request is accepted.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The refusing policy's state.
    pub(crate) state: PolicyState,
    /// Seconds until the next request is accepted, rounded up.
    pub(crate) retry_after: u64,
    /// Until the next request is accepted, exactly.
    #[cfg(test)]
    wait: Duration,
}

impl Limiter {
    /// A limiter enforcing `policy` on at most `max_keys` keys (the registry's are built
    /// with [`Registry::limiter`]).
    #[cfg(test)]
    pub(crate) fn new(policy: PolicyConfig, max_keys: usize) -> Limiter {
        Self::build(policy, max_keys, false)
    }

    /// A limiter enforcing `policy` on at most `max_keys` keys; `quiet`, it does not warn
    /// when its store is full.
    fn build(policy: PolicyConfig, max_keys: usize, quiet: bool) -> Limiter {
        let states: Arc<DashMapStateStore<u64>> = Arc::default();
        let store = BoundedStore {
            inner: states.clone(),
            max_keys: max_keys.max(1),
            policy: policy.name.clone(),
            warned: std::sync::atomic::AtomicI64::new(0),
            quiet,
        };
        let governor: Governor = RateLimiter::new(policy.quota(), store, DefaultClock::default());
        // Taken after the governor's own start: waits worked out from it are never short.
        let start = governor.clock().now();
        Limiter {
            policy,
            governor,
            hasher: std::hash::RandomState::new(),
            states,
            start,
            max_keys: max_keys.max(1),
        }
    }

    /// `key`'s theoretical arrival time and now, both since the governor's start, if the
    /// key is held (or, with `shared`, the full store's shared bucket it is counted in);
    /// nothing is counted.
    fn read_as(&self, tag: u8, key: &[u8], shared: bool) -> Option<(Duration, Duration)> {
        let mut h = self.hash(tag, key);
        if !self.states.contains_key(&h) {
            // A key the full store does not hold is counted in the shared bucket.
            if !shared || self.states.len() < self.max_keys {
                return None;
            }
            h = OVERFLOW;
            if !self.states.contains_key(&h) {
                return None;
            }
        }
        let tat: Nanos = self
            .states
            .measure_and_replace(&h, Err::<((), Nanos), _>)
            .err()??;
        let now: Duration = self
            .governor
            .clock()
            .now()
            .duration_since(self.start)
            .into();
        Some((tat.into(), now))
    }

    /// How long until `key` would be accepted, if it would be refused now; nothing is
    /// counted.
    pub(crate) fn blocked(&self, tag: u8, key: &[u8]) -> Option<Duration> {
        self.blocked_as(tag, key, true)
    }

    /// Like [`Limiter::blocked`], but a key the store does not hold is never blocked, even
    /// when the store is full (the failed-attempt limit fails open: filling its store with
    /// made-up keys must not lock out everyone else).
    pub(crate) fn blocked_own(&self, tag: u8, key: &[u8]) -> Option<Duration> {
        self.blocked_as(tag, key, false)
    }

    fn blocked_as(&self, tag: u8, key: &[u8], shared: bool) -> Option<Duration> {
        let (tat, now) = self.read_as(tag, key, shared)?;
        let t = self.policy.quota().replenish_interval();
        let earliest = tat.saturating_sub(t * (self.policy.burst.max(1) - 1));
        (now < earliest).then(|| earliest - now)
    }

    /// `key`'s state now, without counting a request (for the RateLimit fields of a
    /// request another policy refused).
    pub(crate) fn peek(&self, tag: u8, key: &[u8]) -> PolicyState {
        let p = &self.policy;
        let burst = p.burst.max(1);
        let t = p.quota().replenish_interval();
        let (remaining, reset) = match self.read_as(tag, key, true) {
            Some((tat, now)) if tat > now => {
                let owed = tat - now;
                let left = (t * burst).saturating_sub(owed).as_nanos() / t.as_nanos().max(1);
                (left as u32, owed)
            }
            _ => (burst, Duration::ZERO),
        };
        PolicyState {
            name: p.name.clone(),
            limit: p.limit,
            window: p.window.as_secs(),
            remaining,
            reset: ceil_secs(reset),
        }
    }

    /// Forgets `key`: its next request starts with a full bucket. Whether it was held.
    pub(crate) fn forget(&self, tag: u8, key: &[u8]) -> bool {
        self.states.remove(&self.hash(tag, key)).is_some()
    }

    /// Whether the store holds `key` on its own (not in the full store's shared bucket).
    pub(crate) fn holds(&self, tag: u8, key: &[u8]) -> bool {
        self.states.contains_key(&self.hash(tag, key))
    }

    /// Forgets every key (and the full store's shared bucket).
    pub(crate) fn forget_all(&self) {
        self.states.clear();
    }

    fn hash(&self, tag: u8, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(tag);
        key.hash(&mut h);
        // OVERFLOW is the shared bucket's.
        h.finish().min(OVERFLOW - 1)
    }

    /// Counts one request of `key` (`tag` says what kind of key it is).
    pub(crate) fn check(&self, tag: u8, key: &[u8]) -> Result<PolicyState, Refusal> {
        match self.governor.check_key(&self.hash(tag, key)) {
            Ok(snapshot) => Ok(self.state_after(&snapshot)),
            Err(not_until) => Err(self.refusal(&not_until)),
        }
    }

    fn state_after(&self, s: &StateSnapshot) -> PolicyState {
        let p = &self.policy;
        let remaining = s.remaining_burst_capacity();
        let per = s.quota().replenish_interval();
        // The bucket is full again once the used cells are replenished (an upper bound
        // within one cell: `remaining` is rounded down).
        let used = p.burst.saturating_sub(remaining).max(1);
        let reset = per * used;
        PolicyState {
            name: p.name.clone(),
            limit: p.limit,
            window: p.window.as_secs(),
            remaining,
            reset: ceil_secs(reset).max(1),
        }
    }

    fn refusal(&self, n: &NotUntil<<DefaultClock as Clock>::Instant>) -> Refusal {
        let wait = n.wait_time_from(self.governor.clock().now());
        let p = &self.policy;
        let per = p.quota().replenish_interval();
        Refusal {
            state: PolicyState {
                name: p.name.clone(),
                limit: p.limit,
                window: p.window.as_secs(),
                remaining: 0,
                // Empty: the next cell in `wait`, the rest one per `per` after it.
                reset: ceil_secs(wait + per * (p.burst.max(1) - 1)).max(1),
            },
            retry_after: ceil_secs(wait).max(1),
            #[cfg(test)]
            wait,
        }
    }

    /// Drops the keys whose bucket is full again.
    fn evict_idle(&self) {
        self.governor.retain_recent();
        self.governor.shrink_to_fit();
    }

    /// Keys held now.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.governor.len()
    }
}

/// Every live limiter, by route and policy: what survives a reload.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    limiters: Mutex<HashMap<LimiterId, Weak<Limiter>>>,
    /// The shared (Redis) store of `[limits.shared]`, kept while its setting is unchanged.
    shared: Mutex<Option<Arc<crate::limits::shared::SharedStore>>>,
}

impl Registry {
    /// The shared store of `config`: the live one if its setting is unchanged, else a new
    /// one (which connects at its first check).
    pub(crate) fn shared_store(
        &self,
        config: &crate::limits::shared::SharedConfig,
    ) -> Arc<crate::limits::shared::SharedStore> {
        let Ok(mut slot) = self.shared.lock() else {
            return Arc::new(crate::limits::shared::SharedStore::new(config.clone()));
        };
        match &*slot {
            Some(s) if s.config == *config => s.clone(),
            _ => {
                let s = Arc::new(crate::limits::shared::SharedStore::new(config.clone()));
                *slot = Some(s.clone());
                s
            }
        }
    }

    /// The limiter of `route`'s `policy`: the live one if a generation still uses it, else a
    /// new one holding at most `max_keys` keys.
    pub(crate) fn limiter(
        &self,
        route: &str,
        policy: &PolicyConfig,
        max_keys: usize,
    ) -> Arc<Limiter> {
        let id = LimiterId {
            route: route.to_owned(),
            policy: policy.clone(),
            max_keys,
        };
        let quiet = route == FAIL_OPEN_ROUTE;
        let Ok(mut map) = self.limiters.lock() else {
            return Arc::new(Limiter::build(policy.clone(), max_keys, quiet));
        };
        if let Some(l) = map.get(&id).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(Limiter::build(policy.clone(), max_keys, quiet));
        map.insert(id, Arc::downgrade(&l));
        l
    }

    /// Evicts idle keys of every live limiter and forgets the limiters no generation uses.
    pub(crate) fn evict_idle(&self) {
        let live: Vec<Arc<Limiter>> = match self.limiters.lock() {
            Ok(mut map) => {
                map.retain(|_, l| l.strong_count() > 0);
                map.values().filter_map(Weak::upgrade).collect()
            }
            Err(_) => return,
        };
        for l in live {
            l.evict_idle();
        }
    }
}

/// Evicts idle keys every 10 s.
pub(crate) async fn keep_evicting(registry: Arc<Registry>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let r = registry.clone();
        let _ = tokio::task::spawn_blocking(move || r.evict_idle()).await;
    }
}

/// The bytes an address is counted under: IPv4 whole, IPv6 by its /64 (one host usually
/// holds a whole /64).
pub(crate) fn address_key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets()[..8].to_vec(),
        },
    }
}

/// The `RateLimit-Policy` field: `"burst";q=100;w=1, "day";q=10000;w=86400`.
pub(crate) fn policy_field(states: &[PolicyState]) -> String {
    let items: Vec<String> = states
        .iter()
        .map(|s| format!("\"{}\";q={};w={}", s.name, s.limit, s.window))
        .collect();
    items.join(", ")
}

/// The `RateLimit` field: `"burst";r=0;t=3`.
pub(crate) fn state_field(states: &[PolicyState]) -> String {
    let items: Vec<String> = states
        .iter()
        .map(|s| format!("\"{}\";r={};t={}", s.name, s.remaining, s.reset))
        .collect();
    items.join(", ")
}

/// A policy named "burst", keyed by address, for tests here and in `shared`.
#[cfg(test)]
pub(crate) fn test_policy(limit: u32, window: u64, burst: u32) -> PolicyConfig {
    PolicyConfig {
        name: "burst".into(),
        limit,
        window: Duration::from_secs(window),
        burst,
        key: KeyBy::Address,
    }
}

#[cfg(test)]
mod tests {
    use super::test_policy as policy;
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_refused_with_the_wait() {
        let l = Limiter::new(policy(3, 30, 3), 100);
        let rem: Vec<u32> = (0..3)
            .map(|_| l.check(b'i', b"a").unwrap().remaining)
            .collect();
        assert_eq!(rem, [2, 1, 0]);
        let r = l.check(b'i', b"a").unwrap_err();
        // One request per 10 s: the next is due in at most 10 s, and not much less.
        assert!(r.wait <= Duration::from_secs(10) && r.wait > Duration::from_secs(9));
        assert_eq!((r.retry_after, r.state.reset), (10, 30));
        // Another key has its own bucket.
        assert_eq!(l.check(b'i', b"b").unwrap().remaining, 2);
        assert_eq!(l.keys(), 2);
    }

    #[test]
    fn blocked_reads_without_counting_and_forget_refills() {
        let l = Limiter::new(policy(2, 60, 2), 10);
        assert_eq!(l.blocked(b'i', b"a"), None);
        l.check(b'i', b"a").unwrap();
        assert_eq!(l.blocked(b'i', b"a"), None);
        l.check(b'i', b"a").unwrap();
        let wait = l.blocked(b'i', b"a").unwrap();
        assert!(wait <= Duration::from_secs(30) && wait > Duration::from_secs(29));
        // Reading did not count: the refusal says the same.
        let r = l.check(b'i', b"a").unwrap_err();
        assert!(r.wait <= wait);
        let seen = l.peek(b'i', b"a");
        assert_eq!((seen.remaining, seen.reset), (0, 60));
        assert_eq!(l.peek(b'i', b"new").remaining, 2);
        l.forget(b'i', b"a");
        assert_eq!(l.blocked(b'i', b"a"), None);
        assert_eq!(l.check(b'i', b"a").unwrap().remaining, 1);
    }

    #[test]
    fn a_full_limiter_counts_new_keys_together() {
        let l = Limiter::new(policy(2, 60, 2), 2);
        l.check(b'i', b"a").unwrap();
        l.check(b'i', b"b").unwrap();
        // The store is full: c and d share one bucket, a keeps its own.
        l.check(b'i', b"c").unwrap();
        l.check(b'i', b"d").unwrap();
        assert!(l.check(b'i', b"e").is_err());
        assert_eq!(l.check(b'i', b"a").unwrap().remaining, 0);
        assert!(l.keys() <= 3);
        // Read without counting, a key the full store does not hold shows the shared
        // bucket it is counted in (the probe saw such keys shown as full).
        assert_eq!(l.peek(b'i', b"f").remaining, 0);
    }

    #[test]
    fn the_registry_keeps_a_policy_across_generations() {
        let r = Registry::default();
        let a = r.limiter("r", &policy(2, 60, 2), 10);
        a.check(b'i', b"k").unwrap();
        let b = r.limiter("r", &policy(2, 60, 2), 10);
        assert_eq!(b.check(b'i', b"k").unwrap().remaining, 0);
        // A changed policy starts afresh.
        let c = r.limiter("r", &policy(3, 60, 3), 10);
        assert_eq!(c.check(b'i', b"k").unwrap().remaining, 2);
        drop((a, b));
        r.evict_idle();
        assert_eq!(r.limiters.lock().unwrap().len(), 1);
    }

    #[test]
    fn fields_and_words() {
        let s = PolicyState {
            name: "burst".into(),
            limit: 100,
            window: 1,
            remaining: 0,
            reset: 3,
        };
        assert_eq!(
            policy_field(std::slice::from_ref(&s)),
            "\"burst\";q=100;w=1"
        );
        assert_eq!(state_field(&[s]), "\"burst\";r=0;t=3");
        assert_eq!(policy(1, 1, 1).window_words(), "second");
        assert_eq!(policy(1, 86_400, 1).window_words(), "day");
        assert_eq!(policy(1, 600, 1).window_words(), "10 minutes");
        assert_eq!(policy(1, 90, 1).window_words(), "90 seconds");
        assert_eq!(
            address_key("2001:db8::1".parse().unwrap()),
            address_key("2001:db8::ffff".parse().unwrap())
        );
    }
}
