//! Rate limits shared by several gateways through Redis (`[limits.shared]`).
//!
//! Exact mode: each check of a route's rate-limit stage is one call of [`GCRA_SCRIPT`], a
//! Lua script run atomically by stock Redis 7 (EVALSHA; the script is loaded again when
//! Redis answers NOSCRIPT, as after a restart). The script reads the clock of Redis, so that
//! every gateway counts against one clock, and does for all of the stage's policies what
//! the local limiter does for one: GCRA with the same arithmetic, in microseconds. A
//! request one policy refuses is counted by none. Each key expires when its bucket is full
//! again (at most the policy's window), so idle keys leave Redis by themselves.
//!
//! Batched mode: a gateway leases up to `lease` permits of a key at once (one script call
//! takes them from the shared bucket) and admits requests from its lease without a round
//! trip until it is spent; a lease is drawn on for at most [`LEASE_TIME`] after it was last
//! topped up, then dropped. Permits are taken
//! from Redis before they are used, so the gateways together never admit more than the
//! limit allows in a burst; what a lease holds is admitted up to [`LEASE_TIME`] later, so
//! over any window the gateways admit at most `gateways × (lease - 1)` more than the
//! policy, and a dropped lease leaves at most `lease - 1` permits unused per gateway and
//! key. A policy's lease is at most a tenth of its burst, so policies with a burst under 20
//! are counted exactly.
//!
//! When Redis fails or does not answer within `timeout`, the store is *down*: one request
//! a second tries it again, the others do not wait on it. `on_failure = "open"` counts
//! requests in the local limiters meanwhile; `"closed"` refuses them with
//! `rate_limit_store_unavailable`. The outage and the recovery are logged once each.

use super::rate::{PolicyConfig, PolicyState};
use crate::time::ceil_secs;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How the shared store counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedMode {
    /// One atomic script call per check.
    Exact,
    /// Permits leased `lease` at a time per key and gateway.
    Batched {
        /// The most permits one lease takes.
        lease: u32,
    },
}

/// What rate-limited routes do while the shared store is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Count in each gateway's own limiters (each admits up to the whole limit).
    Open,
    /// Refuse with `rate_limit_store_unavailable`.
    Closed,
}

/// `[limits.shared]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedConfig {
    /// The Redis URL (`redis://host:port/db`).
    pub redis: String,
    /// How checks use Redis.
    pub mode: SharedMode,
    /// What happens while Redis is unreachable.
    pub on_failure: OnFailure,
    /// The longest a request waits on Redis (connecting included).
    pub timeout: Duration,
}

impl SharedConfig {
    /// The URL without its password, for logs and `candor check`.
    pub fn shown_url(&self) -> String {
        match (self.redis.split_once("://"), self.redis.rfind('@')) {
            (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
                let host = &self.redis[at + 1..];
                let user = rest.split_once('@').map_or("", |(cred, _)| cred);
                let user = user.split_once(':').map_or(user, |(u, _)| u);
                format!("{scheme}://{user}:***@{host}")
            }
            _ => self.redis.clone(),
        }
    }

    /// The setting in words: "redis://127.0.0.1:6379 (exact mode, on failure open,
    /// timeout 250ms)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, on failure {}, timeout {})",
            self.shown_url(),
            match self.mode {
                SharedMode::Exact => "exact mode".to_owned(),
                SharedMode::Batched { lease } => format!("batched mode, leases of up to {lease}"),
            },
            match self.on_failure {
                OnFailure::Open => "open: each gateway counts alone",
                OnFailure::Closed => "closed: rate_limit_store_unavailable",
            },
            crate::duration::text(self.timeout)
        )
    }
}

/// GCRA for every key of one check, atomically.
///
/// `KEYS[i]` is a policy's key; `ARGV[3i-2]` its emission interval `t` in microseconds
/// (window / limit), `ARGV[3i-1]` its burst and `ARGV[3i]` how many cells to take (1 in
/// exact mode; a lease in batched mode; 0 to read only). As in `governor`: a key's
/// theoretical arrival time (TAT) is now when absent or past; a request is conforming when
/// `now >= TAT - t * (burst - 1)`, and a conforming request moves TAT to `max(TAT, now) + t`.
/// Up to `want` cells are taken, as many as conform (`(now - TAT) / t + burst`). Only when
/// every key wanting cells has one are they taken (each key then expires at its new TAT:
/// the moment its bucket is full again).
///
/// Returns `{counted, owed_1, wait_1, got_1, ...}`: `counted` is 1 when the cells were
/// taken; `owed` is TAT - now after the call (µs, 0 when the bucket is full); `wait` is how
/// long until the key conforms (0 when it does now); `got` the cells taken.
pub(crate) const GCRA_SCRIPT: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local n = #KEYS
local tats = {}
local gets = {}
local blocked = false
for i = 1, n do
  local t = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  tats[i] = tat
  local free = math.floor((now - tat) / t) + burst
  if free < 0 then free = 0 end
  gets[i] = math.min(want, free)
  if want > 0 and free < 1 then blocked = true end
end
local out = {blocked and 0 or 1}
for i = 1, n do
  local t = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local tat = tats[i]
  local earliest = tat - t * (burst - 1)
  local wait = 0
  if earliest > now then wait = earliest - now end
  local got = 0
  if not blocked and gets[i] > 0 then
    got = gets[i]
    tat = tat + t * got
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  out[3 * i - 1] = tat - now
  out[3 * i] = wait
  out[3 * i + 1] = got
end
return out
"#;

/// How long a scan of the shared store's keyspace (to list or lift failed-attempt blocks)
/// may take in all; each of its commands is bounded by `limits.shared.timeout`.
pub(crate) const SCAN_DEADLINE: Duration = Duration::from_secs(5);

/// After a failure, how long until a request tries Redis again.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a batched-mode lease may be drawn on; then its unused permits are dropped.
pub(crate) const LEASE_TIME: Duration = Duration::from_secs(1);

/// The most leases a gateway holds; past it, expired ones are dropped first, then all.
const MAX_LEASES: usize = 100_000;

/// A gateway's lease of one key's permits (batched mode).
#[derive(Debug)]
struct Lease {
    /// Permits left to admit without asking Redis.
    left: u32,
    /// When it was taken.
    taken: Instant,
    /// The key's TAT - now when it was taken (µs), for the RateLimit fields.
    owed: u64,
}

/// One policy's part of a check: its Redis key and its arithmetic.
#[derive(Clone, Debug)]
pub(crate) struct Ask {
    key: String,
    /// The emission interval, µs (at least 1).
    t: u64,
    burst: u32,
}

/// What one check found for one policy: `owed` and `wait` as the script returns them (µs),
/// and `leased`, permits this gateway holds beyond them (batched mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// TAT - now in Redis (µs).
    pub(crate) owed: u64,
    /// Until the key admits a request (µs); 0 when it does.
    pub(crate) wait: u64,
    /// Permits this gateway holds in its lease after this check.
    pub(crate) leased: u32,
}

/// A policy of a route, as Redis knows it: the prefix of its keys. Two gateways with the
/// same route and policy share keys; a changed policy starts afresh, as locally.
#[derive(Clone)]
pub(crate) struct PolicyKeys {
    prefix: ring::digest::Context,
    t: u64,
    burst: u32,
}

impl std::fmt::Debug for PolicyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyKeys")
            .field("t", &self.t)
            .field("burst", &self.burst)
            .finish()
    }
}

impl PolicyKeys {
    /// The keys of `route`'s `policy`.
    pub(crate) fn new(route: &str, policy: &PolicyConfig) -> PolicyKeys {
        let mut prefix = ring::digest::Context::new(&ring::digest::SHA256);
        let fingerprint = format!(
            "{route}\0{}\0{}\0{}\0{}\0{}\0",
            policy.name,
            policy.limit,
            policy.window.as_secs(),
            policy.burst,
            policy.key.describe()
        );
        prefix.update(fingerprint.as_bytes());
        PolicyKeys {
            prefix,
            t: emission_interval(policy),
            burst: policy.burst.max(1),
        }
    }

    /// The part of a check for the request counted under `tag` and `key`. The key is
    /// hashed: header values and client ids are not stored in Redis as they are.
    pub(crate) fn ask(&self, tag: u8, key: &[u8]) -> Ask {
        let mut h = self.prefix.clone();
        h.update(&[tag]);
        h.update(key);
        let digest = h.finish();
        let mut name = String::with_capacity(10 + 32);
        name.push_str("candor:rl:");
        push_hex(&mut name, &digest.as_ref()[..16]);
        Ask {
            key: name,
            t: self.t,
            burst: self.burst,
        }
    }
}

/// The part of a check for Redis key `key`, counted as `policy` counts (used by the
/// token endpoint's failed attempts, whose keys are readable so that a block can be lifted
/// everywhere by client or address).
pub(crate) fn ask_for(key: String, policy: &PolicyConfig) -> Ask {
    Ask {
        key,
        t: emission_interval(policy),
        burst: policy.burst.max(1),
    }
}

/// Appends `bytes` to `out` in lowercase hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// The emission interval of `policy` in µs: window / limit, as the local limiter's quota.
fn emission_interval(policy: &PolicyConfig) -> u64 {
    let per = policy.window / policy.limit.max(1);
    (per.as_micros() as u64).max(1)
}

/// What Redis answered for one policy.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    /// The policy's state (after counting, when the request was counted).
    pub(crate) state: PolicyState,
    /// Seconds until the policy admits a request, when it refuses this one.
    pub(crate) blocked: Option<u64>,
}

/// The policy's state from the script's `owed` and `wait` (µs), as the local limiter
/// reports it: `counted` says whether the request was counted.
#[cfg(test)]
pub(crate) fn outcome(policy: &PolicyConfig, counted: bool, owed: u64, wait: u64) -> Outcome {
    outcome_leased(policy, counted, owed, wait, 0)
}

/// [`outcome`] for a gateway holding `leased` permits of the key beyond what Redis shows
/// (batched mode): they are this gateway's requests left.
pub(crate) fn outcome_leased(
    policy: &PolicyConfig,
    counted: bool,
    owed: u64,
    wait: u64,
    leased: u32,
) -> Outcome {
    let t = emission_interval(policy);
    let burst = policy.burst.max(1);
    let us = Duration::from_micros;
    let state = |remaining: u32, reset: u64| PolicyState {
        name: policy.name.clone(),
        limit: policy.limit,
        window: policy.window.as_secs(),
        remaining,
        reset,
    };
    let capacity = t * u64::from(burst);
    let remaining = ((capacity.saturating_sub(owed) / t) as u32)
        .saturating_add(leased)
        .min(burst);
    if counted {
        // As governor's snapshot: the bucket is full again once the used cells are back.
        let used = u64::from(burst.saturating_sub(remaining).max(1));
        return Outcome {
            state: state(remaining, ceil_secs(us(t * used)).max(1)),
            blocked: None,
        };
    }
    if wait > 0 {
        // Empty: the next cell in `wait`, the rest one per `t` after it.
        let reset = ceil_secs(us(wait + t * u64::from(burst - 1))).max(1);
        return Outcome {
            state: state(0, reset),
            blocked: Some(ceil_secs(us(wait)).max(1)),
        };
    }
    Outcome {
        state: state(remaining, ceil_secs(us(owed))),
        blocked: None,
    }
}

/// Why the shared store could not be used: words that name no address or secret.
#[derive(Clone, Debug)]
pub(crate) struct Unavailable {
    /// "refused the connection", "did not answer within 250ms", ...
    pub(crate) cause: String,
}

/// A connection to Redis and whether it is up: one per `[limits.shared]` setting, kept
/// across reloads that do not change it.
pub(crate) struct SharedStore {
    /// The setting.
    pub(crate) config: SharedConfig,
    client: Option<redis::Client>,
    conn: OnceLock<ConnectionManager>,
    script: redis::Script,
    epoch: Instant,
    down: AtomicBool,
    /// Milliseconds since `epoch` before which no request tries Redis again.
    next_try: AtomicU64,
    /// The last failure's cause and when the outage began.
    outage: Mutex<(String, Option<Instant>)>,
    /// Batched mode: this gateway's leases, by Redis key.
    leases: Mutex<std::collections::HashMap<String, Lease>>,
    /// Milliseconds since `epoch` when a refused command was last logged (at most one
    /// line a minute: a key of another type is refused on every request that counts in it).
    refusal_logged: AtomicU64,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("redis", &self.config.shown_url())
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish()
    }
}

impl SharedStore {
    /// A store for `config`; nothing connects until the first check.
    pub(crate) fn new(config: SharedConfig) -> SharedStore {
        SharedStore {
            client: redis::Client::open(config.redis.as_str()).ok(),
            config,
            conn: OnceLock::new(),
            script: redis::Script::new(GCRA_SCRIPT),
            epoch: Instant::now(),
            down: AtomicBool::new(false),
            next_try: AtomicU64::new(0),
            outage: Mutex::new((String::new(), None)),
            leases: Mutex::default(),
            refusal_logged: AtomicU64::new(0),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, Unavailable> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let client = self.client.clone().ok_or_else(|| Unavailable {
            cause: "has an address the client cannot use".into(),
        })?;
        let t = self.config.timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let c = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            tracing::warn!(target: "candor::limits", redis = %self.config.shown_url(), error = %e, "cannot set up the shared rate-limit store's connection");
            Unavailable {
                cause: "could not be set up".into(),
            }
        })?;
        Ok(self.conn.get_or_init(|| c).clone())
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The last failure, while the store is down and not due for another try.
    fn still_down(&self) -> Option<Unavailable> {
        if !self.down.load(Ordering::Relaxed) {
            return None;
        }
        let now = self.millis();
        let next = self.next_try.load(Ordering::Relaxed);
        // One request per interval tries again; the others do not wait.
        if now >= next
            && self
                .next_try
                .compare_exchange(
                    next,
                    now + RETRY_INTERVAL.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return None;
        }
        Some(self.unavailable())
    }

    fn unavailable(&self) -> Unavailable {
        let cause = self
            .outage
            .lock()
            .map_or_else(|_| "failed".into(), |o| o.0.clone());
        Unavailable { cause }
    }

    fn failed(&self, cause: String) -> Unavailable {
        self.next_try.store(
            self.millis() + RETRY_INTERVAL.as_millis() as u64,
            Ordering::Relaxed,
        );
        if let Ok(mut o) = self.outage.lock() {
            o.0.clone_from(&cause);
            if !self.down.swap(true, Ordering::Relaxed) {
                o.1 = Some(Instant::now());
                let fallback = match self.config.on_failure {
                    OnFailure::Open => "counting in each gateway's own limiters until it is back",
                    OnFailure::Closed => {
                        "refusing rate-limited requests (rate_limit_store_unavailable) until it is back"
                    }
                };
                tracing::warn!(target: "candor::limits", redis = %self.config.shown_url(), cause = %cause, "the shared rate-limit store {cause}: {fallback}");
                use crate::events::{Event, Severity, kinds};
                let closed = matches!(self.config.on_failure, OnFailure::Closed);
                crate::events::emit_to_process_log(
                    Event::new(
                        kinds::SHARED_STATE_DOWN,
                        if closed {
                            Severity::Critical
                        } else {
                            Severity::Error
                        },
                    )
                    .fact("store", "redis")
                    .fact("address", self.config.shown_url())
                    .fact("cause", cause.as_str())
                    .fact("on_failure", if closed { "closed" } else { "open" })
                    .fact("meanwhile", fallback),
                );
            }
        }
        Unavailable { cause }
    }

    /// The store answered, refusing one command (see [`answered`]): not an outage, so
    /// nothing is marked down (a store marked down is up again) and other keys are counted
    /// as before. Logged at most once a minute, with the `keys` the command used (a rate
    /// limit's are hashes; a failed-attempt count's name its client or address, as the
    /// log's other lines do).
    fn refused(&self, e: &redis::RedisError, keys: &[&str]) -> Unavailable {
        self.recovered();
        let cause = "answered WRONGTYPE: a key candor counts in holds another type of value (does something else write keys under candor:?)";
        let now = self.millis().max(1);
        let last = self.refusal_logged.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 60_000)
            && self
                .refusal_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target: "candor::limits", redis = %self.config.shown_url(), error = %e, keys = %keys.join(" "), "the shared rate-limit store {cause}; it is not marked down (logged at most once a minute)");
        }
        Unavailable {
            cause: cause.to_owned(),
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            let since = self.outage.lock().ok().and_then(|mut o| o.1.take());
            let secs = since.map_or(0, |s| s.elapsed().as_secs());
            tracing::info!(target: "candor::limits", redis = %self.config.shown_url(), down_for_s = secs, "the shared rate-limit store answers again after {secs} s: rate limits are shared again");
            use crate::events::{Event, Severity, kinds};
            crate::events::emit_to_process_log(
                Event::new(kinds::SHARED_STATE_UP, Severity::Info)
                    .fact("store", "redis")
                    .fact("address", self.config.shown_url())
                    .fact("down_for_s", secs),
            );
        }
    }

    /// Records `key` in Redis for `ttl` seconds unless it is there already: true for the
    /// first use of `key` by any gateway sharing the store (one `SET NX EX`).
    /// Used for the JWT-bearer assertion ids, so that an assertion used at one gateway is
    /// refused at every other.
    pub(crate) async fn first_use(&self, key: &str, ttl: i64) -> Result<bool, Unavailable> {
        let mut conn = self.live_connection()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("EX").arg(ttl.max(1));
        let set: Option<String> = self.query(&mut conn, &cmd).await?;
        self.recovered();
        Ok(set.is_some())
    }

    /// Takes `want` cells of every key of `asks` (0: reads them), all or none, in one
    /// script call: whether they were taken, and each key's [`Answer`].
    pub(crate) async fn take(
        &self,
        asks: &[Ask],
        want: u32,
    ) -> Result<(bool, Vec<Answer>), Unavailable> {
        self.ask_redis(asks, &vec![want; asks.len()], false).await
    }

    /// The connection, unless the store is down and not due for another try.
    fn live_connection(&self) -> Result<ConnectionManager, Unavailable> {
        if let Some(u) = self.still_down() {
            return Err(u);
        }
        self.connection()
    }

    /// Runs `cmd` within the store's timeout; a failure marks the store down.
    async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        let t = self.config.timeout;
        match tokio::time::timeout(t, cmd.query_async::<T>(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if answered(&e) => Err(self.refused(&e, &[])),
            Ok(Err(e)) => Err(self.failed(cause_of(&e, t))),
            Err(_) => Err(self.failed(format!(
                "did not answer within {} (limits.shared.timeout)",
                crate::duration::text(t)
            ))),
        }
    }

    /// Deletes `key`: whether it was there.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool, Unavailable> {
        let mut conn = self.live_connection()?;
        let mut del = redis::cmd("DEL");
        del.arg(key);
        let n: usize = self.query(&mut conn, &del).await?;
        self.recovered();
        Ok(n > 0)
    }

    /// One page of a `SCAN MATCH pattern` from `cursor`: the next cursor (0: the end) and
    /// the keys; `Err` too once `deadline` has passed, saying what was `done` by then.
    async fn scan_page(
        &self,
        conn: &mut ConnectionManager,
        cursor: u64,
        pattern: &str,
        deadline: Instant,
        done: impl FnOnce() -> String,
    ) -> Result<(u64, Vec<Vec<u8>>), Unavailable> {
        if Instant::now() >= deadline {
            // Not an outage: the store answers, the keyspace is large. Nothing is marked down.
            return Err(Unavailable {
                cause: format!(
                    "was still being scanned after {} ({}); run the command again for the rest",
                    crate::duration::text(SCAN_DEADLINE),
                    done()
                ),
            });
        }
        // Keys are read as bytes: one that is not UTF-8 (written by something else) matches
        // a pattern as well as candor's own do.
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        self.query(conn, &scan).await
    }

    /// Deletes every key matching `pattern` (a `SCAN MATCH` glob): how many there were.
    /// The whole scan is bounded by [`SCAN_DEADLINE`], each command by the store's timeout.
    pub(crate) async fn delete_matching(&self, pattern: &str) -> Result<usize, Unavailable> {
        let mut conn = self.live_connection()?;
        let deadline = Instant::now() + SCAN_DEADLINE;
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys) = self
                .scan_page(&mut conn, cursor, pattern, deadline, || {
                    format!("{deleted} counts were deleted")
                })
                .await?;
            if !keys.is_empty() {
                let mut del = redis::cmd("DEL");
                del.arg(&keys);
                deleted += self.query::<usize>(&mut conn, &del).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.recovered();
        Ok(deleted)
    }

    /// The keys matching `pattern` (a `SCAN MATCH` glob), at most `max` of them: the keys,
    /// and whether there were more. Bounded by [`SCAN_DEADLINE`] as
    /// [`SharedStore::delete_matching`] is.
    pub(crate) async fn keys_matching(
        &self,
        pattern: &str,
        max: usize,
    ) -> Result<(Vec<String>, bool), Unavailable> {
        let mut conn = self.live_connection()?;
        let deadline = Instant::now() + SCAN_DEADLINE;
        let mut cursor: u64 = 0;
        let mut found: Vec<String> = Vec::new();
        let more = loop {
            let (next, keys) = self
                .scan_page(&mut conn, cursor, pattern, deadline, || {
                    format!("{} keys were read", found.len())
                })
                .await?;
            // Candor's keys are text; another's that is not is none of its counts.
            found.extend(keys.into_iter().filter_map(|k| String::from_utf8(k).ok()));
            if found.len() > max {
                // SCAN may return a key twice (the keyspace changed meanwhile).
                found.sort_unstable();
                found.dedup();
                if found.len() > max {
                    break true;
                }
            }
            if next == 0 {
                break false;
            }
            cursor = next;
        };
        found.sort_unstable();
        found.dedup();
        found.truncate(max);
        self.recovered();
        Ok((found, more))
    }

    /// Seconds until the next try, for `Retry-After`.
    pub(crate) fn retry_after(&self) -> u64 {
        let next = self.next_try.load(Ordering::Relaxed);
        (next.saturating_sub(self.millis()).div_ceil(1000)).max(1)
    }

    /// Checks one request against `asks` (one per policy), counting it in all when none
    /// refuses it: whether it was counted, and each policy's [`Answer`]. In batched mode a
    /// request the gateway's leases cover asks nothing of Redis.
    pub(crate) async fn check(&self, asks: &[Ask]) -> Result<(bool, Vec<Answer>), Unavailable> {
        let lease = match self.config.mode {
            SharedMode::Exact => None,
            SharedMode::Batched { lease } => Some(lease),
        };
        // What each policy wants of Redis: one cell (exact), a lease, or nothing (leased).
        let mut wants: Vec<u32> = vec![1; asks.len()];
        if let Some(size) = lease
            && let Some(answers) = self.draw_on_leases(asks, &mut wants, size)
        {
            return Ok((true, answers));
        }
        let result = self.ask_redis(asks, &wants, lease.is_some()).await;
        if result.is_err() && lease.is_some() {
            // The permits set aside from live leases are this gateway's again.
            self.give_back(asks, &wants);
        }
        result
    }

    /// One script call for `asks`, wanting `wants` of each; the leases kept in batched mode.
    async fn ask_redis(
        &self,
        asks: &[Ask],
        wants: &[u32],
        batched: bool,
    ) -> Result<(bool, Vec<Answer>), Unavailable> {
        let mut conn = self.live_connection()?;
        let mut call = self.script.prepare_invoke();
        for (a, want) in asks.iter().zip(wants) {
            call.key(&a.key).arg(a.t).arg(a.burst).arg(*want);
        }
        let answer = tokio::time::timeout(
            self.config.timeout,
            call.invoke_async::<Vec<i64>>(&mut conn),
        )
        .await;
        let values = match answer {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if answered(&e) => {
                let keys: Vec<&str> = asks.iter().map(|a| a.key.as_str()).collect();
                return Err(self.refused(&e, &keys));
            }
            Ok(Err(e)) => return Err(self.failed(cause_of(&e, self.config.timeout))),
            Err(_) => {
                return Err(self.failed(format!(
                    "did not answer within {} (limits.shared.timeout)",
                    crate::duration::text(self.config.timeout)
                )));
            }
        };
        if values.len() != 1 + 3 * asks.len() {
            return Err(
                self.failed("answered the rate-limit script with an unexpected reply".into())
            );
        }
        self.recovered();
        let counted = values[0] == 1;
        let mut answers: Vec<Answer> = values[1..]
            .chunks(3)
            .map(|p| Answer {
                owed: p[0].max(0) as u64,
                wait: p[1].max(0) as u64,
                leased: p[2].max(0) as u32,
            })
            .collect();
        if batched {
            self.keep_leases(asks, wants, counted, &mut answers);
        } else {
            for a in &mut answers {
                a.leased = 0;
            }
        }
        Ok((counted, answers))
    }

    /// Batched mode: admits the request from this gateway's leases when each policy's
    /// covers it; else sets `wants` to what each policy must lease (`size`, at most a tenth
    /// of its burst; 0 where a lease covers it) and returns `None`.
    fn draw_on_leases(&self, asks: &[Ask], wants: &mut [u32], size: u32) -> Option<Vec<Answer>> {
        let Ok(mut leases) = self.leases.lock() else {
            return None;
        };
        let now = Instant::now();
        let mut covered = true;
        for (a, want) in asks.iter().zip(wants.iter_mut()) {
            let live = leases
                .get(&a.key)
                .is_some_and(|l| l.left > 0 && now.duration_since(l.taken) < LEASE_TIME);
            *want = if live {
                0
            } else {
                covered = false;
                size.min(a.burst / 10).max(1)
            };
        }
        if !covered {
            // Another policy must ask Redis: the permits of the live leases are set aside
            // now, under the lock, so that requests asking at once cannot all count on the
            // same last permit (given back if Redis refuses or fails).
            for (a, want) in asks.iter().zip(wants.iter()) {
                if *want == 0
                    && let Some(l) = leases.get_mut(&a.key)
                {
                    l.left -= 1;
                }
            }
            return None;
        }
        Some(
            asks.iter()
                .map(|a| {
                    let l = leases.get_mut(&a.key).expect("covered");
                    l.left -= 1;
                    let elapsed = now.duration_since(l.taken).as_micros() as u64;
                    Answer {
                        owed: l.owed.saturating_sub(elapsed),
                        wait: 0,
                        leased: l.left,
                    }
                })
                .collect(),
        )
    }

    /// Batched mode, after Redis answered: the request takes one permit of each policy (of
    /// the lease just taken, or of the one held); the rest of a new lease is kept.
    fn keep_leases(&self, asks: &[Ask], wants: &[u32], counted: bool, answers: &mut [Answer]) {
        let Ok(mut leases) = self.leases.lock() else {
            return;
        };
        if leases.len() >= MAX_LEASES {
            leases.retain(|_, l| l.taken.elapsed() < LEASE_TIME);
            if leases.len() >= MAX_LEASES {
                leases.clear();
            }
        }
        let now = Instant::now();
        for ((a, want), answer) in asks.iter().zip(wants).zip(answers.iter_mut()) {
            if !counted {
                // Nothing taken: what the gateway holds is still its own, the permit set
                // aside included.
                if *want == 0
                    && let Some(l) = leases.get_mut(&a.key)
                {
                    l.left = l.left.saturating_add(1);
                }
                answer.leased = leases
                    .get(&a.key)
                    .filter(|l| now.duration_since(l.taken) < LEASE_TIME)
                    .map_or(0, |l| l.left);
                continue;
            }
            if *want > 0 {
                // A lease another request took meanwhile is kept: its permits are added.
                let held = leases
                    .get(&a.key)
                    .filter(|l| now.duration_since(l.taken) < LEASE_TIME)
                    .map_or(0, |l| l.left);
                let left = held.saturating_add(answer.leased.saturating_sub(1));
                leases.insert(
                    a.key.clone(),
                    Lease {
                        left,
                        taken: now,
                        owed: answer.owed,
                    },
                );
                answer.leased = left;
            } else if let Some(l) = leases.get(&a.key) {
                // Covered by the lease held (another policy needed Redis): its permit was
                // set aside in `draw_on_leases`.
                answer.leased = l.left;
            }
        }
    }

    /// Gives back the permits `draw_on_leases` set aside (where `wants` is 0).
    fn give_back(&self, asks: &[Ask], wants: &[u32]) {
        let Ok(mut leases) = self.leases.lock() else {
            return;
        };
        for (a, want) in asks.iter().zip(wants) {
            if *want == 0
                && let Some(l) = leases.get_mut(&a.key)
            {
                l.left = l.left.saturating_add(1);
            }
        }
    }
}

/// A Redis error in words that name no address.
/// Whether `e` is the store's answer to one command rather than a sign that the store
/// cannot be used: a key holding another type of value (`WRONGTYPE`, which only a server
/// that answers can say). An outage is marked down and sends every route to its
/// `on_failure`; this refuses only the requests counted in that key. (A reply candor cannot
/// parse is not one of these: it cannot be told from a broken connection.)
fn answered(e: &redis::RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

fn cause_of(e: &redis::RedisError, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "did not answer within {} (limits.shared.timeout)",
            crate::duration::text(timeout)
        )
    } else if e.is_connection_refusal() {
        "refused the connection (is redis-server running?)".into()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "dropped the connection".into()
    } else {
        match e.code() {
            Some(code) => format!("answered with an error ({code})"),
            None => "failed".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rate::{Limiter, test_policy as policy};

    /// The script's arithmetic, in Rust, on a clock in µs: what Redis would store and
    /// return (the tests below run the real script against a real server when one is
    /// installed).
    fn script_step(tat: &mut Option<u64>, now: u64, t: u64, burst: u64) -> (bool, u64, u64) {
        let cur = tat.unwrap_or(0).max(now);
        let earliest = cur.saturating_sub(t * (burst - 1));
        let wait = earliest.saturating_sub(now);
        if now < earliest {
            return (false, cur - now, wait);
        }
        *tat = Some(cur + t);
        (true, cur + t - now, wait)
    }

    #[test]
    fn the_script_arithmetic_gives_the_local_limiters_fields() {
        // 3 per 30 s: one back every 10 s.
        let p = policy(3, 30, 3);
        let l = Limiter::new(p.clone(), 10);
        let mut tat = None;
        for _ in 0..3 {
            let (ok, owed, wait) = script_step(&mut tat, 1_000_000, 10_000_000, 3);
            let shared = outcome(&p, ok, owed, wait).state;
            let local = l.check(b'i', b"a").unwrap();
            assert_eq!(
                (shared.remaining, shared.reset),
                (local.remaining, local.reset)
            );
        }
        let (ok, owed, wait) = script_step(&mut tat, 1_000_000, 10_000_000, 3);
        assert!(!ok);
        let o = outcome(&p, ok, owed, wait);
        let local = l.check(b'i', b"a").unwrap_err();
        assert_eq!(o.blocked, Some(local.retry_after));
        assert_eq!(
            (o.state.remaining, o.state.reset),
            (local.state.remaining, local.state.reset)
        );
        // 5 s later: still refused, 5 s to wait; 10 s later one is back.
        let (ok, owed, wait) = script_step(&mut tat, 6_000_000, 10_000_000, 3);
        assert_eq!((ok, outcome(&p, ok, owed, wait).blocked), (false, Some(5)));
        let (ok, owed, wait) = script_step(&mut tat, 11_000_000, 10_000_000, 3);
        let o = outcome(&p, ok, owed, wait);
        assert!(ok);
        assert_eq!((o.state.remaining, o.state.reset), (0, 30));
    }

    #[test]
    fn a_policy_not_refusing_is_shown_as_it_stands() {
        let p = policy(1000, 86_400, 1000);
        // 3 counted (owed 3 × 86.4 s), request not counted because another policy refused.
        let o = outcome(&p, false, 259_200_000, 0);
        assert_eq!(
            (o.state.remaining, o.state.reset, o.blocked),
            (997, 260, None)
        );
        assert_eq!(outcome(&p, false, 0, 0).state.remaining, 1000);
    }

    #[test]
    fn keys_are_shared_by_route_and_policy_and_hide_the_value() {
        let a = PolicyKeys::new("r", &policy(3, 30, 3)).ask(b'h', b"tenant-1");
        let b = PolicyKeys::new("r", &policy(3, 30, 3)).ask(b'h', b"tenant-1");
        let c = PolicyKeys::new("r", &policy(4, 30, 4)).ask(b'h', b"tenant-1");
        let d = PolicyKeys::new("r", &policy(3, 30, 3)).ask(b'i', b"tenant-1");
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_ne!(a.key, d.key);
        assert!(a.key.starts_with("candor:rl:") && !a.key.contains("tenant"));
        assert_eq!((a.t, a.burst), (10_000_000, 3));
    }

    /// A redis-server of the test's own on a free loopback port; killed when dropped.
    struct Server(std::process::Child, u16, std::path::PathBuf);

    impl Server {
        fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = std::env::temp_dir().join(format!("candor-redis-unit-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Server(child, port, dir)
        }

        /// A store in exact mode on this server, refusing while it is down.
        fn exact_store(&self) -> SharedStore {
            SharedStore::new(SharedConfig {
                redis: format!("redis://127.0.0.1:{}", self.1),
                mode: SharedMode::Exact,
                on_failure: OnFailure::Closed,
                timeout: Duration::from_secs(5),
            })
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }

    #[tokio::test]
    async fn the_script_on_a_real_redis_matches_the_local_limiter() {
        let server = Server::start();
        let store = server.exact_store();
        let burst = policy(3, 30, 3);
        let keys = PolicyKeys::new("r", &burst);
        let local = Limiter::new(burst.clone(), 10);
        for _ in 0..3 {
            let (counted, a) = store.check(&[keys.ask(b'i', b"a")]).await.unwrap();
            let shared = outcome(&burst, counted, a[0].owed, a[0].wait).state;
            let l = local.check(b'i', b"a").unwrap();
            assert!(counted);
            assert_eq!((shared.remaining, shared.reset), (l.remaining, l.reset));
        }
        let (counted, a) = store.check(&[keys.ask(b'i', b"a")]).await.unwrap();
        let o = outcome(&burst, counted, a[0].owed, a[0].wait);
        let l = local.check(b'i', b"a").unwrap_err();
        assert!(!counted);
        assert_eq!(o.blocked, Some(l.retry_after));
        assert_eq!(o.state.reset, l.state.reset);

        // The key expires when its bucket is full again: within the window.
        let client = redis::Client::open(store.config.redis.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = keys.ask(b'i', b"a").key;
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((29_000..=30_000).contains(&pttl), "{pttl}");

        // Two policies: one refusing means neither counts.
        let daily = PolicyConfig {
            name: "daily".into(),
            ..policy(1000, 86_400, 1000)
        };
        let dkeys = PolicyKeys::new("r", &daily);
        let (counted, a) = store
            .check(&[keys.ask(b'i', b"a"), dkeys.ask(b'i', b"a")])
            .await
            .unwrap();
        assert!(!counted);
        let d = outcome(&daily, counted, a[1].owed, a[1].wait);
        assert_eq!((d.state.remaining, d.blocked), (1000, None));
        let (counted, _) = store
            .check(&[keys.ask(b'i', b"b"), dkeys.ask(b'i', b"a")])
            .await
            .unwrap();
        assert!(counted);

        // Batched: a lease of at most a tenth of the burst (3 of 30), drawn on locally; the
        // fields count the lease as this gateway's requests left.
        let batched = SharedStore::new(SharedConfig {
            mode: SharedMode::Batched { lease: 100 },
            ..store.config.clone()
        });
        let p30 = policy(30, 30, 30);
        let k30 = PolicyKeys::new("r", &p30);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (counted, a) = batched.check(&[k30.ask(b'i', b"z")]).await.unwrap();
            assert!(counted);
            let o = outcome_leased(&p30, counted, a[0].owed, a[0].wait, a[0].leased);
            seen.push((a[0].leased, o.state.remaining));
        }
        assert_eq!(seen, [(2, 29), (1, 28), (0, 27), (2, 26)]);
        let owed: u64 = {
            let key = k30.ask(b'i', b"z").key;
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            pttl as u64
        };
        // Six cells taken in Redis (two leases of 3), one a second.
        assert!((5_000..=6_000).contains(&owed), "{owed}");

        // After the script cache is flushed (as by a restart), EVALSHA's NOSCRIPT loads it
        // again.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        let (counted, a) = store.check(&[keys.ask(b'i', b"c")]).await.unwrap();
        assert!(counted && a[0].owed > 0);
    }

    #[tokio::test]
    async fn keys_others_wrote_are_refused_one_by_one_not_taken_for_an_outage() {
        let server = Server::start();
        let store = server.exact_store();
        let client = redis::Client::open(store.config.redis.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let burst = policy(3, 30, 3);
        let keys = PolicyKeys::new("r", &burst);

        // Something else made one client's count a hash.
        let taken = keys.ask(b'i', b"a").key;
        let _: () = redis::cmd("HSET")
            .arg(&taken)
            .arg("x")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let refused = store.check(&[keys.ask(b'i', b"a")]).await.unwrap_err();
        assert!(refused.cause.contains("WRONGTYPE"), "{}", refused.cause);
        assert!(!store.down.load(Ordering::Relaxed), "not an outage");
        // Every other key is counted as before, with no wait for a retry interval.
        let (counted, _) = store.check(&[keys.ask(b'i', b"b")]).await.unwrap();
        assert!(counted);

        // A key under candor's prefix that is not UTF-8: listed as none of candor's,
        // deleted with the rest, and the store stays up.
        for key in [&b"candor:fa:a:\xff\xfe"[..], b"candor:fa:a:6869:5:60"] {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(1)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let (found, more) = store.keys_matching("candor:fa:*", 10).await.unwrap();
        assert_eq!(
            (found, more),
            (vec!["candor:fa:a:6869:5:60".to_owned()], false)
        );
        assert_eq!(store.delete_matching("candor:fa:*").await.unwrap(), 2);
        assert!(!store.down.load(Ordering::Relaxed));
    }

    #[test]
    fn the_url_is_shown_without_its_password() {
        let c = |u: &str| SharedConfig {
            redis: u.into(),
            mode: SharedMode::Exact,
            on_failure: OnFailure::Open,
            timeout: Duration::from_millis(250),
        };
        assert_eq!(
            c("redis://app:s3cret@10.0.0.1:6379/0").shown_url(),
            "redis://app:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            c("redis://127.0.0.1:6379").shown_url(),
            "redis://127.0.0.1:6379"
        );
    }
}
