-- The fleet: every ImageX process (serve, worker, watch, ingest) registers here at start and beats; the
-- monitor lists them and shows a process lost when it stayed silent longer than its lease.
CREATE TABLE processes (
    id          TEXT PRIMARY KEY,       -- also the name it claims jobs under (jobs.worker)
    role        TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    version     TEXT NOT NULL,
    started     REAL NOT NULL,
    last_seen   REAL NOT NULL,
    lease       REAL NOT NULL,          -- seconds of silence after which it counts as lost
    pool_size   INTEGER NOT NULL DEFAULT 0,
    jobs        TEXT NOT NULL DEFAULT '[]', -- JSON: the jobs it runs now, [{"id", "path"}]
    done        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX processes_seen ON processes (last_seen);
