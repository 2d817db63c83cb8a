-- What a compressed upload unfolds into (its pixels as its headers declare them), charged to its owner's
-- quota instead of its file size for as long as they hold an image of that content: a small `.fits.gz` or
-- `.fits.fz` whose pyramids take gigabytes is counted as gigabytes. A row whose content the owner no longer
-- holds counts for nothing (the quota sums join it to the owner's images).
CREATE TABLE upload_charges (
    owner TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (owner, sha256)
);
