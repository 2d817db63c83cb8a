"""What the HiPS tests share: the fields their surveys are built from and the order they are read at."""

from __future__ import annotations

from app.hips import geometry
from tests.hips.hips_helpers import SCALE

ORDER = geometry.order_for_scale(SCALE)


# (centre RA, centre Dec, rotation): on the equator across RA 0/360, mid-north, near the north pole, south
FIELDS = [(0.02, 0.0, 0.0), (359.99, 45.0, 20.0), (10.0, 89.8, 0.0), (200.0, -60.0, -35.0)]
