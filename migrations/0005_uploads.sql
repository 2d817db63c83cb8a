-- Bytes held for uploads in progress, so that concurrent uploads by one user (in any process sharing this
-- catalog) cannot together overshoot the quota. A row lives while its body is streamed; a row whose process
-- died is ignored once it expires.
CREATE TABLE upload_reservations (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    expires     REAL NOT NULL
);
CREATE INDEX upload_reservations_owner ON upload_reservations (owner, expires);
