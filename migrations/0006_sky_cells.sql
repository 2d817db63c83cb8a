-- Footprint-aware cone search: every HEALPix cell (order 7, nested; see app/search/footprint.py) that an
-- image's sky footprint touches. A cone query takes the cells of the cone, keeps the images that share one,
-- and checks those exactly. Images without a celestial WCS have no cells and never match. Filled with the
-- image in the same transaction; removed with it.
CREATE TABLE image_cells (
    cell        INTEGER NOT NULL,
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    PRIMARY KEY (cell, image_id)
) WITHOUT ROWID;
CREATE INDEX image_cells_image ON image_cells (image_id);

-- Images catalogued before this migration: their cells are computed at the next start (in Python, which
-- knows HEALPix), a chunk at a time, and the row removed.
CREATE TABLE image_cells_pending (
    image_id    TEXT PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO image_cells_pending (image_id) SELECT id FROM images WHERE sky IS NOT NULL;
