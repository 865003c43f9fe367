//! Limit stage: the authenticated account's daily request quota (`quota_exceeded`). Rate
//! limits per client, key and route join it here.

use crate::error::GatewayError;
use crate::identity::store::Account;
use crate::limits::quota::Quotas;

/// Counts one request against `account`'s quota; refuses it once the day's quota is used.
pub(crate) fn check_quota(quotas: &Quotas, account: &Account) -> Result<(), GatewayError> {
    quotas.count(account, crate::time::unix_now())
}
