//! Store: accounts, clients, the gateway's signing keys and token revocations.
//!
//! The request path never reads the database: it reads a [`Snapshot`] held in memory and
//! swapped atomically whenever the data changes (a write through [`Identity`], or a write by
//! another process such as `candor accounts add`, noticed through a generation counter).
//! [`IdentityStore`] is the storage interface; SQLite implements it here, PostgreSQL can later.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | the domain types (accounts, clients, API keys, signing keys) and the [`IdentityStore`] trait |
//! | `snapshot.rs` | [`Snapshot`], and [`Identity`]: the store plus the snapshot, every write refreshing it |
//! | `sqlite.rs` | the SQLite store and its migrations (`crates/gateway/migrations/`) |
//! | `secrets.rs` | random ids and secrets, argon2id hashes, SHA-256 of API keys |
//! | `errors.rs` | each [`StoreError`] as its catalog error |
//!
//! The trait is synchronous on purpose: the request path never calls it (it reads the
//! snapshot), and writes run on blocking threads (`spawn_blocking`) from the admin API and
//! the CLI. A PostgreSQL store implements the same trait, running its client on that
//! blocking thread, so no caller changes when a deployment moves to it.

mod errors;
mod secrets;
mod snapshot;
mod sqlite;

pub(crate) use secrets::{hash_secret, random_token, sha256_hex, verify_secret};
pub(crate) use snapshot::keep_fresh;
pub use snapshot::{Identity, Snapshot};
pub(crate) use sqlite::SqliteStore;

/// An account's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    /// May call APIs.
    Active,
    /// Temporarily barred.
    Suspended,
    /// Gone; kept so that its id is not reused.
    Deleted,
}

impl AccountStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> AccountStatus {
        match s {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            _ => AccountStatus::Deleted,
        }
    }
}

/// A customer account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Stable id, used in URLs and tokens.
    pub id: String,
    /// Display name.
    pub name: String,
    /// State.
    pub status: AccountStatus,
    /// Requests per day, if limited.
    pub quota_per_day: Option<i64>,
    /// Requests per calendar month (UTC), if limited.
    pub quota_per_month: Option<i64>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// An OAuth client of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// Public identifier.
    pub client_id: String,
    /// argon2id PHC string of the secret; the secret itself is never stored.
    pub secret_hash: String,
    /// Owning account.
    pub account_id: String,
    /// Scopes the client may be granted.
    pub scopes: Vec<String>,
    /// Grant types the client may use.
    pub grant_types: Vec<String>,
    /// Default token lifetime in seconds.
    pub token_lifetime: i64,
    /// RFC 6238 secret (base32) when a second factor is required.
    pub totp_secret: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Public keys (a JWK set) for JWT-bearer assertions, if registered.
    pub jwks: Option<String>,
}

/// An API key. The full key is `ck_{id}_{secret}`; only a SHA-256 of it is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The identifiable part, shown in listings and error messages.
    pub id: String,
    /// Hex SHA-256 of the full key.
    pub secret_hash: String,
    /// Owning account.
    pub account_id: String,
    /// Scopes the key grants.
    pub scopes: Vec<String>,
    /// Unix seconds after which the key stops working.
    pub expires_at: Option<i64>,
    /// Client networks the key may be used from (empty: any).
    pub allowed_ips: Vec<String>,
    /// Referer patterns the key may be used with (empty: any); `*` matches any text.
    pub allowed_referers: Vec<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// One of an account's two tokens (the `TOK:` scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenSlot {
    /// The token clients normally use.
    Primary,
    /// The second valid token: clients move to it while the primary is rotated.
    Backup,
}

impl TokenSlot {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSlot::Primary => "primary",
            TokenSlot::Backup => "backup",
        }
    }

    /// The slot named `s` (`primary` or `backup`).
    pub fn from_word(s: &str) -> Option<TokenSlot> {
        match s {
            "primary" => Some(TokenSlot::Primary),
            "backup" => Some(TokenSlot::Backup),
            _ => None,
        }
    }

    fn parse(s: &str) -> TokenSlot {
        TokenSlot::from_word(s).unwrap_or(TokenSlot::Backup)
    }
}

/// An account token as the snapshot keeps it (by the SHA-256 of the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountToken {
    /// Owning account.
    pub account_id: String,
    /// Primary or backup.
    pub slot: TokenSlot,
    /// RFC 3339 time it was issued.
    pub created_at: String,
}

/// What a new API key needs (its secret is generated).
#[derive(Clone, Debug, Default)]
pub struct NewApiKey {
    /// Owning account.
    pub account_id: String,
    /// Scopes it grants.
    pub scopes: Vec<String>,
    /// Lifetime in seconds, if it expires.
    pub expires_in: Option<i64>,
    /// Allowed client networks.
    pub allowed_ips: Vec<String>,
    /// Allowed referer patterns.
    pub allowed_referers: Vec<String>,
}

/// One of the gateway's token signing keys.
#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    /// Key id, in the JWT header and the JWK set.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// PKCS#8 private key.
    pub private_pkcs8: Vec<u8>,
    /// Raw public key.
    pub public_key: Vec<u8>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// When it stopped signing (it still verifies until tokens it signed expire).
    pub retired_at: Option<String>,
}

/// Why a store operation failed; each maps to a catalog code.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// `resource_not_found`
    NotFound {
        /// "Account", "Client"...
        resource: &'static str,
        /// The id asked for.
        id: String,
    },
    /// `duplicate_resource`
    Duplicate {
        /// "account"...
        resource: &'static str,
        /// The unique field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `validation_failed`
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `internal_error`
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound { resource, id } => write!(f, "{resource} {id} does not exist"),
            StoreError::Duplicate {
                resource,
                field,
                value,
            } => {
                write!(f, "a {resource} with {field} {value} already exists")
            }
            StoreError::Invalid { field, reason } => write!(f, "{field} {reason}"),
            StoreError::Backend(e) => write!(f, "storage error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// What a new account needs.
#[derive(Clone, Debug)]
pub struct NewAccount {
    /// Id; generated when `None`.
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Requests per day, if limited.
    pub quota_per_day: Option<i64>,
    /// Requests per calendar month (UTC), if limited.
    pub quota_per_month: Option<i64>,
}

/// The period a quota counts requests over (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    /// A day: its index is days since 1970-01-01.
    Day,
    /// A calendar month: its index is months since January 1970.
    Month,
}

/// What a new client needs (its secret is generated).
#[derive(Clone, Debug)]
pub struct NewClient {
    /// Owning account.
    pub account_id: String,
    /// Scopes it may be granted.
    pub scopes: Vec<String>,
    /// Token lifetime in seconds.
    pub token_lifetime: i64,
    /// Require a TOTP second factor.
    pub second_factor: bool,
}

/// The storage interface. Writes bump a generation counter so that every process holding
/// a snapshot notices.
pub trait IdentityStore: Send + Sync {
    /// Reads everything the request path needs.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// The current generation.
    fn generation(&self) -> Result<i64, StoreError>;
    /// Creates an account.
    fn insert_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Changes an account's status.
    fn set_account_status(&self, id: &str, status: AccountStatus) -> Result<(), StoreError>;
    /// Creates a client.
    fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    /// Replaces a client's secret hash.
    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<(), StoreError>;
    /// Deletes a client.
    fn delete_client(&self, client_id: &str) -> Result<(), StoreError>;
    /// Registers a client's assertion keys (a JWK set as JSON).
    fn set_client_keys(&self, client_id: &str, jwks: &str) -> Result<(), StoreError>;
    /// Adds a signing key and retires the others.
    fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    /// Records a revoked token id until `expires_at` (Unix seconds).
    fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Creates an API key.
    fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Deletes an API key.
    fn delete_api_key(&self, id: &str) -> Result<(), StoreError>;
    /// Replaces an API key's secret hash (rotation).
    fn set_api_key_secret(&self, id: &str, secret_hash: &str) -> Result<(), StoreError>;
    /// Adds (`on`) or removes a configuration-mode override; whether anything changed.
    fn set_mode_override(&self, feature: &str, mode: &str, on: bool) -> Result<bool, StoreError>;
    /// Sets an account's token in `slot` (its SHA-256), replacing the one there.
    fn set_account_token(
        &self,
        account_id: &str,
        slot: TokenSlot,
        token_hash: &str,
    ) -> Result<(), StoreError>;
    /// Requests counted per account in the `period` numbered `index`.
    fn quota_usage(
        &self,
        period: QuotaPeriod,
        index: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Records accounts' counts `(account, index, count)` for `period`, in one transaction.
    /// Not a data change: no generation bump.
    fn save_quota_usage(
        &self,
        period: QuotaPeriod,
        counts: &[(String, i64, i64)],
    ) -> Result<(), StoreError>;
}

/// A data directory for one unit test, removed when dropped.
#[cfg(test)]
pub(crate) struct ScratchDir(pub(crate) std::path::PathBuf);

#[cfg(test)]
impl ScratchDir {
    /// A new, empty directory under the system's temporary directory.
    pub(crate) fn new(name: &str) -> ScratchDir {
        let d = std::env::temp_dir().join(format!(
            "candor-{name}-{}-{}",
            std::process::id(),
            random_token(6)
        ));
        std::fs::create_dir_all(&d).unwrap();
        ScratchDir(d)
    }
}

#[cfg(test)]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> ScratchDir {
        ScratchDir::new("store")
    }

    #[test]
    fn accounts_clients_and_keys_round_trip() {
        let dir = temp();
        let id = Identity::open(&dir.0).unwrap();
        let first_kid = id.snapshot().active_key().unwrap().kid.clone();
        let acct = id
            .add_account(NewAccount {
                id: Some("acme".into()),
                name: "Acme".into(),
                quota_per_day: None,
                quota_per_month: None,
            })
            .unwrap();
        assert_eq!(acct.status, AccountStatus::Active);
        assert!(matches!(
            id.add_account(NewAccount {
                id: Some("acme".into()),
                name: "Again".into(),
                quota_per_day: None,
                quota_per_month: None
            }),
            Err(StoreError::Duplicate { .. })
        ));
        let (client, secret) = id
            .add_client(NewClient {
                account_id: "acme".into(),
                scopes: vec!["devices:read".into()],
                token_lifetime: 300,
                second_factor: false,
            })
            .unwrap();
        assert!(!client.secret_hash.contains(&secret));
        assert!(verify_secret(&secret, &client.secret_hash));
        assert!(!verify_secret("cs_wrong", &client.secret_hash));
        assert!(matches!(
            id.add_client(NewClient {
                account_id: "nobody".into(),
                scopes: vec![],
                token_lifetime: 300,
                second_factor: false
            }),
            Err(StoreError::NotFound { .. })
        ));
        id.set_account_status("acme", AccountStatus::Suspended)
            .unwrap();
        let kid = id.rotate_signing_key().unwrap();
        let snap = id.snapshot();
        assert_eq!(snap.active_key().unwrap().kid, kid);
        assert!(
            snap.signing_keys
                .iter()
                .any(|k| k.kid == first_kid && k.retired_at.is_some())
        );

        // Another process's view sees the same data after a refresh, and migrations run once.
        let other = Identity::open(&dir.0).unwrap();
        assert_eq!(
            other.snapshot().accounts["acme"].status,
            AccountStatus::Suspended
        );
        other.revoke("jti-1", crate::time::unix_now() + 60).unwrap();
        assert!(id.refresh().unwrap());
        assert!(id.snapshot().revoked.contains_key("jti-1"));
    }
}
