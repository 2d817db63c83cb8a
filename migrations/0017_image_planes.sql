-- The planes of an image with more than one (a FITS cube, a DICOM series, a stack): how many, and the
-- coordinate of each along its axis, as JSON ({"count", "axis", "unit", "values"}); '{}' for one plane.
ALTER TABLE images ADD COLUMN planes TEXT NOT NULL DEFAULT '{}';
