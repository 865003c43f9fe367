//! Account quotas: requests per UTC day and per UTC calendar month, counted in memory on
//! the request path and saved to the store every `limits.quota_save_interval` (5 s by
//! default) and at shutdown: a crash loses at most that interval's counts, a restart none.

use crate::error::GatewayError;
use crate::identity::store::{Account, Identity, QuotaPeriod, StoreError};
use candor_catalog::codes;
use http::header::RETRY_AFTER;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// One account's count in one period.
#[derive(Debug)]
struct Count {
    /// Which day or month it counts.
    index: i64,
    count: i64,
    /// Changed since it was last saved.
    dirty: bool,
}

/// Request counts per account for the current day and month.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    counts: Mutex<HashMap<(String, QuotaPeriod), Count>>,
}

fn day_of(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// The index of the period `t` falls in.
fn index_of(period: QuotaPeriod, t: i64) -> i64 {
    match period {
        QuotaPeriod::Day => day_of(t),
        QuotaPeriod::Month => crate::time::month_of(t),
    }
}

/// When the period numbered `index` ends (Unix seconds).
fn end_of(period: QuotaPeriod, index: i64) -> i64 {
    match period {
        QuotaPeriod::Day => (index + 1) * 86_400,
        QuotaPeriod::Month => crate::time::month_start(index + 1),
    }
}

impl Quotas {
    /// Loads the current day's and month's counts from the store.
    pub(crate) fn load(identity: &Identity) -> Result<Quotas, StoreError> {
        let now = crate::time::unix_now();
        let mut counts = HashMap::new();
        for period in [QuotaPeriod::Day, QuotaPeriod::Month] {
            let index = index_of(period, now);
            for (account, count) in identity.quota_usage(period, index)? {
                counts.insert(
                    (account, period),
                    Count {
                        index,
                        count,
                        dirty: false,
                    },
                );
            }
        }
        Ok(Quotas {
            counts: Mutex::new(counts),
        })
    }

    /// Counts one request of `account` in each period it has a quota for;
    /// `quota_exceeded` when one is used up (the one that resets last, when several are),
    /// and then nothing is counted.
    pub(crate) fn count(&self, account: &Account, now: i64) -> Result<(), GatewayError> {
        let periods = [
            (QuotaPeriod::Day, account.quota_per_day),
            (QuotaPeriod::Month, account.quota_per_month),
        ];
        if periods.iter().all(|(_, l)| l.is_none()) {
            return Ok(());
        }
        let Ok(mut counts) = self.counts.lock() else {
            return Ok(());
        };
        let mut used_up: Option<(QuotaPeriod, i64, i64, i64)> = None;
        for (period, limit) in periods {
            let Some(limit) = limit else { continue };
            let index = index_of(period, now);
            let c = counts.entry((account.id.clone(), period)).or_insert(Count {
                index,
                count: 0,
                dirty: false,
            });
            if c.index != index {
                *c = Count {
                    index,
                    count: 0,
                    dirty: true,
                };
            }
            let resets = end_of(period, index);
            if c.count >= limit && used_up.is_none_or(|u| u.3 < resets) {
                used_up = Some((period, limit, c.count, resets));
            }
        }
        if let Some((period, limit, used, resets)) = used_up {
            let wait = (resets - now).max(1);
            let (words, name) = match period {
                QuotaPeriod::Day => ("day (UTC)", "day"),
                QuotaPeriod::Month => ("calendar month (UTC)", "month"),
            };
            return Err(GatewayError::new(codes::QUOTA_EXCEEDED)
                .header(RETRY_AFTER, &wait.to_string())
                .param("account", account.id.clone())
                .param("used", used.to_string())
                .param("limit", limit.to_string())
                .param("period", words)
                .param("resets_at", crate::time::rfc3339(resets))
                .extension("limit", limit.into())
                .extension("used", used.into())
                .extension("period", name.into())
                .extension("resets_at", crate::time::rfc3339(resets).into()));
        }
        for (period, limit) in periods {
            if limit.is_some()
                && let Some(c) = counts.get_mut(&(account.id.clone(), period))
            {
                c.count += 1;
                c.dirty = true;
            }
        }
        Ok(())
    }

    /// Gives back one request counted for `account` at `now` (refused afterwards by a rate
    /// limit, or never delivered because of the upstream).
    pub(crate) fn refund(&self, account: &Account, now: i64) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        for period in [QuotaPeriod::Day, QuotaPeriod::Month] {
            if let Some(c) = counts.get_mut(&(account.id.clone(), period))
                && c.index == index_of(period, now)
                && c.count > 0
            {
                c.count -= 1;
                c.dirty = true;
            }
        }
    }

    /// Writes the counts changed since the last call (each period in one transaction); on
    /// a failure they stay marked to be written next time.
    pub(crate) fn persist(&self, identity: &Identity) -> Result<usize, StoreError> {
        let mut changed: HashMap<QuotaPeriod, Vec<(String, i64, i64)>> = HashMap::new();
        match self.counts.lock() {
            Ok(mut counts) => {
                for ((account, period), c) in counts.iter_mut().filter(|(_, c)| c.dirty) {
                    c.dirty = false;
                    changed
                        .entry(*period)
                        .or_default()
                        .push((account.clone(), c.index, c.count));
                }
            }
            Err(_) => return Ok(0),
        }
        let mut written = 0;
        let mut failed = None;
        for (period, rows) in &changed {
            // After a failure, nothing more is tried now: every unsaved count stays marked.
            if failed.is_some() {
                self.mark_dirty(*period, rows);
                continue;
            }
            match identity.save_quota_usage(*period, rows) {
                Ok(()) => written += rows.len(),
                Err(e) => {
                    self.mark_dirty(*period, rows);
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(written), Err)
    }

    fn mark_dirty(&self, period: QuotaPeriod, rows: &[(String, i64, i64)]) {
        if let Ok(mut counts) = self.counts.lock() {
            for (account, index, _) in rows {
                if let Some(c) = counts.get_mut(&(account.clone(), period))
                    && c.index == *index
                {
                    c.dirty = true;
                }
            }
        }
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

/// Saves quota usage every `interval()` (the running configuration's
/// `limits.quota_save_interval`); the server saves it once more at shutdown.
pub(crate) async fn keep_saved(
    quotas: Arc<Quotas>,
    identity: Arc<Identity>,
    interval: impl Fn() -> Duration,
) {
    loop {
        tokio::time::sleep(interval()).await;
        persist(&quotas, &identity).await;
    }
}
