-- Monthly request quotas: the limit on the account, the counts per UTC calendar month
-- (months since January 1970), saved like the daily ones.
ALTER TABLE accounts ADD COLUMN quota_per_month INTEGER;
CREATE TABLE quota_usage_month (
    account_id TEXT NOT NULL,
    month INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (account_id, month)
);
