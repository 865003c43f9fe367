//! Account quotas: requests per UTC day, counted in memory on the request path and
//! persisted to the store every few seconds (and at shutdown).

use crate::error::GatewayError;
use crate::identity::store::{Account, Identity, StoreError};
use candor_catalog::codes;
use http::header::RETRY_AFTER;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Request counts per account for the current day.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    counts: Mutex<HashMap<String, (i64, i64, bool)>>,
}

fn day_of(t: i64) -> i64 {
    t.div_euclid(86_400)
}

impl Quotas {
    /// Loads today's counts from the store.
    pub(crate) fn load(identity: &Identity) -> Result<Quotas, StoreError> {
        let today = day_of(crate::time::unix_now());
        let counts = identity
            .quota_usage(today)?
            .into_iter()
            .map(|(account, count)| (account, (today, count, false)))
            .collect();
        Ok(Quotas {
            counts: Mutex::new(counts),
        })
    }

    /// Counts one request of `account`; `quota_exceeded` when the day's quota is used up.
    pub(crate) fn count(&self, account: &Account, now: i64) -> Result<(), GatewayError> {
        let Some(limit) = account.quota_per_day else {
            return Ok(());
        };
        let today = day_of(now);
        let Ok(mut counts) = self.counts.lock() else {
            return Ok(());
        };
        let entry = counts
            .entry(account.id.clone())
            .or_insert((today, 0, false));
        if entry.0 != today {
            *entry = (today, 0, false);
        }
        if entry.1 >= limit {
            let resets = (today + 1) * 86_400;
            let wait = resets - now;
            return Err(GatewayError::new(codes::QUOTA_EXCEEDED)
                .param("account", account.id.clone())
                .param("limit", limit.to_string())
                .param("period", "day (UTC)")
                .param("resets_at", crate::time::rfc3339(resets))
                .header(RETRY_AFTER, &wait.to_string())
                .extension("limit", limit.into())
                .extension("resets_at", crate::time::rfc3339(resets).into()));
        }
        entry.1 += 1;
        entry.2 = true;
        Ok(())
    }

    /// Writes the counts changed since the last call.
    pub(crate) fn persist(&self, identity: &Identity) -> Result<usize, StoreError> {
        let changed: Vec<(String, i64, i64)> = match self.counts.lock() {
            Ok(mut counts) => counts
                .iter_mut()
                .filter(|(_, v)| v.2)
                .map(|(k, v)| {
                    v.2 = false;
                    (k.clone(), v.0, v.1)
                })
                .collect(),
            Err(_) => return Ok(0),
        };
        for (account, day, count) in &changed {
            identity.save_quota_usage(account, *day, *count)?;
        }
        Ok(changed.len())
    }
}

/// Writes changed quota counts to the store (off the runtime's threads); a failure is
/// logged and the counts are written on the next try.
pub(crate) async fn persist(quotas: &Arc<Quotas>, identity: &Arc<Identity>) {
    let (quotas, identity) = (quotas.clone(), identity.clone());
    match tokio::task::spawn_blocking(move || quotas.persist(&identity)).await {
        Ok(Err(e)) => {
            tracing::warn!(target: "candor::store", error = %e, "quota usage not saved; retrying")
        }
        Err(e) => {
            tracing::warn!(target: "candor::store", error = %e, "quota usage not saved; retrying")
        }
        Ok(Ok(_)) => {}
    }
}

/// Saves quota usage every 5 s (and the server saves it once more at shutdown).
pub(crate) async fn keep_saved(quotas: Arc<Quotas>, identity: Arc<Identity>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        persist(&quotas, &identity).await;
    }
}
