//! Active health checks: where a route sets `health_check`, each of its targets gets
//! `GET path` every `interval`; `unhealthy_after` failed checks in a row take the target out
//! of rotation until `healthy_after` checks in a row pass. Each route checks its own
//! targets (their health is per route).

use super::Upstream;
use super::pool::{Caps, Dest, Pool};
use super::targets::Targets;
use crate::http::body::{BodyWatch, UpstreamBody};
use bytes::Bytes;
use http::uri::Authority;
use http_body_util::BodyExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A route's `health_check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path requested (with the upstream's base path before it).
    pub path: String,
    /// How often.
    pub interval: Duration,
    /// How long a check may take.
    pub timeout: Duration,
    /// Passing checks in a row that bring a target back.
    pub healthy_after: u32,
    /// Failing checks in a row that take a target out.
    pub unhealthy_after: u32,
}

/// What is checked: a route's target, its TLS settings, the path.
type CheckKey = (std::sync::Arc<str>, Authority, u64, String);

/// Checks every target of every upstream `upstreams()` returns (the running configuration's)
/// that has a health check, each when due, one check per target and path at a time.
pub(crate) async fn keep_checking(
    pool: Pool,
    targets: Arc<Targets>,
    upstreams: impl Fn() -> Vec<Upstream>,
) {
    let due: Arc<Mutex<HashMap<CheckKey, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashSet<CheckKey>>> = Arc::default();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        for up in upstreams() {
            let Some(check) = up.health_check.clone() else {
                continue;
            };
            for index in 0..up.targets.len() {
                let t = &up.targets[index];
                let key: CheckKey = (
                    up.route.clone(),
                    t.authority.clone(),
                    up.tls.as_ref().map_or(0, |t| t.id),
                    check.path.clone(),
                );
                {
                    let Ok(mut d) = due.lock() else { return };
                    if d.get(&key).is_some_and(|at| *at > now) {
                        continue;
                    }
                    let Ok(mut r) = running.lock() else { return };
                    if !r.insert(key.clone()) {
                        continue;
                    }
                    d.insert(key.clone(), now + check.interval);
                }
                let (pool, targets, running, up, check) = (
                    pool.clone(),
                    targets.clone(),
                    running.clone(),
                    up.clone(),
                    check.clone(),
                );
                tokio::spawn(async move {
                    // None: the target's connections were all busy; not a failed check.
                    if let Some(result) = probe(&pool, &up, index, &check).await {
                        targets.checked(&up, index, &check, result);
                    }
                    if let Ok(mut r) = running.lock() {
                        r.remove(&key);
                    }
                });
            }
        }
        // Forget what no configuration checks any more.
        if let Ok(mut d) = due.lock() {
            d.retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(600));
        }
    }
}

/// One check of `up`'s target `index`: `Ok` when it answered 2xx or 3xx within the
/// check's timeout, else what happened; `None` when every connection the route allows was
/// busy (a busy target is not an unhealthy one).
async fn probe(
    pool: &Pool,
    up: &Upstream,
    index: usize,
    check: &HealthCheck,
) -> Option<Result<(), String>> {
    let target = &up.targets[index];
    let path = format!("{}{}", up.base_path, check.path);
    let req = http::Request::get(path.as_str())
        .header(http::header::HOST, target.host_header.clone())
        .header(http::header::USER_AGENT, "candor-health-check")
        .body(UpstreamBody::held(Bytes::new(), BodyWatch::new()));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Some(Err(format!("cannot build the check request: {e}"))),
    };
    let caps = Caps {
        max_connections: up.max_connections,
        max_queue: 1,
        queue_wait: check.timeout,
        connect_timeout: check.timeout.min(up.connect_timeout),
    };
    let send = pool.send(
        Dest {
            authority: &target.authority,
            tls: up.tls.as_ref(),
        },
        req,
        caps,
    );
    let answer = async {
        let resp = match send.await {
            Ok(r) => r,
            Err(f) => {
                return match f.error {
                    super::pool::SendError::Connect(c) => Some(Err(c)),
                    super::pool::SendError::Exchange(e) => {
                        Some(Err(format!("the exchange failed ({e})")))
                    }
                    super::pool::SendError::Overloaded { .. } => None,
                };
            }
        };
        let status = resp.status();
        // Read to the end, so that the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        Some(if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        })
    };
    match tokio::time::timeout(check.timeout, answer).await {
        Ok(r) => r.map(|r| r.map_err(|e| format!("health check GET {}: {e}", check.path))),
        Err(_) => Some(Err(format!(
            "health check GET {}: no answer within {}",
            check.path,
            crate::time::human_duration(check.timeout)
        ))),
    }
}
