-- The quota decision is written once above the adapters (app/store/uploads.py): an owner's upload
-- reservations are decided one at a time under a lock shared by every process on the catalog
-- (app/store/tables.py `_locked`; a lease whose holder died runs out at `until`), and what an owner's
-- images take is summed from an index holding each content's size, read in content order.
CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    until REAL NOT NULL,
    holder TEXT NOT NULL
);
CREATE INDEX images_content ON images (owner, sha256, size);
