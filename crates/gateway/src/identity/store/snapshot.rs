//! The snapshot the request path reads, and [`Identity`]: the store plus the snapshot in
//! memory, swapped atomically on every write (here or, through the generation counter, by
//! another process).

use super::sqlite::now_rfc3339;
use super::*;
use arc_swap::ArcSwap;
use ring::rand::SystemRandom;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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
    /// Configuration-mode overrides set through the admin API: `(feature, mode)`.
    pub mode_overrides: std::collections::BTreeSet<(String, String)>,
    /// Account tokens (the `TOK:` scheme) by the SHA-256 of the token.
    pub account_tokens: HashMap<String, AccountToken>,
}

impl Snapshot {
    /// The key new tokens are signed with.
    pub fn active_key(&self) -> Option<&SigningKeyRecord> {
        self.signing_keys.iter().find(|k| k.retired_at.is_none())
    }
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
        for (field, q) in [
            ("quota_per_day", new.quota_per_day),
            ("quota_per_month", new.quota_per_month),
        ] {
            // A quota of 0 would refuse every request with a time to retry that never
            // helps: stopping an account's requests is what suspending it is for.
            if q.is_some_and(|q| q < 1) {
                return Err(StoreError::Invalid {
                    field,
                    reason:
                        "must be 1 or more requests (to stop the account's requests, suspend it)"
                            .into(),
                });
            }
        }
        let account = Account {
            id,
            name: new.name,
            status: AccountStatus::Active,
            quota_per_day: new.quota_per_day,
            quota_per_month: new.quota_per_month,
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

    /// Requests counted per account in the `period` numbered `index`.
    pub fn quota_usage(
        &self,
        period: QuotaPeriod,
        index: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.store.quota_usage(period, index)
    }

    /// Records accounts' request counts `(account, index, count)` for `period`.
    pub fn save_quota_usage(
        &self,
        period: QuotaPeriod,
        counts: &[(String, i64, i64)],
    ) -> Result<(), StoreError> {
        self.store.save_quota_usage(period, counts)
    }

    /// Overrides `feature` for `mode` (`on`), or removes the override; whether anything
    /// changed.
    pub fn set_mode_override(
        &self,
        feature: &str,
        mode: &str,
        on: bool,
    ) -> Result<bool, StoreError> {
        let changed = self.store.set_mode_override(feature, mode, on)?;
        self.refresh()?;
        Ok(changed)
    }

    /// Issues a new token in `slot` of account `account_id`, replacing the one there (the
    /// other slot's token stays valid); returns the token, shown once and never stored.
    pub fn issue_account_token(
        &self,
        account_id: &str,
        slot: TokenSlot,
    ) -> Result<String, StoreError> {
        let token = format!("tok_{}", random_token(40));
        self.after_write(
            self.store
                .set_account_token(account_id, slot, &sha256_hex(&token)),
        )?;
        Ok(token)
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
