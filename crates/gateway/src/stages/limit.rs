//! Limit stage: the authenticated account's daily request quota (`quota_exceeded`). Rate
//! limits per client, key and route join it here.

use crate::error::GatewayError;
use crate::limits::quota::Quotas;
use crate::pipeline::context::{Flow, RequestCtx};

/// Counts the request against the principal's account quota; refuses it once the day's
/// quota is used. Requests without an account pass.
pub(crate) fn run(quotas: &Quotas, ctx: &mut RequestCtx<'_>) -> Result<Flow, GatewayError> {
    let account = ctx
        .principal
        .as_ref()
        .and_then(|p| p.account.as_ref())
        .zip(ctx.snapshot.as_ref())
        .and_then(|(a, snapshot)| snapshot.accounts.get(a));
    let Some(account) = account else {
        return Ok(Flow::Continue);
    };
    match quotas.count(account, crate::time::unix_now()) {
        Ok(()) => Ok(Flow::Continue),
        Err(e) => {
            ctx.trail
                .record("limit", "reject", Some(e.code), Vec::new());
            Err(e)
        }
    }
}
