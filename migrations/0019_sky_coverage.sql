-- Footprints from the real pixel coverage (app/sky/coverage.py): an image's `sky` record gains a MOC of
-- the cells its pixels touch and the WCS cards the exact cone test evaluates, and its `image_cells` come
-- from that MOC. Images catalogued before are listed here; at the next start their coverage is computed
-- from their stored header cards (in Python, which knows WCS and HEALPix), a chunk at a time, and their
-- cells replaced. All-sky maps without corners (no `sky` before) are listed by their CTYPE1 card. An
-- image whose stored cards build no WCS keeps its corners, and the cone search tests it on those.
INSERT OR IGNORE INTO image_cells_pending (image_id)
    SELECT id FROM images WHERE sky IS NOT NULL OR json_extract(header, '$.CTYPE1') IS NOT NULL;
