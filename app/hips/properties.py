"""A survey's `properties` file (HiPS 1.0 section 4.4), written after each build or update."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from app.hips import geometry
from app.hips.projection import Member

if TYPE_CHECKING:
    from app.hips.survey import Identity

FORMATS = ("png", "jpeg", "fits")


def properties_text(identity: Identity, order: int, members: Iterable[Member], sky_fraction: float,
                    overlap: str = "top") -> str:
    """The survey's `properties` (HiPS 1.0 section 4.4): `key = value` lines."""
    chosen = list(members)
    centre_ra, centre_dec, fov = _initial_view(chosen)
    released = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    pairs = [
        ("creator_did", identity.did),
        ("obs_title", identity.title),
        ("dataproduct_type", "image"),
        ("hips_version", "1.4"),
        ("hips_builder", "ImageX"),
        ("hips_release_date", released),
        ("hips_status", "public master unclonable" if identity.name == "public" else "private master "
                                                                                      "unclonable"),
        ("hips_frame", "equatorial"),
        ("hips_order", str(order)),
        ("hips_order_min", str(geometry.MIN_ORDER)),
        ("hips_tile_width", str(geometry.WIDTH)),
        ("hips_tile_format", " ".join(FORMATS)),
        ("hips_pixel_bitpix", "-32"),
        ("hips_pixel_scale", f"{geometry.pixel_size_arcsec(order + geometry.TILE_ORDER) / 3600:.6g}"),
        ("hips_initial_ra", f"{centre_ra:.6f}"),
        ("hips_initial_dec", f"{centre_dec:.6f}"),
        ("hips_initial_fov", f"{fov:.6g}"),
        ("moc_sky_fraction", f"{sky_fraction:.6g}"),
        ("dataproduct_subtype", "live"),
        ("obs_description", f"{len(chosen)} image(s) of the archive; where images overlap, "
                            + ("the most recent is on top" if overlap == "top" else "their mean is shown")),
    ]
    return "".join(f"{key:<20} = {value}\n" for key, value in pairs)


def _initial_view(members: list[Member]) -> tuple[float, float, float]:
    """Where a viewer opens: the most recent image's centre, with a field of a few times its size."""
    if not members:
        return 0.0, 0.0, 180.0
    newest = max(members, key=lambda m: m.rank)
    from app.hips.projection import wcs_of, world_of

    wcs = wcs_of(newest)
    if wcs is None:
        return 0.0, 0.0, 180.0
    lon, lat = world_of(wcs, np.array([(newest.width - 1) / 2]), np.array([(newest.height - 1) / 2]))
    size = max(newest.width, newest.height) * newest.scale_arcsec / 3600
    ra, dec = float(lon[0]), float(lat[0])
    if not (math.isfinite(ra) and math.isfinite(dec)):
        return 0.0, 0.0, 180.0
    return ra, dec, min(180.0, max(size * 2, 0.01))
