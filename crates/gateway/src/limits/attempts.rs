//! Limits of the token endpoint: failed client authentications counted per client id and
//! per source address (`too_many_failed_attempts`), and the JWT-bearer assertion ids already
//! used (`assertion_replayed`).

use super::rate::{KeyBy, Limiter, PolicyConfig, Registry, address_key};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a failed-attempt count is kept by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BlockKind {
    /// The client id sent (known or not).
    Client,
    /// The source address (IPv6 by its /64).
    Address,
}

impl BlockKind {
    /// `client`, `address`: in the admin API's paths and bodies and the CLI's arguments.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BlockKind::Client => "client",
            BlockKind::Address => "address",
        }
    }

    /// `client_id`, `address`: what the key is, in words.
    pub(crate) fn words(self) -> &'static str {
        match self {
            BlockKind::Client => "client_id",
            BlockKind::Address => "address",
        }
    }

    /// The word of the admin API and the CLI.
    pub(crate) fn parse(s: &str) -> Option<BlockKind> {
        match s {
            "client" => Some(BlockKind::Client),
            "address" => Some(BlockKind::Address),
            _ => None,
        }
    }

    fn tag(self) -> u8 {
        match self {
            BlockKind::Client => b'c',
            BlockKind::Address => b'a',
        }
    }
}

/// A key refused now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// What the key is.
    pub(crate) kind: BlockKind,
    /// The key as a person reads and types it: the client id, or the address
    /// (`2001:db8::/64` for IPv6).
    pub(crate) key: String,
    /// Failures counted now (they come back one per `window / limit`).
    pub(crate) failures: u32,
    /// The failures allowed per window for this kind of key.
    pub(crate) limit: u32,
    /// Seconds until the next attempt is accepted, at least 1.
    pub(crate) retry_after: i64,
}

impl Block {
    /// The key as the CLI and the admin API's path take it: the client id, or the address
    /// without its `/64`.
    pub(crate) fn argument(&self) -> &str {
        self.key.strip_suffix("/64").unwrap_or(&self.key)
    }
}

/// The most readable key names kept for listing blocks; the counting itself is bounded by
/// the limiters' own key cap.
const MAX_NAMES: usize = 10_000;
/// Client ids longer than this are listed cut (no real client id is that long).
const MAX_NAME_CHARS: usize = 256;

/// Counts failed client authentications per client id and per source address, with the
/// rate limits' machinery: a GCRA bucket of `limit` failures that refills one failure per
/// `window / limit`, so that a blocked key gets one more try as soon as one is due.
///
/// Client ids have the lower limit (`auth.max_failed_attempts`): one client's typos block
/// that client id only. Addresses have a higher one (`auth.max_failed_attempts_per_address`)
/// against spraying many ids from one place; a blocked address is refused for every
/// client id, before any secret is checked (no argon2 work, and no answer that tells a known
/// id from an unknown one).
///
/// The limits follow configuration reloads ([`FailedAttempts::configure`]); a limit that is
/// unchanged keeps its counts.
#[derive(Debug)]
pub(crate) struct FailedAttempts {
    limits: arc_swap::ArcSwap<Limits>,
    /// The readable name of each key with failures, for listing (bounded by `MAX_NAMES`).
    names: Mutex<HashMap<(BlockKind, Vec<u8>), String>>,
}

/// The two limiters of one configuration.
#[derive(Debug)]
struct Limits {
    per_client: Arc<Limiter>,
    per_address: Arc<Limiter>,
    window: Duration,
}

impl Limits {
    fn new(per_client: u32, per_address: u32, window: Duration, registry: &Registry) -> Limits {
        let window = window.max(Duration::from_secs(1));
        let limiter = |name: &str, max: u32| {
            let policy = PolicyConfig {
                name: name.into(),
                limit: max.max(1),
                window,
                burst: max.max(1),
                key: KeyBy::Address,
            };
            registry.limiter("candor.token_endpoint", &policy, 100_000)
        };
        Limits {
            per_client: limiter("failed_attempts_per_client", per_client),
            per_address: limiter("failed_attempts_per_address", per_address),
            window,
        }
    }

    fn limiter(&self, kind: BlockKind) -> &Arc<Limiter> {
        match kind {
            BlockKind::Client => &self.per_client,
            BlockKind::Address => &self.per_address,
        }
    }
}

impl FailedAttempts {
    /// At most `per_client` failures per client id and `per_address` per address in
    /// `window`; the limiters are filed in `registry`, which evicts idle keys.
    pub(crate) fn new(
        per_client: u32,
        per_address: u32,
        window: Duration,
        registry: &Registry,
    ) -> Self {
        FailedAttempts {
            limits: arc_swap::ArcSwap::from_pointee(Limits::new(
                per_client,
                per_address,
                window,
                registry,
            )),
            names: Mutex::default(),
        }
    }

    /// Applies a reloaded configuration's limits: a limit whose value and window are
    /// unchanged keeps its counts (the registry hands the same limiter back), a changed one
    /// starts afresh.
    pub(crate) fn configure(
        &self,
        per_client: u32,
        per_address: u32,
        window: Duration,
        registry: &Registry,
    ) {
        let next = Limits::new(per_client, per_address, window, registry);
        let now = self.limits.load();
        if !Arc::ptr_eq(&now.per_client, &next.per_client)
            || !Arc::ptr_eq(&now.per_address, &next.per_address)
        {
            self.limits.store(Arc::new(next));
        }
    }

    /// The window failures are counted in.
    pub(crate) fn window(&self) -> Duration {
        self.limits.load().window
    }

    fn limiter(&self, kind: BlockKind) -> Arc<Limiter> {
        self.limits.load().limiter(kind).clone()
    }

    /// The key's state, if it is blocked now.
    fn block_of(&self, kind: BlockKind, key: &[u8], name: &str) -> Option<Block> {
        let l = self.limiter(kind);
        let wait = l.blocked_own(kind.tag(), key)?;
        let state = l.peek(kind.tag(), key);
        Some(Block {
            kind,
            key: name.to_owned(),
            failures: state.limit.saturating_sub(state.remaining),
            limit: state.limit,
            retry_after: crate::time::ceil_secs(wait).max(1) as i64,
        })
    }

    /// Whether an attempt with `client` (if one was sent) from `peer` is refused now: the
    /// block that ends last (the one `Retry-After` must wait for; the address on a tie).
    pub(crate) fn check(&self, client: Option<&str>, peer: IpAddr) -> Option<Block> {
        let address = self.block_of(BlockKind::Address, &address_key(peer), &address_name(peer));
        let client = client.and_then(|c| self.block_of(BlockKind::Client, c.as_bytes(), c));
        match (address, client) {
            (Some(a), Some(c)) if c.retry_after > a.retry_after => Some(c),
            (Some(a), _) => Some(a),
            (None, c) => c,
        }
    }

    /// Counts a failure of `client` (if one was sent) and of `peer`.
    pub(crate) fn fail(&self, client: Option<&str>, peer: IpAddr) {
        let limits = self.limits.load();
        let a = address_key(peer);
        let _ = limits.per_address.check(BlockKind::Address.tag(), &a);
        self.remember(BlockKind::Address, a, || address_name(peer));
        if let Some(c) = client {
            let _ = limits
                .per_client
                .check(BlockKind::Client.tag(), c.as_bytes());
            self.remember(BlockKind::Client, c.as_bytes().to_vec(), || {
                let mut n: String = c.chars().take(MAX_NAME_CHARS).collect();
                if n.len() < c.len() {
                    n.push('…');
                }
                n
            });
        }
    }

    /// Forgets `client`'s failures after it authenticated. Its address keeps its count: a
    /// sprayer holding one valid client must not wipe it with a success.
    pub(crate) fn succeed(&self, client: &str) {
        self.limits
            .load()
            .per_client
            .forget(BlockKind::Client.tag(), client.as_bytes());
    }

    fn remember(&self, kind: BlockKind, key: Vec<u8>, name: impl FnOnce() -> String) {
        let Ok(mut names) = self.names.lock() else {
            return;
        };
        if names.contains_key(&(kind, key.clone())) {
            return;
        }
        if names.len() >= MAX_NAMES {
            self.prune(&mut names);
        }
        if names.len() < MAX_NAMES {
            names.insert((kind, key), name());
        }
    }

    /// Drops the names of keys the limiters no longer hold (their failures have all come
    /// back, or idle keys were evicted).
    fn prune(&self, names: &mut HashMap<(BlockKind, Vec<u8>), String>) {
        names.retain(|(kind, key), _| {
            let l = self.limiter(*kind);
            l.peek(kind.tag(), key).remaining < l.policy.burst.max(1)
        });
    }

    /// Every key blocked now, addresses first, then by key.
    pub(crate) fn list(&self) -> Vec<Block> {
        let Ok(mut names) = self.names.lock() else {
            return Vec::new();
        };
        self.prune(&mut names);
        let mut out: Vec<Block> = names
            .iter()
            .filter_map(|((kind, key), name)| self.block_of(*kind, key, name))
            .collect();
        out.sort_by(|a, b| {
            (b.kind == BlockKind::Address, &a.key).cmp(&(a.kind == BlockKind::Address, &b.key))
        });
        out
    }

    /// The bytes `key` (as a person types it) is counted under; `None` if it is not an
    /// address of its kind.
    fn key_bytes(kind: BlockKind, key: &str) -> Option<Vec<u8>> {
        match kind {
            BlockKind::Client => Some(key.as_bytes().to_vec()),
            BlockKind::Address => {
                let ip: IpAddr = key.trim().trim_end_matches("/64").parse().ok()?;
                Some(address_key(ip))
            }
        }
    }

    /// Forgets `key`'s failures. `Err` if `key` is not an address (for that kind);
    /// `Ok(None)` if no failures were counted for it; else whether it was blocked.
    pub(crate) fn clear(&self, kind: BlockKind, key: &str) -> Result<Option<bool>, ()> {
        let bytes = Self::key_bytes(kind, key).ok_or(())?;
        let l = self.limiter(kind);
        let was_blocked = l.blocked_own(kind.tag(), &bytes).is_some();
        let held = l.forget(kind.tag(), &bytes);
        if let Ok(mut names) = self.names.lock() {
            names.remove(&(kind, bytes));
        }
        Ok(held.then_some(was_blocked))
    }

    /// Forgets every failure; returns how many keys were blocked.
    pub(crate) fn clear_all(&self) -> usize {
        let blocked = self.list().len();
        let limits = self.limits.load();
        limits.per_client.forget_all();
        limits.per_address.forget_all();
        if let Ok(mut names) = self.names.lock() {
            names.clear();
        }
        blocked
    }

    /// The failures allowed per window: per client id, per address.
    pub(crate) fn limits(&self) -> (u32, u32) {
        let limits = self.limits.load();
        (
            limits.per_client.policy.limit,
            limits.per_address.policy.limit,
        )
    }
}

/// An address as it is counted: IPv4 whole, IPv6 as its /64.
pub(crate) fn address_name(peer: IpAddr) -> String {
    match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                format!("{}/64", std::net::Ipv6Addr::from(o))
            }
        },
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attempts_are_counted_per_window() {
        let f = FailedAttempts::new(2, 20, Duration::from_secs(60), &Registry::default());
        let peer = ip("127.0.0.1");
        f.fail(Some("k"), peer);
        assert_eq!(f.check(Some("k"), peer), None);
        f.fail(Some("k"), peer);
        // One failure comes back every 30 s.
        let b = f.check(Some("k"), peer).unwrap();
        assert_eq!(
            (b.kind, b.key.as_str(), b.failures, b.limit, b.retry_after),
            (BlockKind::Client, "k", 2, 2, 30)
        );
        assert_eq!(f.check(Some("other"), peer), None);
        f.succeed("k");
        assert_eq!(f.check(Some("k"), peer), None);
    }

    #[test]
    fn a_reload_applies_new_limits_and_keeps_unchanged_counts() {
        let registry = Registry::default();
        let f = FailedAttempts::new(2, 20, Duration::from_secs(60), &registry);
        let peer = ip("127.0.0.1");
        f.fail(Some("k"), peer);
        f.configure(2, 20, Duration::from_secs(60), &registry);
        f.fail(Some("k"), peer);
        assert!(
            f.check(Some("k"), peer).is_some(),
            "the same limits keep counting"
        );
        f.configure(3, 20, Duration::from_secs(60), &registry);
        assert_eq!(f.limits(), (3, 20));
        assert_eq!(
            f.check(Some("k"), peer),
            None,
            "a changed limit starts afresh"
        );
    }

    #[test]
    fn one_clients_typos_leave_other_clients_of_the_address_alone() {
        let f = FailedAttempts::new(3, 30, Duration::from_secs(300), &Registry::default());
        let peer = ip("127.0.0.1");
        for _ in 0..3 {
            f.fail(Some("typo"), peer);
        }
        assert_eq!(f.check(Some("typo"), peer).unwrap().kind, BlockKind::Client);
        assert_eq!(f.check(Some("valid"), peer), None);
        assert_eq!(f.check(None, peer), None);
        // A spray of made-up ids: the address is blocked at its own, higher, limit.
        for i in 0..26 {
            f.fail(Some(&format!("id{i}")), peer);
        }
        assert_eq!(f.check(Some("valid"), peer), None);
        f.fail(Some("id26"), peer);
        let b = f.check(Some("valid"), peer).unwrap();
        assert_eq!(
            (b.kind, b.key.as_str(), b.failures),
            (BlockKind::Address, "127.0.0.1", 30)
        );
        // A success does not reset the address.
        f.succeed("valid");
        assert!(f.check(Some("valid"), peer).is_some());
        assert_eq!(f.check(Some("valid"), ip("127.0.0.2")), None);
    }

    #[test]
    fn blocks_are_listed_and_cleared() {
        let f = FailedAttempts::new(1, 2, Duration::from_secs(60), &Registry::default());
        let v6 = ip("2001:db8:1:2::5");
        f.fail(Some("a"), v6);
        f.fail(Some("b"), v6);
        f.fail(Some("c"), ip("10.0.0.1"));
        let list = f.list();
        let keys: Vec<(&str, &str)> = list
            .iter()
            .map(|b| (b.kind.as_str(), b.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("address", "2001:db8:1:2::/64"),
                ("client", "a"),
                ("client", "b"),
                ("client", "c")
            ]
        );
        assert_eq!(list[0].argument(), "2001:db8:1:2::");
        // The same /64 by any address in it, with or without the prefix length.
        assert_eq!(
            f.clear(BlockKind::Address, "2001:db8:1:2::9/64"),
            Ok(Some(true))
        );
        assert_eq!(f.clear(BlockKind::Address, "2001:db8:1:2::9"), Ok(None));
        assert_eq!(f.clear(BlockKind::Address, "not an address"), Err(()));
        // 10.0.0.1 has one failure of two: counted, not blocked.
        assert_eq!(f.clear(BlockKind::Address, "10.0.0.1"), Ok(Some(false)));
        assert_eq!(f.clear(BlockKind::Client, "a"), Ok(Some(true)));
        assert_eq!(f.clear(BlockKind::Client, "nobody"), Ok(None));
        assert_eq!(f.clear_all(), 2);
        assert!(f.list().is_empty());
        assert_eq!(f.check(Some("b"), v6), None);
    }

    #[test]
    fn the_list_of_names_is_bounded() {
        let f = FailedAttempts::new(5, 1_000_000, Duration::from_secs(60), &Registry::default());
        for i in 0..(MAX_NAMES + 50) {
            f.fail(Some(&format!("id{i}")), ip("10.0.0.1"));
        }
        assert!(f.names.lock().unwrap().len() <= MAX_NAMES);
        let long = "x".repeat(1000);
        f.clear_all();
        for _ in 0..5 {
            f.fail(Some(&long), ip("10.0.0.1"));
        }
        let listed = f.list();
        assert_eq!(listed[0].key.chars().count(), MAX_NAME_CHARS + 1);
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
            limits: arc_swap::ArcSwap::from_pointee(Limits {
                per_client: Arc::new(Limiter::new(policy.clone(), 2)),
                per_address: Arc::new(Limiter::new(policy, 2)),
                window: Duration::from_secs(60),
            }),
            names: Mutex::default(),
        };
        for k in ["a", "b", "c", "d"] {
            f.limiter(BlockKind::Client).check(b'c', k.as_bytes()).ok();
        }
        assert!(f.check(Some("a"), ip("10.9.9.9")).is_some());
        assert_eq!(f.check(Some("someone-else"), ip("10.9.9.9")), None);
    }
}
