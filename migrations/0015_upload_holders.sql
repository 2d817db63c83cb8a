-- Upload reservations name the process streaming the upload (host, pid and its start time, so that a
-- reused pid is not mistaken for it): a reservation whose process died (kill -9, a crash) is released at
-- the next server start or quota check instead of blocking the owner's quota until it expires. `used` is
-- what the upload has received so far, beside `bytes`, the room it holds ahead: when quota is tight, one
-- owner's parallel uploads are judged on what they received, not on the room they hold, and an upload
-- yields to the owner's older ones (`created`): those that fit are kept whichever arrives first.
ALTER TABLE upload_reservations ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
ALTER TABLE upload_reservations ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE upload_reservations ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE upload_reservations ADD COLUMN started TEXT NOT NULL DEFAULT '';
ALTER TABLE upload_reservations ADD COLUMN created REAL NOT NULL DEFAULT 0;
UPDATE upload_reservations SET used = bytes;
CREATE INDEX upload_reservations_holder ON upload_reservations (host, pid);
