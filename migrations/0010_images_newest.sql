-- Newest first, with what a permission condition reads: a broad search walks this index from the newest
-- image until a page is found, without reading any image row (see SQLiteStore._select_images).
CREATE INDEX images_newest ON images (created DESC, id, visibility, owner);
