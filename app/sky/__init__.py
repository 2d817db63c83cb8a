"""Sky geometry for the viewer: cursor coordinates and mosaic placement."""
