-- Search results under a user's permission condition: the typed-date and cone conditions yield image ids,
-- and each is checked against owner and visibility, then sorted by created. This index answers all of
-- that without reading the rows (headers and all), so only the page's own rows are read.
CREATE INDEX images_access ON images (id, visibility, owner, created);
