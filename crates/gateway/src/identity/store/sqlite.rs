//! The SQLite store: one file in the data directory, versioned migrations applied in order.

use super::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

/// Versioned schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/0001_identity.sql")),
    (2, include_str!("../../../migrations/0002_api_keys.sql")),
    (3, include_str!("../../../migrations/0003_client_keys.sql")),
    (4, include_str!("../../../migrations/0004_quota_usage.sql")),
    (
        5,
        include_str!("../../../migrations/0005_quota_per_month.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/0006_modes_and_account_tokens.sql"),
    ),
];

/// The SQLite implementation, one file in the data directory.
pub(crate) struct SqliteStore {
    conn: Mutex<Connection>,
}

/// Now, as stored in `created_at` columns.
pub(super) fn now_rfc3339() -> String {
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
            let mut stmt = c.prepare("SELECT id, name, status, quota_per_day, created_at, quota_per_month FROM accounts")?;
            for a in stmt.query_map([], |r| {
                Ok(Account {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    status: AccountStatus::parse(&r.get::<_, String>(2)?),
                    quota_per_day: r.get(3)?,
                    quota_per_month: r.get(5)?,
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
            let mut stmt = c.prepare("SELECT feature, mode FROM mode_overrides")?;
            for o in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                snap.mode_overrides.insert(o?);
            }
            let mut stmt = c.prepare("SELECT account_id, slot, token_hash, created_at FROM account_tokens")?;
            for t in stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(2)?,
                    AccountToken {
                        account_id: r.get(0)?,
                        slot: TokenSlot::parse(&r.get::<_, String>(1)?),
                        created_at: r.get(3)?,
                    },
                ))
            })? {
                let (hash, t) = t?;
                snap.account_tokens.insert(hash, t);
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
                "INSERT INTO accounts (id, name, status, quota_per_day, created_at, quota_per_month) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.id, a.name, a.status.as_str(), a.quota_per_day, a.created_at, a.quota_per_month],
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

    fn quota_usage(
        &self,
        period: QuotaPeriod,
        index: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = match period {
            QuotaPeriod::Day => "SELECT account_id, count FROM quota_usage WHERE day = ?1",
            QuotaPeriod::Month => {
                "SELECT account_id, count FROM quota_usage_month WHERE month = ?1"
            }
        };
        self.with(|c| {
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map(params![index], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn save_quota_usage(
        &self,
        period: QuotaPeriod,
        counts: &[(String, i64, i64)],
    ) -> Result<(), StoreError> {
        let (upsert, prune, keep) = match period {
            QuotaPeriod::Day => (
                "INSERT INTO quota_usage (account_id, day, count) VALUES (?1, ?2, ?3) ON CONFLICT (account_id, day) DO UPDATE SET count = excluded.count",
                "DELETE FROM quota_usage WHERE day < ?1",
                7,
            ),
            QuotaPeriod::Month => (
                "INSERT INTO quota_usage_month (account_id, month, count) VALUES (?1, ?2, ?3) ON CONFLICT (account_id, month) DO UPDATE SET count = excluded.count",
                "DELETE FROM quota_usage_month WHERE month < ?1",
                3,
            ),
        };
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut latest = i64::MIN;
            for (account, index, count) in counts {
                tx.execute(upsert, params![account, index, count])?;
                latest = latest.max(*index);
            }
            if latest > i64::MIN {
                tx.execute(prune, params![latest - keep])?;
            }
            tx.commit()?;
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

    fn set_mode_override(&self, feature: &str, mode: &str, on: bool) -> Result<bool, StoreError> {
        let mut changed = false;
        self.write(|c| {
            let n = if on {
                c.execute(
                    "INSERT OR IGNORE INTO mode_overrides (feature, mode, created_at) VALUES (?1, ?2, ?3)",
                    params![feature, mode, now_rfc3339()],
                )?
            } else {
                c.execute(
                    "DELETE FROM mode_overrides WHERE feature = ?1 AND mode = ?2",
                    params![feature, mode],
                )?
            };
            changed = n > 0;
            Ok(())
        })?;
        Ok(changed)
    }

    fn set_account_token(
        &self,
        account_id: &str,
        slot: TokenSlot,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            let known: Option<String> = c
                .query_row(
                    "SELECT id FROM accounts WHERE id = ?1",
                    params![account_id],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Err(StoreError::NotFound {
                    resource: "Account",
                    id: account_id.to_owned(),
                });
            }
            c.execute(
                "INSERT INTO account_tokens (account_id, slot, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id, slot) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
                params![account_id, slot.as_str(), token_hash, now_rfc3339()],
            )?;
            Ok(())
        })
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
