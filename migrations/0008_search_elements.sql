-- The search builder: the fields of the search form, defined by administrators. `keywords` is a JSON list
-- (the primary keyword first, then alternates, OR-ed); `options` a JSON object whose fields depend on the
-- type (see app/search/elements.py). Indexes on the keywords of text, number and drop-down elements are
-- created and dropped with the elements (named hkw_<hex of the keyword>).
CREATE TABLE search_elements (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL CHECK (type IN ('text', 'number', 'date', 'select', 'cone')),
    label       TEXT NOT NULL,
    keywords    TEXT NOT NULL DEFAULT '[]',
    help        TEXT NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1,
    position    INTEGER NOT NULL DEFAULT 0,
    options     TEXT NOT NULL DEFAULT '{}',
    created     REAL NOT NULL
);

-- Every header keyword in the catalog and how many images have it, kept with the images (insert and
-- delete), so the search builder lists them without reading every header.
CREATE TABLE header_keywords (
    keyword     TEXT PRIMARY KEY,
    images      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO header_keywords (keyword, images)
    SELECT key, count(*) FROM images, json_each(images.header) GROUP BY key;
