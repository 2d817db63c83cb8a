-- A DICOM series joined into one image from its single-frame files: one member a plane, in plane order,
-- as JSON ([{"path", "sha256", "size", "position", "instance"}, ...]); '[]' for any other image.
ALTER TABLE images ADD COLUMN series TEXT NOT NULL DEFAULT '[]';
