-- Requests counted against account quotas, per UTC day; written by the gateway every few
-- seconds and at shutdown so that a restart does not reset a day's count.
CREATE TABLE quota_usage (
    account_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (account_id, day)
);
