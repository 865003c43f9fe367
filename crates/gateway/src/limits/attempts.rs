//! Limits of the token endpoint: failed client authentications counted per client id and
//! source address, and per source address (`too_many_failed_attempts`), and the JWT-bearer
//! assertion ids already used (`assertion_replayed`).

use super::rate::{KeyBy, Limiter, PolicyConfig, Registry, address_key};
use super::shared::{Ask, SharedStore, ask_for, outcome_leased, push_hex};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a failed-attempt count is kept by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BlockKind {
    /// The client id sent (known or not), from one source address (IPv6 by its /64):
    /// client ids are not secret, so failures elsewhere must not block the client here.
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

    /// `client_id`, `address`: what the key names, in words.
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
    /// For a client block, the address it is blocked from (`2001:db8::/64` for IPv6).
    pub(crate) address: Option<String>,
    /// Failures counted now (they come back one per `window / limit`).
    pub(crate) failures: u32,
    /// The failures allowed per window for this kind of key.
    pub(crate) limit: u32,
    /// Seconds until the next attempt is accepted, at least 1.
    pub(crate) retry_after: i64,
}

impl Block {
    /// The order blocks are listed in: addresses first, then client ids, each by key (and
    /// address).
    pub(crate) fn listing_order(&self, other: &Block) -> std::cmp::Ordering {
        (other.kind == BlockKind::Address, &self.key, &self.address).cmp(&(
            self.kind == BlockKind::Address,
            &other.key,
            &other.address,
        ))
    }

    /// The key as the CLI and the admin API's path take it: the client id, or the address
    /// without its `/64`.
    pub(crate) fn argument(&self) -> &str {
        self.key.strip_suffix("/64").unwrap_or(&self.key)
    }
}

/// The most readable key names kept for listing blocks; the counting itself is bounded by
/// the limiters' own key cap.
pub(crate) const MAX_NAMES: usize = 10_000;
/// The most keys each limiter holds. Past that, failures of keys it does not hold are not
/// counted on their own and never block (fail-open: a store filled with made-up keys must
/// not lock out everyone else); that is logged at most once a minute.
pub(crate) const MAX_KEYS: usize = 100_000;
/// Client ids longer than this are listed cut (no real client id is that long).
const MAX_NAME_CHARS: usize = 256;

/// Counts failed client authentications per (client id, source address) and per source
/// address, with the rate limits' machinery: a GCRA bucket of `limit` failures that refills
/// one failure per `window / limit`, so that a blocked key gets one more try as soon as one
/// is due.
///
/// A client id from one address has the lower limit (`auth.max_failed_attempts`): one
/// client's typos block that client id from that address only, and someone elsewhere who
/// knows the id (it is not secret: a token's `sub` carries it) cannot lock the client out.
/// Addresses have a higher one (`auth.max_failed_attempts_per_address`)
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
    names: Mutex<Names>,
    /// When a failure that was not counted (the store full) was last logged, Unix seconds.
    full_warned: AtomicI64,
}

/// The readable names of the keys with failures, and the failures whose key could not be
/// listed because `MAX_NAMES` were already.
#[derive(Debug, Default)]
struct Names {
    map: HashMap<(BlockKind, Vec<u8>), Name>,
    /// Failures of keys not listed, since `last_unlisted` minus less than a window.
    unlisted: u64,
    last_unlisted: Option<Instant>,
}

/// A key's readable name: the client id or the address, and a client's address.
#[derive(Debug, Clone)]
struct Name {
    key: String,
    address: Option<String>,
}

/// The bytes a client id is counted under from `address` (an [`address_key`]): its length,
/// the address, then the id, so that no two pairs share them.
fn client_key(client: &str, address: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + address.len() + client.len());
    k.push(address.len() as u8);
    k.extend_from_slice(address);
    k.extend_from_slice(client.as_bytes());
    k
}

/// The address part of a [`client_key`].
fn address_of(client_key: &[u8]) -> &[u8] {
    let n = client_key.first().map_or(0, |&n| usize::from(n));
    client_key.get(1..1 + n).unwrap_or_default()
}

/// A client id as it is listed: cut at `MAX_NAME_CHARS`.
fn client_name(c: &str) -> String {
    let mut n: String = c.chars().take(MAX_NAME_CHARS).collect();
    if n.len() < c.len() {
        n.push('…');
    }
    n
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
            registry.limiter(super::rate::FAIL_OPEN_ROUTE, &policy, MAX_KEYS)
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
            full_warned: AtomicI64::new(0),
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
    fn block_of(&self, kind: BlockKind, key: &[u8], name: &Name) -> Option<Block> {
        let l = self.limiter(kind);
        let wait = l.blocked_own(kind.tag(), key)?;
        let state = l.peek(kind.tag(), key);
        Some(Block {
            kind,
            key: name.key.clone(),
            address: name.address.clone(),
            failures: state.limit.saturating_sub(state.remaining),
            limit: state.limit,
            retry_after: crate::time::ceil_secs(wait).max(1) as i64,
        })
    }

    /// Whether an attempt with `client` (if one was sent) from `peer` is refused now: the
    /// block that ends last (the one `Retry-After` must wait for; the address on a tie).
    pub(crate) fn check(&self, client: Option<&str>, peer: IpAddr) -> Option<Block> {
        let a = address_key(peer);
        let address = self.block_of(
            BlockKind::Address,
            &a,
            &Name {
                key: address_name(peer),
                address: None,
            },
        );
        let client = client.and_then(|c| {
            self.block_of(
                BlockKind::Client,
                &client_key(c, &a),
                &Name {
                    key: c.to_owned(),
                    address: Some(address_name(peer)),
                },
            )
        });
        match (address, client) {
            (Some(a), Some(c)) if c.retry_after > a.retry_after => Some(c),
            (Some(a), _) => Some(a),
            (None, c) => c,
        }
    }

    /// Counts a failure of `client` (if one was sent) from `peer`, and of `peer`. A client
    /// id is counted from this address only: an unverified one (a JWT-bearer assertion's
    /// `iss`, a made-up Basic id) never counts against the real client elsewhere.
    pub(crate) fn fail(&self, client: Option<&str>, peer: IpAddr) {
        let limits = self.limits.load();
        let a = address_key(peer);
        self.count(&limits.per_address, BlockKind::Address, &a);
        if let Some(c) = client {
            let k = client_key(c, &a);
            self.count(&limits.per_client, BlockKind::Client, &k);
            self.remember(BlockKind::Client, k, || Name {
                key: client_name(c),
                address: Some(address_name(peer)),
            });
        }
        self.remember(BlockKind::Address, a, || Name {
            key: address_name(peer),
            address: None,
        });
    }

    /// Counts one failure of `key`; a key the full store does not hold is not counted on
    /// its own (fail-open), which is logged.
    fn count(&self, limiter: &Limiter, kind: BlockKind, key: &[u8]) {
        let _ = limiter.check(kind.tag(), key);
        if !limiter.holds(kind.tag(), key) {
            self.warn_full(kind);
        }
    }

    /// Logs, at most once a minute, that failures go uncounted; whether it logged now.
    fn warn_full(&self, kind: BlockKind) -> bool {
        let now = crate::time::unix_now();
        let last = self.full_warned.load(Ordering::Relaxed);
        if now - last < 60
            || self
                .full_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        tracing::warn!(
            target: "candor::token_endpoint",
            kind = kind.as_str(),
            max_keys = MAX_KEYS,
            "the token endpoint's failed-attempt store is full: failures of client ids and addresses it does not hold yet are not counted and do not block (it fails open rather than lock everyone out) until idle keys are evicted; many made-up client ids or addresses are failing (check the log for invalid_client), and `candor blocks clear --all` empties the store"
        );
        true
    }

    /// Forgets `client`'s failures from `peer` after it authenticated there. The address
    /// keeps its count: a sprayer holding one valid client must not wipe it with a success.
    pub(crate) fn succeed(&self, client: &str, peer: IpAddr) {
        self.limits.load().per_client.forget(
            BlockKind::Client.tag(),
            &client_key(client, &address_key(peer)),
        );
    }

    fn remember(&self, kind: BlockKind, key: Vec<u8>, name: impl FnOnce() -> Name) {
        let Ok(mut names) = self.names.lock() else {
            return;
        };
        if names.map.contains_key(&(kind, key.clone())) {
            return;
        }
        if names.map.len() >= MAX_NAMES {
            self.prune(&mut names.map);
        }
        if names.map.len() < MAX_NAMES {
            names.map.insert((kind, key), name());
        } else {
            let window = self.window();
            if names.last_unlisted.is_some_and(|t| t.elapsed() > window) {
                names.unlisted = 0;
            }
            names.unlisted += 1;
            names.last_unlisted = Some(Instant::now());
        }
    }

    /// Drops the names of keys the limiters no longer hold (their failures have all come
    /// back, or idle keys were evicted).
    fn prune(&self, names: &mut HashMap<(BlockKind, Vec<u8>), Name>) {
        names.retain(|(kind, key), _| {
            let l = self.limiter(*kind);
            l.peek(kind.tag(), key).remaining < l.policy.burst.max(1)
        });
    }

    /// Every key blocked now, addresses first, then by key and address.
    pub(crate) fn list(&self) -> Vec<Block> {
        let Ok(mut names) = self.names.lock() else {
            return Vec::new();
        };
        self.prune(&mut names.map);
        let mut out: Vec<Block> = names
            .map
            .iter()
            .filter_map(|((kind, key), name)| self.block_of(*kind, key, name))
            .collect();
        out.sort_by(Block::listing_order);
        out
    }

    /// Failures within the last window whose key is not listed, because [`MAX_NAMES`] keys
    /// were already: while it is not 0, [`FailedAttempts::list`] may miss blocks.
    pub(crate) fn unlisted(&self) -> u64 {
        let Ok(mut names) = self.names.lock() else {
            return 0;
        };
        let window = self.window();
        if names.last_unlisted.is_some_and(|t| t.elapsed() > window) {
            names.unlisted = 0;
            names.last_unlisted = None;
        }
        names.unlisted
    }

    /// The bytes `key` (as a person types it) is counted under: for a client id, under
    /// each address it has failures listed from; `None` if it is not an address (for that
    /// kind).
    fn key_bytes(&self, kind: BlockKind, key: &str) -> Option<Vec<Vec<u8>>> {
        match kind {
            BlockKind::Client => {
                let names = self.names.lock().ok()?;
                Some(
                    names
                        .map
                        .keys()
                        .filter(|(k, b)| {
                            *k == BlockKind::Client && *b == client_key(key, address_of(b))
                        })
                        .map(|(_, b)| b.clone())
                        .collect(),
                )
            }
            BlockKind::Address => {
                let ip: IpAddr = key.trim().trim_end_matches("/64").parse().ok()?;
                Some(vec![address_key(ip)])
            }
        }
    }

    /// Forgets `key`'s failures: an address's, or a client id's from every address.
    /// `Err` if `key` is not an address (for that kind); `Ok(None)` if no failures were
    /// counted for it; else whether it was blocked (from any address).
    pub(crate) fn clear(&self, kind: BlockKind, key: &str) -> Result<Option<bool>, ()> {
        let l = self.limiter(kind);
        let (mut held, mut was_blocked) = (false, false);
        for bytes in self.key_bytes(kind, key).ok_or(())? {
            was_blocked |= l.blocked_own(kind.tag(), &bytes).is_some();
            held |= l.forget(kind.tag(), &bytes);
            if let Ok(mut names) = self.names.lock() {
                names.map.remove(&(kind, bytes));
            }
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
            *names = Names::default();
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

/// Failed attempts shared by the gateways (`[limits.shared]`): each failure is counted in
/// Redis as well as in this gateway's own limiters (GCRA, the same arithmetic), and an
/// attempt is refused when either says so, so a client or address cannot multiply its
/// tries by spreading them over the gateways. While Redis is unreachable the own limiters
/// go on alone. Keys begin with what they count, in hex (no `:` or glob character inside):
/// `candor:fa:a:HEX(ADDRESS):LIMIT:WINDOW` and `candor:fa:c:HEX(CLIENT):HEX(ADDRESS):LIMIT:WINDOW`
/// (a changed limit starts afresh, as locally), so that a block can be lifted by client or
/// address at every gateway with a pattern that matches no other key.
impl FailedAttempts {
    fn shared_asks(&self, client: Option<&str>, peer: IpAddr) -> Vec<(Ask, Name, BlockKind)> {
        let limits = self.limits.load();
        let address = address_name(peer);
        let hex_address = shared_part(&address);
        let mut out = Vec::with_capacity(2);
        let p = &limits.per_address.policy;
        out.push((
            ask_for(
                format!(
                    "candor:fa:a:{hex_address}:{}:{}",
                    p.limit,
                    p.window.as_secs()
                ),
                p,
            ),
            Name {
                key: address.clone(),
                address: None,
            },
            BlockKind::Address,
        ));
        if let Some(c) = client {
            out.push((
                ask_for(self.shared_client_key(c, peer), &limits.per_client.policy),
                Name {
                    key: client_name(c),
                    address: Some(address),
                },
                BlockKind::Client,
            ));
        }
        out
    }

    /// The shared key of `client`'s failures from `peer`.
    pub(crate) fn shared_client_key(&self, client: &str, peer: IpAddr) -> String {
        let limits = self.limits.load();
        let p = &limits.per_client.policy;
        format!(
            "candor:fa:c:{}:{}:{}:{}",
            shared_part(client),
            shared_part(&address_name(peer)),
            p.limit,
            p.window.as_secs()
        )
    }

    /// [`FailedAttempts::check`] in the shared store: the block that ends last, if any
    /// (none while the store is unreachable).
    pub(crate) async fn check_shared(
        &self,
        store: &SharedStore,
        client: Option<&str>,
        peer: IpAddr,
    ) -> Option<Block> {
        let keys = self.shared_asks(client, peer);
        let asks: Vec<Ask> = keys.iter().map(|k| k.0.clone()).collect();
        let (_, answers) = store.take(&asks, 0).await.ok()?;
        let limits = self.limits.load();
        let mut found: Option<Block> = None;
        for ((_, name, kind), a) in keys.into_iter().zip(answers) {
            let Some(b) = shared_block(&limits.limiter(kind).policy, kind, name, &a) else {
                continue;
            };
            // The block that ends last; the address on a tie (it comes first).
            if found.as_ref().is_none_or(|f| b.retry_after > f.retry_after) {
                found = Some(b);
            }
        }
        found
    }

    /// Counts a failure in the shared store too (see [`FailedAttempts::fail`]): each key on
    /// its own, as locally (a client id whose count is full must not stop its address's
    /// from counting).
    pub(crate) async fn fail_shared(
        &self,
        store: &SharedStore,
        client: Option<&str>,
        peer: IpAddr,
    ) {
        for (ask, _, _) in self.shared_asks(client, peer) {
            if store.take(std::slice::from_ref(&ask), 1).await.is_err() {
                return;
            }
        }
    }

    /// Lifts `key`'s blocks (a client id, or an address) in the shared store, at every
    /// limit: how many keys there were. `Ok(0)` for an address that is none.
    pub(crate) async fn clear_shared(
        store: &SharedStore,
        kind: BlockKind,
        key: &str,
    ) -> Result<usize, super::shared::Unavailable> {
        let pattern = match kind {
            BlockKind::Client => format!("candor:fa:c:{}:*", shared_part(key)),
            BlockKind::Address => match key.trim_end_matches("/64").parse::<IpAddr>() {
                Ok(ip) => format!("candor:fa:a:{}:*", shared_part(&address_name(ip))),
                Err(_) => return Ok(0),
            },
        };
        store.delete_matching(&pattern).await
    }

    /// The blocks counted in the shared store at the current limits, by every gateway (as
    /// [`FailedAttempts::list`] lists this gateway's): at most [`MAX_NAMES`] keys of each
    /// kind are read, and whether there were more. A client id of over 128 bytes is kept
    /// there by its hash, and listed so.
    pub(crate) async fn list_shared(
        &self,
        store: &SharedStore,
    ) -> Result<(Vec<Block>, bool), super::shared::Unavailable> {
        /// Keys read per script call.
        const READ: usize = 200;
        let limits = self.limits.load();
        let mut out = Vec::new();
        let mut more = false;
        for kind in [BlockKind::Address, BlockKind::Client] {
            let policy = &limits.limiter(kind).policy;
            let tag = match kind {
                BlockKind::Address => 'a',
                BlockKind::Client => 'c',
            };
            let pattern = format!(
                "candor:fa:{tag}:*:{}:{}",
                policy.limit,
                policy.window.as_secs()
            );
            let (keys, over) = store.keys_matching(&pattern, MAX_NAMES).await?;
            more |= over;
            for chunk in keys.chunks(READ) {
                let asks: Vec<Ask> = chunk.iter().map(|k| ask_for(k.clone(), policy)).collect();
                let (_, answers) = store.take(&asks, 0).await?;
                for (key, a) in chunk.iter().zip(answers) {
                    out.extend(
                        shared_name(kind, key).and_then(|n| shared_block(policy, kind, n, &a)),
                    );
                }
            }
        }
        Ok((out, more))
    }

    /// Lifts every block in the shared store: how many keys there were.
    pub(crate) async fn clear_all_shared(
        store: &SharedStore,
    ) -> Result<usize, super::shared::Unavailable> {
        store.delete_matching("candor:fa:*").await
    }
}

/// A client id or an address in a shared key: its bytes in hex (no glob or separator
/// character can appear), or for one over 128 bytes `h` and a hash of it.
fn shared_part(c: &str) -> String {
    let mut out = String::with_capacity(2 * c.len().min(128) + 1);
    if c.len() <= 128 {
        push_hex(&mut out, c.as_bytes());
    } else {
        out.push('h');
        let d = ring::digest::digest(&ring::digest::SHA256, c.as_bytes());
        push_hex(&mut out, &d.as_ref()[..16]);
    }
    out
}

/// The block that the shared count `a` of `name` is under `policy`, if it is one.
fn shared_block(
    policy: &PolicyConfig,
    kind: BlockKind,
    name: Name,
    a: &super::shared::Answer,
) -> Option<Block> {
    let o = outcome_leased(policy, false, a.owed, a.wait, 0);
    let wait = o.blocked?;
    Some(Block {
        kind,
        key: name.key,
        address: name.address,
        failures: policy.limit.saturating_sub(o.state.remaining),
        limit: policy.limit,
        retry_after: wait.max(1) as i64,
    })
}

/// The name a shared key counts (see [`FailedAttempts::shared_asks`]): the address, or the
/// client id and its address; `None` for a key of another shape.
fn shared_name(kind: BlockKind, key: &str) -> Option<Name> {
    let parts: Vec<&str> = key.strip_prefix("candor:fa:")?.split(':').collect();
    match (kind, parts.as_slice()) {
        (BlockKind::Address, ["a", address, _, _]) => Some(Name {
            key: shared_address(address)?,
            address: None,
        }),
        (BlockKind::Client, ["c", client, address, _, _]) => Some(Name {
            key: match client.strip_prefix('h') {
                Some(hash) if hash.len() == 32 && is_hex(hash) => {
                    format!("(a client id of over 128 bytes, hashed h{hash})")
                }
                Some(_) => return None,
                None => client_name(&from_shared_part(client)?),
            },
            address: Some(shared_address(address)?),
        }),
        _ => None,
    }
}

/// An address part of a shared key: the address [`address_name`] wrote, or `None` for
/// anything else (a key not of the gateway's making).
fn shared_address(hex: &str) -> Option<String> {
    let a = from_shared_part(hex)?;
    a.strip_suffix("/64")
        .unwrap_or(&a)
        .parse::<IpAddr>()
        .is_ok()
        .then_some(a)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The text [`shared_part`] wrote in hex (not one it hashed).
fn from_shared_part(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) || !is_hex(hex) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
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
    fn shared_keys_name_a_client_in_hex_and_a_long_one_by_its_hash() {
        assert_eq!(shared_part("cl_a*:"), "636c5f612a3a");
        let long = "x".repeat(129);
        let k = shared_part(&long);
        assert!(k.starts_with('h') && k.len() == 33, "{k}");
        assert_ne!(k, shared_part(&"x".repeat(130)));
    }

    #[test]
    fn a_shared_key_is_read_back_as_the_names_it_counts() {
        let f = FailedAttempts::new(3, 20, Duration::from_secs(60), &Registry::default());
        let key = f.shared_client_key("cl_a*:é", ip("2001:db8::7"));
        let n = shared_name(BlockKind::Client, &key).unwrap();
        assert_eq!(
            (n.key.as_str(), n.address.as_deref()),
            ("cl_a*:é", Some("2001:db8::/64"))
        );
        let key = f.shared_client_key(&"x".repeat(129), ip("127.0.0.1"));
        let n = shared_name(BlockKind::Client, &key).unwrap();
        assert!(
            n.key
                .starts_with("(a client id of over 128 bytes, hashed h"),
            "{}",
            n.key
        );
        let key = format!("candor:fa:a:{}:20:60", shared_part("10.0.0.1"));
        let n = shared_name(BlockKind::Address, &key).unwrap();
        assert_eq!((n.key.as_str(), n.address), ("10.0.0.1", None));
        // Keys of another shape, or with broken hex, are not named.
        // (And, from the attack probe: `+` taken for a hex digit, a hash part that is not
        // hex, an address part that is no address.)
        let not_an_address = shared_part("\u{1b}]0;title\u{7}evil");
        let client_plus = format!("candor:fa:c:+a+b:{}:5:300", shared_part("10.0.0.1"));
        let bad_hash = format!("candor:fa:c:h\u{1b}[2J:{}:5:300", shared_part("10.0.0.1"));
        let bad_address = format!("candor:fa:a:{not_an_address}:50:300");
        for bad in [
            "candor:fa:a:3:3:60",
            "candor:fa:a:zz:3:60",
            "candor:fa:c:61:3:60",
            "candor:rl:x",
            &client_plus,
            &bad_hash,
            &bad_address,
        ] {
            assert!(shared_name(BlockKind::Address, bad).is_none(), "{bad}");
            assert!(shared_name(BlockKind::Client, bad).is_none(), "{bad}");
        }
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
        f.succeed("k", peer);
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
        f.succeed("valid", peer);
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
        let keys: Vec<(&str, &str, Option<&str>)> = list
            .iter()
            .map(|b| (b.kind.as_str(), b.key.as_str(), b.address.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("address", "2001:db8:1:2::/64", None),
                ("client", "a", Some("2001:db8:1:2::/64")),
                ("client", "b", Some("2001:db8:1:2::/64")),
                ("client", "c", Some("10.0.0.1"))
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
        assert!(f.names.lock().unwrap().map.len() <= MAX_NAMES);
        // The names dropped are counted, for GET /blocks to say the list is incomplete.
        assert!(f.unlisted() >= 50, "{}", f.unlisted());
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
                per_address: Arc::new(Limiter::new(
                    PolicyConfig {
                        limit: 100,
                        burst: 100,
                        ..policy
                    },
                    2,
                )),
                window: Duration::from_secs(60),
            }),
            names: Mutex::default(),
            full_warned: AtomicI64::new(0),
        };
        let peer = ip("10.9.9.9");
        for k in ["a", "b", "c", "d"] {
            f.fail(Some(k), peer);
        }
        assert!(f.check(Some("a"), peer).is_some());
        assert_eq!(f.check(Some("someone-else"), peer), None);
        // Fail-open is logged, at most once a minute.
        assert_ne!(f.full_warned.load(Ordering::Relaxed), 0, "logged");
        assert!(
            !f.warn_full(BlockKind::Client),
            "not again within the minute"
        );
    }

    #[test]
    fn failures_from_elsewhere_do_not_block_a_client_here() {
        // The attack probe: client ids are not secret, and three wrong secrets for the
        // victim's id from 127.0.0.2 blocked the victim on 127.0.0.1.
        let f = FailedAttempts::new(3, 30, Duration::from_secs(300), &Registry::default());
        let (victim, attacker) = (ip("127.0.0.1"), ip("127.0.0.2"));
        for _ in 0..10 {
            f.fail(Some("cl_victim"), attacker);
        }
        let b = f.check(Some("cl_victim"), attacker).unwrap();
        assert_eq!(
            (b.kind, b.key.as_str(), b.address.as_deref()),
            (BlockKind::Client, "cl_victim", Some("127.0.0.2"))
        );
        assert_eq!(f.check(Some("cl_victim"), victim), None);
        // IPv6 by /64: another host of the same /64 is the same address.
        for _ in 0..3 {
            f.fail(Some("cl_v6"), ip("2001:db8::1"));
        }
        assert!(f.check(Some("cl_v6"), ip("2001:db8::2")).is_some());
        assert_eq!(f.check(Some("cl_v6"), ip("2001:db8:0:1::1")), None);
        // A success clears that address's failures only.
        f.fail(Some("cl_victim"), victim);
        f.succeed("cl_victim", victim);
        assert!(f.check(Some("cl_victim"), attacker).is_some());
        // `clear client ID` lifts its blocks from every address.
        for _ in 0..3 {
            f.fail(Some("cl_victim"), victim);
        }
        assert_eq!(f.list().len(), 3, "{:?}", f.list());
        assert_eq!(f.clear(BlockKind::Client, "cl_victim"), Ok(Some(true)));
        assert_eq!(f.check(Some("cl_victim"), attacker), None);
        assert_eq!(f.check(Some("cl_victim"), victim), None);
        assert_eq!(f.clear(BlockKind::Client, "cl_victim"), Ok(None));
    }
}
