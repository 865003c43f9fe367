-- API keys: an identifiable id plus a secret part, stored as SHA-256 (keys are random, so a
-- fast hash is enough and keeps the per-request check cheap).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    scopes TEXT NOT NULL,
    expires_at INTEGER,
    allowed_ips TEXT NOT NULL,
    allowed_referers TEXT NOT NULL,
    created_at TEXT NOT NULL
);
