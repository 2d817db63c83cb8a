-- Login failures, one row per failure (key, time) instead of one counter per key: the throttle
-- (app/accounts.py) counts only a recent window, so failures are forgotten and strangers cannot lock an
-- account for good. The old counters are dropped (at worst an address may try again a little sooner).
DROP TABLE login_failures;

CREATE TABLE login_failures (
    key         TEXT NOT NULL,            -- 'addr:<address>' or 'user:<name>@<address>'
    at          REAL NOT NULL
);

CREATE INDEX login_failures_key ON login_failures (key, at);

CREATE INDEX login_failures_at ON login_failures (at)
