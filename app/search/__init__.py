"""Search: parsing what users type (sky positions, dates) and the geometry behind cone search."""
