-- Accounts, clients, API keys, signing keys and revocations.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    quota_per_day INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    scopes TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    token_lifetime INTEGER NOT NULL,
    totp_secret TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_pkcs8 BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
);
CREATE TABLE revocations (
    jti TEXT PRIMARY KEY,
    revoked_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('generation', 1);
