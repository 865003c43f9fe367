//! Counters that refuse traffic past a limit: account quotas per UTC day, failed attempts
//! at the token endpoint, the replay cache of JWT-bearer assertion ids. Rate limits and their
//! shared (Redis) state come here too. In memory on one node; quota usage persisted to the
//! identity store.
//!
//! May depend on: `identity::store` (persisting quota usage), the catalog.

pub(crate) mod attempts;
pub(crate) mod quota;
pub(crate) mod rate;
pub(crate) mod shared;
