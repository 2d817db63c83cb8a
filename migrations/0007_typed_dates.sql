-- Typed dates: every date-like keyword of an image (ISO strings, date + time keywords, MJD/JD numbers)
-- normalised at ingest to a Modified Julian Date (UTC), so a date range over alternate keywords is one
-- index range scan per keyword. Filled with the image in the same transaction.
CREATE TABLE image_dates (
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    keyword     TEXT NOT NULL,
    mjd         REAL NOT NULL,
    PRIMARY KEY (image_id, keyword)
) WITHOUT ROWID;
CREATE INDEX image_dates_keyword ON image_dates (keyword, mjd);

-- The version of the date rules an image's dates were read with; images catalogued before this
-- migration (0) or under older rules are read again at startup.
ALTER TABLE images ADD COLUMN dates_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX images_dates_version ON images (dates_version);
