//! Store: accounts, clients, the gateway's signing keys and token revocations.
//!
//! The request path never reads the database: it reads a [`Snapshot`] held in memory and
//! swapped atomically whenever the data changes (a write through [`Identity`], or a write by
//! another process such as `candor accounts add`, noticed through a generation counter).
//! [`IdentityStore`] is the storage interface; SQLite implements it here, PostgreSQL can later.

use arc_swap::ArcSwap;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Versioned schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/0001_identity.sql")),
    (2, include_str!("../../../migrations/0002_api_keys.sql")),
    (3, include_str!("../../../migrations/0003_client_keys.sql")),
    (4, include_str!("../../../migrations/0004_quota_usage.sql")),
];

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

/// Hex SHA-256, for API keys.
pub(crate) fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// Everything the request path reads, as of one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Accounts by id.
    pub accounts: HashMap<String, Account>,
    /// Clients by client_id.
    pub clients: HashMap<String, Client>,
    /// Signing keys, the active one (not retired, newest) first.
    pub signing_keys: Vec<SigningKeyRecord>,
    /// Revoked token ids.
    pub revoked: HashMap<String, String>,
    /// API keys by id.
    pub api_keys: HashMap<String, ApiKey>,
}

impl Snapshot {
    /// The key new tokens are signed with.
    pub fn active_key(&self) -> Option<&SigningKeyRecord> {
        self.signing_keys.iter().find(|k| k.retired_at.is_none())
    }
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
    /// Requests counted per account on `day` (days since the epoch, UTC).
    fn quota_usage(&self, day: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// Records an account's count for `day`. Not a data change: no generation bump.
    fn save_quota_usage(&self, account: &str, day: i64, count: i64) -> Result<(), StoreError>;
}

/// The SQLite implementation, one file in the data directory.
pub(crate) struct SqliteStore {
    conn: Mutex<Connection>,
}

fn now_rfc3339() -> String {
    crate::time::rfc3339(crate::time::unix_now())
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/candor.sqlite` and applies pending migrations.
    pub(crate) fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", data_dir.display())))?;
        let conn = Connection::open(data_dir.join("candor.sqlite"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);")?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> = conn
                .query_row(
                    "SELECT version FROM schema_migrations WHERE version = ?1",
                    params![version],
                    |r| r.get(0),
                )
                .optional()?;
            if done.is_none() {
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, now_rfc3339()],
                )?;
                tx.commit()?;
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Backend("store lock poisoned".into()))?;
        f(&conn)
    }

    fn write(
        &self,
        f: impl FnOnce(&Connection) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            f(&tx)?;
            tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'generation'",
                [],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Runs `sql`, which changes the one row of `resource` `id`; `NotFound` when none was.
    fn change_one(
        &self,
        resource: &'static str,
        id: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        self.write(|c| match c.execute(sql, params)? {
            0 => Err(StoreError::NotFound {
                resource,
                id: id.to_owned(),
            }),
            _ => Ok(()),
        })
    }
}

fn split_list(s: String) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

impl IdentityStore for SqliteStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.with(|c| {
            let mut snap = Snapshot::default();
            let mut stmt = c.prepare("SELECT id, name, status, quota_per_day, created_at FROM accounts")?;
            for a in stmt.query_map([], |r| {
                Ok(Account {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    status: AccountStatus::parse(&r.get::<_, String>(2)?),
                    quota_per_day: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })? {
                let a = a?;
                snap.accounts.insert(a.id.clone(), a);
            }
            let mut stmt = c.prepare("SELECT client_id, secret_hash, account_id, scopes, grant_types, token_lifetime, totp_secret, created_at, jwks FROM clients")?;
            for cl in stmt.query_map([], |r| {
                Ok(Client {
                    client_id: r.get(0)?,
                    secret_hash: r.get(1)?,
                    account_id: r.get(2)?,
                    scopes: split_list(r.get(3)?),
                    grant_types: split_list(r.get(4)?),
                    token_lifetime: r.get(5)?,
                    totp_secret: r.get(6)?,
                    created_at: r.get(7)?,
                    jwks: r.get(8)?,
                })
            })? {
                let cl = cl?;
                snap.clients.insert(cl.client_id.clone(), cl);
            }
            let mut stmt = c.prepare("SELECT kid, alg, private_pkcs8, public_key, created_at, retired_at FROM signing_keys ORDER BY retired_at IS NOT NULL, created_at DESC, kid DESC")?;
            for k in stmt.query_map([], |r| {
                Ok(SigningKeyRecord {
                    kid: r.get(0)?,
                    alg: r.get(1)?,
                    private_pkcs8: r.get(2)?,
                    public_key: r.get(3)?,
                    created_at: r.get(4)?,
                    retired_at: r.get(5)?,
                })
            })? {
                snap.signing_keys.push(k?);
            }
            let mut stmt = c.prepare("SELECT id, secret_hash, account_id, scopes, expires_at, allowed_ips, allowed_referers, created_at FROM api_keys")?;
            for k in stmt.query_map([], |r| {
                Ok(ApiKey {
                    id: r.get(0)?,
                    secret_hash: r.get(1)?,
                    account_id: r.get(2)?,
                    scopes: split_list(r.get(3)?),
                    expires_at: r.get(4)?,
                    allowed_ips: split_list(r.get(5)?),
                    allowed_referers: split_list(r.get(6)?),
                    created_at: r.get(7)?,
                })
            })? {
                let k = k?;
                snap.api_keys.insert(k.id.clone(), k);
            }
            let now = crate::time::unix_now();
            let mut stmt = c.prepare("SELECT jti, revoked_at FROM revocations WHERE expires_at > ?1")?;
            for r in stmt.query_map(params![now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                let (jti, at) = r?;
                snap.revoked.insert(jti, at);
            }
            Ok(snap)
        })
    }

    fn generation(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                    r.get(0)
                })?,
            )
        })
    }

    fn insert_account(&self, a: &Account) -> Result<(), StoreError> {
        self.write(|c| {
            let exists: Option<String> = c.query_row("SELECT id FROM accounts WHERE id = ?1", params![a.id], |r| r.get(0)).optional()?;
            if exists.is_some() {
                return Err(StoreError::Duplicate { resource: "account", field: "id", value: a.id.clone() });
            }
            c.execute(
                "INSERT INTO accounts (id, name, status, quota_per_day, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.id, a.name, a.status.as_str(), a.quota_per_day, a.created_at],
            )?;
            Ok(())
        })
    }

    fn set_account_status(&self, id: &str, status: AccountStatus) -> Result<(), StoreError> {
        self.change_one(
            "Account",
            id,
            "UPDATE accounts SET status = ?2 WHERE id = ?1",
            params![id, status.as_str()],
        )
    }

    fn insert_client(&self, cl: &Client) -> Result<(), StoreError> {
        self.write(|c| {
            let account: Option<String> = c.query_row("SELECT id FROM accounts WHERE id = ?1", params![cl.account_id], |r| r.get(0)).optional()?;
            if account.is_none() {
                return Err(StoreError::NotFound { resource: "Account", id: cl.account_id.clone() });
            }
            c.execute(
                "INSERT INTO clients (client_id, secret_hash, account_id, scopes, grant_types, token_lifetime, totp_secret, created_at, jwks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![cl.client_id, cl.secret_hash, cl.account_id, cl.scopes.join(" "), cl.grant_types.join(" "), cl.token_lifetime, cl.totp_secret, cl.created_at, cl.jwks],
            )?;
            Ok(())
        })
    }

    fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> Result<(), StoreError> {
        self.change_one(
            "Client",
            client_id,
            "UPDATE clients SET secret_hash = ?2 WHERE client_id = ?1",
            params![client_id, secret_hash],
        )
    }

    fn set_client_keys(&self, client_id: &str, jwks: &str) -> Result<(), StoreError> {
        self.change_one(
            "Client",
            client_id,
            "UPDATE clients SET jwks = ?2, grant_types = 'client_credentials urn:ietf:params:oauth:grant-type:jwt-bearer' WHERE client_id = ?1",
            params![client_id, jwks],
        )
    }

    fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.change_one(
            "Client",
            client_id,
            "DELETE FROM clients WHERE client_id = ?1",
            params![client_id],
        )
    }

    fn rotate_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute("UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL", params![key.created_at])?;
            c.execute(
                "INSERT INTO signing_keys (kid, alg, private_pkcs8, public_key, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                params![key.kid, key.alg, key.private_pkcs8, key.public_key, key.created_at],
            )?;
            Ok(())
        })
    }

    fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        self.write(|c| {
            let account: Option<String> = c.query_row("SELECT id FROM accounts WHERE id = ?1", params![k.account_id], |r| r.get(0)).optional()?;
            if account.is_none() {
                return Err(StoreError::NotFound { resource: "Account", id: k.account_id.clone() });
            }
            c.execute(
                "INSERT INTO api_keys (id, secret_hash, account_id, scopes, expires_at, allowed_ips, allowed_referers, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![k.id, k.secret_hash, k.account_id, k.scopes.join(" "), k.expires_at, k.allowed_ips.join(" "), k.allowed_referers.join(" "), k.created_at],
            )?;
            Ok(())
        })
    }

    fn quota_usage(&self, day: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT account_id, count FROM quota_usage WHERE day = ?1")?;
            let rows = stmt.query_map(params![day], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn save_quota_usage(&self, account: &str, day: i64, count: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO quota_usage (account_id, day, count) VALUES (?1, ?2, ?3) ON CONFLICT (account_id, day) DO UPDATE SET count = excluded.count",
                params![account, day, count],
            )?;
            c.execute("DELETE FROM quota_usage WHERE day < ?1", params![day - 7])?;
            Ok(())
        })
    }

    fn delete_api_key(&self, id: &str) -> Result<(), StoreError> {
        self.change_one(
            "API key",
            id,
            "DELETE FROM api_keys WHERE id = ?1",
            params![id],
        )
    }

    fn set_api_key_secret(&self, id: &str, secret_hash: &str) -> Result<(), StoreError> {
        self.change_one(
            "API key",
            id,
            "UPDATE api_keys SET secret_hash = ?2 WHERE id = ?1",
            params![id, secret_hash],
        )
    }

    fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO revocations (jti, revoked_at, expires_at) VALUES (?1, ?2, ?3)",
                params![jti, now_rfc3339(), expires_at],
            )?;
            Ok(())
        })
    }
}

/// Random text from `alphabet`-free lower-case base32, for ids and secrets.
pub(crate) fn random_token(bytes: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("system randomness");
    buf.iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect()
}

/// Hashes a secret with argon2id (PHC string).
pub(crate) fn hash_secret(secret: &str) -> Result<String, StoreError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut raw = [0u8; 16];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| StoreError::Backend("no system randomness".into()))?;
    let salt =
        SaltString::encode_b64(&raw).map_err(|e| StoreError::Backend(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Backend(format!("hashing failed: {e}")))
}

/// Checks a secret against an argon2id PHC string, in constant time.
pub(crate) fn verify_secret(secret: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Accounts, clients and keys as the request path sees them: the store plus the snapshot
/// in memory.
pub struct Identity {
    store: Box<dyn IdentityStore>,
    snapshot: ArcSwap<Snapshot>,
    generation: AtomicI64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("generation", &self.generation)
            .finish()
    }
}

impl Identity {
    /// Opens the SQLite store in `data_dir`, creating a signing key if there is none.
    pub fn open(data_dir: &Path) -> Result<Identity, StoreError> {
        Identity::with_store(Box::new(SqliteStore::open(data_dir)?))
    }

    /// Signs `claims` as this gateway's token endpoint would, with the active signing key
    /// (for tools that mint tokens, e.g. to test a route).
    pub fn sign(&self, claims: &crate::identity::jwt::Claims) -> Result<String, String> {
        let snapshot = self.snapshot();
        let key = snapshot
            .active_key()
            .ok_or_else(|| "no active signing key".to_owned())?;
        crate::identity::jwt::issue(key, claims)
    }

    /// Wraps any store.
    pub fn with_store(store: Box<dyn IdentityStore>) -> Result<Identity, StoreError> {
        let identity = Identity {
            generation: AtomicI64::new(store.generation()?),
            snapshot: ArcSwap::from_pointee(store.load()?),
            store,
        };
        if identity.snapshot().active_key().is_none() {
            identity.rotate_signing_key()?;
        }
        Ok(identity)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Reloads the snapshot if another process wrote to the store. Cheap: one indexed read.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let generation = self.store.generation()?;
        if generation == self.generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.snapshot.store(Arc::new(self.store.load()?));
        self.generation.store(generation, Ordering::Release);
        Ok(true)
    }

    fn after_write(&self, r: Result<(), StoreError>) -> Result<(), StoreError> {
        r?;
        self.refresh().map(|_| ())
    }

    /// Creates an account.
    pub fn add_account(&self, new: NewAccount) -> Result<Account, StoreError> {
        let id = new
            .id
            .unwrap_or_else(|| format!("acct_{}", random_token(12)));
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Invalid {
                field: "id",
                reason: "must be 1 to 64 letters, digits, '-' or '_'".into(),
            });
        }
        if new.name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "must not be blank".into(),
            });
        }
        let account = Account {
            id,
            name: new.name,
            status: AccountStatus::Active,
            quota_per_day: new.quota_per_day,
            created_at: now_rfc3339(),
        };
        self.after_write(self.store.insert_account(&account))?;
        Ok(account)
    }

    /// Suspends, reactivates or deletes an account.
    pub fn set_account_status(
        &self,
        id: &str,
        status: AccountStatus,
    ) -> Result<Account, StoreError> {
        self.after_write(self.store.set_account_status(id, status))?;
        self.snapshot()
            .accounts
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                resource: "Account",
                id: id.to_owned(),
            })
    }

    /// Creates a client; returns it with its secret, which is shown once and never stored.
    pub fn add_client(&self, new: NewClient) -> Result<(Client, String), StoreError> {
        if !(30..=86_400).contains(&new.token_lifetime) {
            return Err(StoreError::Invalid {
                field: "token_lifetime",
                reason: "must be from 30 to 86400 seconds".into(),
            });
        }
        for s in &new.scopes {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(StoreError::Invalid {
                    field: "scopes",
                    reason: format!("`{s}` is not a valid scope token"),
                });
            }
        }
        let secret = format!("cs_{}", random_token(32));
        let totp_secret = new.second_factor.then(crate::identity::totp::new_secret);
        let client = Client {
            client_id: format!("cl_{}", random_token(16)),
            secret_hash: hash_secret(&secret)?,
            account_id: new.account_id,
            scopes: new.scopes,
            grant_types: vec!["client_credentials".into()],
            token_lifetime: new.token_lifetime,
            totp_secret,
            created_at: now_rfc3339(),
            jwks: None,
        };
        self.after_write(self.store.insert_client(&client))?;
        Ok((client, secret))
    }

    /// Gives a client a new secret; returns it once.
    pub fn rotate_client_secret(&self, client_id: &str) -> Result<String, StoreError> {
        let secret = format!("cs_{}", random_token(32));
        self.after_write(
            self.store
                .set_client_secret(client_id, &hash_secret(&secret)?),
        )?;
        Ok(secret)
    }

    /// Registers the public keys a client signs JWT-bearer assertions with.
    pub fn set_client_keys(&self, client_id: &str, jwks: &str) -> Result<usize, StoreError> {
        let keys = crate::identity::jwk::parse_set(jwks).map_err(|reason| StoreError::Invalid {
            field: "jwks",
            reason,
        })?;
        self.after_write(self.store.set_client_keys(client_id, jwks))?;
        Ok(keys.len())
    }

    /// Deletes a client.
    pub fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.after_write(self.store.delete_client(client_id))
    }

    /// Creates a new Ed25519 signing key; the previous one keeps verifying.
    pub fn rotate_signing_key(&self) -> Result<String, StoreError> {
        use ring::signature::KeyPair;
        let rng = SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| StoreError::Backend("key generation failed".into()))?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| StoreError::Backend("generated key unreadable".into()))?;
        let key = SigningKeyRecord {
            kid: format!("k_{}", random_token(10)),
            alg: "EdDSA".into(),
            private_pkcs8: pkcs8.as_ref().to_vec(),
            public_key: pair.public_key().as_ref().to_vec(),
            created_at: now_rfc3339(),
            retired_at: None,
        };
        self.after_write(self.store.rotate_signing_key(&key))?;
        Ok(key.kid)
    }

    /// Creates an API key; returns it with the full key, shown once and never stored.
    pub fn add_api_key(&self, new: NewApiKey) -> Result<(ApiKey, String), StoreError> {
        for ip in &new.allowed_ips {
            crate::http::address::IpNet::parse(ip).map_err(|e| StoreError::Invalid {
                field: "allowed_ips",
                reason: e,
            })?;
        }
        for r in &new.allowed_referers {
            if r.is_empty() || r.contains(char::is_whitespace) {
                return Err(StoreError::Invalid {
                    field: "allowed_referers",
                    reason: format!("`{r}` is not a referer pattern"),
                });
            }
        }
        if let Some(e) = new.expires_in
            && e <= 0
        {
            return Err(StoreError::Invalid {
                field: "expires_in",
                reason: "must be a positive number of seconds".into(),
            });
        }
        let id = random_token(10);
        let full = api_key_text(&id);
        let key = ApiKey {
            id,
            secret_hash: sha256_hex(&full),
            account_id: new.account_id,
            scopes: new.scopes,
            expires_at: new.expires_in.map(|e| crate::time::unix_now() + e),
            allowed_ips: new.allowed_ips,
            allowed_referers: new.allowed_referers,
            created_at: now_rfc3339(),
        };
        self.after_write(self.store.insert_api_key(&key))?;
        Ok((key, full))
    }

    /// Gives an API key a new secret part, keeping its id, account, scopes and restrictions;
    /// returns the new full key once. The old key stops working at once.
    pub fn rotate_api_key(&self, id: &str) -> Result<String, StoreError> {
        let full = api_key_text(id);
        self.after_write(self.store.set_api_key_secret(id, &sha256_hex(&full)))?;
        Ok(full)
    }

    /// Deletes an API key.
    pub fn delete_api_key(&self, id: &str) -> Result<(), StoreError> {
        self.after_write(self.store.delete_api_key(id))
    }

    /// Requests counted per account on `day`.
    pub fn quota_usage(&self, day: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.store.quota_usage(day)
    }

    /// Records an account's request count for `day`.
    pub fn save_quota_usage(&self, account: &str, day: i64, count: i64) -> Result<(), StoreError> {
        self.store.save_quota_usage(account, day, count)
    }

    /// Revokes a token id until it would have expired anyway.
    pub fn revoke(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        self.after_write(self.store.revoke(jti, expires_at))
    }
}

/// A full API key for key id `id`: `ck_{id}_{secret}` with a fresh random secret.
fn api_key_text(id: &str) -> String {
    format!("ck_{id}_{}", random_token(32))
}

impl StoreError {
    /// The catalog error for this failure.
    pub fn to_gateway_error(&self) -> crate::error::GatewayError {
        use crate::error::GatewayError;
        use candor_catalog::{FieldError, codes};
        match self {
            StoreError::NotFound { resource, id } => GatewayError::new(codes::RESOURCE_NOT_FOUND)
                .param("resource", *resource)
                .param("id", id.clone())
                .param("scope", "")
                .param("hint", ""),
            StoreError::Duplicate {
                resource,
                field,
                value,
            } => GatewayError::new(codes::DUPLICATE_RESOURCE)
                .param(
                    "resource",
                    format!(
                        "{} {resource}",
                        if resource.starts_with(['a', 'e', 'i', 'o', 'u']) {
                            "An"
                        } else {
                            "A"
                        }
                    ),
                )
                .param("field", *field)
                .param("value", value.clone())
                .param("existing", ""),
            StoreError::Invalid { field, reason } => GatewayError::new(codes::VALIDATION_FAILED)
                .param("count", "1")
                .param("summary", format!("{field} {reason}"))
                .field(FieldError {
                    location: "body".into(),
                    pointer: format!("#/{field}"),
                    name: (*field).to_owned(),
                    reason: "invalid".into(),
                    detail: reason.clone(),
                }),
            StoreError::Backend(e) => {
                tracing::error!(target: "candor::store", error = %e, "store failure");
                GatewayError::new(codes::INTERNAL_ERROR)
                    .param("stage", "identity store")
                    .source(crate::error::ErrorSource::Internal)
            }
        }
    }
}

/// Picks up writes to the store by other processes (the `candor accounts ...` commands),
/// once a second; a failed read keeps the current snapshot.
pub(crate) async fn keep_fresh(identity: Arc<Identity>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let identity = identity.clone();
        match tokio::task::spawn_blocking(move || identity.refresh()).await {
            Ok(Ok(true)) => tracing::info!(target: "candor::store", "identity snapshot reloaded"),
            Ok(Err(e)) => {
                tracing::warn!(target: "candor::store", error = %e, "identity refresh failed; keeping the current snapshot")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "candor-store-{}-{}",
            std::process::id(),
            random_token(6)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn accounts_clients_and_keys_round_trip() {
        let dir = temp();
        let id = Identity::open(&dir).unwrap();
        let first_kid = id.snapshot().active_key().unwrap().kid.clone();
        let acct = id
            .add_account(NewAccount {
                id: Some("acme".into()),
                name: "Acme".into(),
                quota_per_day: None,
            })
            .unwrap();
        assert_eq!(acct.status, AccountStatus::Active);
        assert!(matches!(
            id.add_account(NewAccount {
                id: Some("acme".into()),
                name: "Again".into(),
                quota_per_day: None
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
        let other = Identity::open(&dir).unwrap();
        assert_eq!(
            other.snapshot().accounts["acme"].status,
            AccountStatus::Suspended
        );
        other.revoke("jti-1", crate::time::unix_now() + 60).unwrap();
        assert!(id.refresh().unwrap());
        assert!(id.snapshot().revoked.contains_key("jti-1"));
    }
}
