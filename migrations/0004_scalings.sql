-- Scalings stored under a name by imagex ingest with a fixed scaling: every image of a batch (a mosaic)
-- is shown with the same limits and stretch, and a later batch can reuse them by name.
CREATE TABLE scalings (
    name        TEXT PRIMARY KEY,
    interval    TEXT NOT NULL,              -- the interval that measured low and high
    stretch     TEXT NOT NULL,
    low         REAL NOT NULL,              -- data values shown black and white
    high        REAL NOT NULL,
    curve       TEXT NOT NULL DEFAULT '[]', -- JSON: histogram equalisation quantiles (histeq only)
    source      TEXT NOT NULL DEFAULT '',   -- the file the limits were measured on
    created     REAL NOT NULL,
    created_by  TEXT NOT NULL DEFAULT ''
);
