-- Images: one row per 2-D image (a raster file, or one image HDU of a FITS file).
CREATE TABLE images (
    id          TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL,
    hdu         INTEGER NOT NULL,
    path        TEXT NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    provenance  TEXT NOT NULL,
    format      TEXT NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    bitpix      INTEGER,
    header      TEXT NOT NULL,          -- JSON object: keyword -> typed value; COMMENT/HISTORY as lists
    comments    TEXT NOT NULL,          -- JSON object: keyword -> card comment
    sky         TEXT,                   -- JSON: centre, corners, pixel scale (celestial WCS only)
    center_ra   REAL,
    center_dec  REAL,
    display     TEXT NOT NULL DEFAULT '{}', -- JSON: scaling applied, pyramid levels
    note        TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    job_id      TEXT NOT NULL DEFAULT '',
    UNIQUE (sha256, hdu)
);
CREATE INDEX images_created ON images (created DESC);
CREATE INDEX images_sky ON images (center_dec, center_ra);

-- Jobs: the ingest queue, shared by every process that uses this catalog.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- path, size and modification time of one version of a file
    path        TEXT NOT NULL,
    owner       TEXT NOT NULL DEFAULT '',
    provenance  TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}',
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    worker      TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    image_ids   TEXT NOT NULL DEFAULT '[]',
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE INDEX jobs_claim ON jobs (state, lease_until, created);
CREATE INDEX jobs_updated ON jobs (updated DESC);
