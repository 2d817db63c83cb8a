-- Two-phase ingest (app/ingest/pipeline.py): a job first harvests its file (catalog record, footprint,
-- thumbnail: the image is found at once) and ends "harvested"; it is claimed again later to build the
-- pyramids. A harvested job whose image somebody opened meanwhile gets a priority (the time it was asked
-- for) and is claimed before everything else, newest request first. The state's CHECK constraint gains
-- the new state: the table is rebuilt (SQLite's documented way to change a constraint).
CREATE TABLE jobs_new (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- path, size and modification time of one version of a file
    path        TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    provenance  TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}',
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'harvested', 'done', 'failed')),
    worker      TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    image_ids   TEXT NOT NULL DEFAULT '[]',
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    priority    REAL NOT NULL DEFAULT 0
);
INSERT INTO jobs_new (id, key, path, owner, provenance, options, state, worker, lease_until, attempts, error,
                      note, image_ids, created, updated)
    SELECT id, key, path, owner, provenance, options, state, worker, lease_until, attempts, error, note,
           image_ids, created, updated FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_claim ON jobs (state, lease_until, created);
CREATE INDEX jobs_updated ON jobs (updated DESC);
CREATE INDEX jobs_owner ON jobs (owner, state);
CREATE INDEX jobs_next ON jobs (state, priority DESC, created);
