-- One file's content may be catalogued once per owner: an upload of content that someone else catalogued
-- already gets an image record of its own (sharing the other's files on disk), so the uniqueness of
-- (sha256, hdu) becomes (sha256, hdu, owner). SQLite cannot change a table constraint in place: the table
-- is rebuilt (the migration runner turns foreign keys off around it and checks them before committing;
-- the search elements' keyword indexes are built again after it).
CREATE TABLE images_rebuilt (
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
    header      TEXT NOT NULL,
    comments    TEXT NOT NULL,
    sky         TEXT,
    center_ra   REAL,
    center_dec  REAL,
    display     TEXT NOT NULL DEFAULT '{}',
    note        TEXT NOT NULL DEFAULT '',
    created     REAL NOT NULL,
    job_id      TEXT NOT NULL DEFAULT '',
    visibility  TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'registered', 'public')),
    dates_version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sha256, hdu, owner)
);
INSERT INTO images_rebuilt (id, sha256, hdu, path, name, size, owner, provenance, format, width, height,
    bitpix, header, comments, sky, center_ra, center_dec, display, note, created, job_id, visibility,
    dates_version)
    SELECT id, sha256, hdu, path, name, size, owner, provenance, format, width, height, bitpix, header,
    comments, sky, center_ra, center_dec, display, note, created, job_id, visibility, dates_version
    FROM images;
DROP TABLE images;
ALTER TABLE images_rebuilt RENAME TO images;
CREATE INDEX images_created ON images (created DESC);
CREATE INDEX images_sky ON images (center_dec, center_ra);
CREATE INDEX images_owner ON images (owner, created DESC);
CREATE INDEX images_visibility ON images (visibility, created DESC);
CREATE INDEX images_dates_version ON images (dates_version);
CREATE INDEX images_access ON images (id, visibility, owner, created);
CREATE INDEX images_newest ON images (created DESC, id, visibility, owner);

-- Every place a file's content was found: the image's own path and each copy seen later under another
-- path (a second copy in a batch tree, a second upload by the same owner). Full paths: for administrators.
CREATE TABLE image_locations (
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    recorded    REAL NOT NULL,
    PRIMARY KEY (image_id, path)
) WITHOUT ROWID;
INSERT INTO image_locations (image_id, path, recorded) SELECT id, path, created FROM images;
