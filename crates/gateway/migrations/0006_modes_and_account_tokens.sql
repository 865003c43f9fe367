-- Configuration-mode overrides set through the admin API: a feature (e.g. sender_groups)
-- configured in a mode below the base level (e.g. machine).
CREATE TABLE mode_overrides (
    feature TEXT NOT NULL,
    mode TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (feature, mode)
);

-- Account tokens (the `TOK:` scheme): a primary and a backup token per account, both valid
-- at once so that either can be rotated while clients use the other. Stored as SHA-256.
CREATE TABLE account_tokens (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    slot TEXT NOT NULL CHECK (slot IN ('primary', 'backup')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (account_id, slot)
);
