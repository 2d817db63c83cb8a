"""HiPS surveys (HiPS 1.0) of the archive's celestial images: geometry.py (orders, tile names, where a tile's
pixels lie), projection.py (one image onto one tile), survey.py (a survey on disk, built and updated),
live.py (the archive's surveys, one per audience, and their update queue)."""
