"""Map coordinates of GeoTIFF images, with pyproj: the pixel-to-CRS affine transform and the CRS, rebuilt
from what the GeoTIFF reader recorded in the catalog header, and the footprint in longitude and latitude.
It reads only a header, so a map readout can use it as it is (here, beside the reader, because formats may
not import sky: tests/test_layers.py).

Pixel coordinates here are 0-based and count pixel edges from the top-left corner of the image: (0, 0) is
the top-left corner of the first pixel, (0.5, 0.5) its centre, (width, height) the bottom-right corner."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.store.records import HeaderValue

USER_DEFINED = 32767
WKT_CAP = 4000


@dataclass(frozen=True)
class GeoGrid:
    """x_crs = a * column + b * row + c and y_crs = d * column + e * row + f, in the units of `crs`."""

    affine: tuple[float, float, float, float, float, float]
    epsg: int | None
    wkt: str

    def crs(self) -> Any:
        """The pyproj CRS."""
        from pyproj import CRS

        return CRS.from_epsg(self.epsg) if self.epsg else CRS.from_wkt(self.wkt)

    def to_crs(self, column: float, row: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.affine
        return a * column + b * row + c, d * column + e * row + f

    def to_lonlat(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Longitude and latitude (WGS 84 degrees) of pixel-edge positions."""
        from pyproj import Transformer

        transformer = Transformer.from_crs(self.crs(), "EPSG:4326", always_xy=True)
        xs, ys = zip(*(self.to_crs(column, row) for column, row in points), strict=True)
        lons, lats = transformer.transform(list(xs), list(ys))
        return [(float(lon), float(lat)) for lon, lat in zip(lons, lats, strict=True)]


def numbers(value: HeaderValue | None) -> list[float]:
    """The numbers of a header value written as space-separated text ('30 30 0')."""
    if not isinstance(value, str):
        return []
    try:
        return [float(part) for part in value.split()]
    except ValueError:
        return []


def affine_of(header: Mapping[str, HeaderValue]) -> tuple[float, float, float, float, float, float] | None:
    """The affine transform from ModelTransformation, or from ModelPixelScale with the first
    ModelTiepoint. A tiepoint of a PixelIsPoint raster (GTRasterTypeGeoKey 2) names a pixel's centre."""
    matrix = numbers(header.get("ModelTransformation"))
    if len(matrix) == 16:
        a, b, _, c, d, e, _, f = matrix[:8]
    else:
        scale, tiepoint = numbers(header.get("ModelPixelScale")), numbers(header.get("ModelTiepoint"))
        if len(scale) < 2 or len(tiepoint) < 6 or not scale[0] or not scale[1]:
            return None
        column, row, _, x, y, _ = tiepoint[:6]
        a, b, d, e = scale[0], 0.0, 0.0, -scale[1]
        c, f = x - a * column, y - e * row
    if header.get("GTRasterTypeGeoKey") == 2:
        c, f = c - 0.5 * (a + b), f - 0.5 * (d + e)
    affine = (float(a), float(b), float(c), float(d), float(e), float(f))
    if not all(math.isfinite(value) for value in affine) or a * e - b * d == 0:
        return None
    return affine


def geo_grid(header: Mapping[str, HeaderValue], width: int, height: int) -> GeoGrid | None:
    """What a map readout needs: the affine pixel-to-CRS transform and the CRS (EPSG code, or WKT when the
    CRS has none), from the header the GeoTIFF reader recorded; None when the image has no known CRS or
    no transform. `width` and `height` are checked, not used: the transform holds for any pixel."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if width <= 0 or height <= 0:
        return None
    affine = affine_of(header)
    epsg = header.get("GeoEPSG")
    wkt = header.get("GeoCRSWKT")
    if affine is None:
        return None
    if isinstance(epsg, int) and not isinstance(epsg, bool) and epsg > 0:
        try:
            CRS.from_epsg(epsg)
        except CRSError:
            return None
        return GeoGrid(affine, epsg, "")
    if isinstance(wkt, str) and wkt and len(wkt) < WKT_CAP:
        try:
            CRS.from_wkt(wkt)
        except CRSError:
            return None
        return GeoGrid(affine, None, wkt)
    return None


def footprint(grid: GeoGrid, width: int, height: int) -> dict[str, float] | None:
    """The image's extent in longitude and latitude (its four corners and centre), as the numbers the
    header records: GeoLonMin ... GeoCentreLat. None when the CRS does not place the corners on Earth."""
    points = [(width / 2, height / 2), (0, 0), (width, 0), (width, height), (0, height)]
    try:
        placed = grid.to_lonlat(points)
    except Exception:  # pyproj raises several kinds for coordinates outside a projection's domain
        return None
    if not all(math.isfinite(lon) and math.isfinite(lat) for lon, lat in placed):
        return None
    lons = [lon for lon, _ in placed[1:]]
    lats = [lat for _, lat in placed[1:]]
    return {"GeoLonMin": min(lons), "GeoLonMax": max(lons), "GeoLatMin": min(lats), "GeoLatMax": max(lats),
            "GeoCentreLon": placed[0][0], "GeoCentreLat": placed[0][1]}


def metres_per_pixel(grid: GeoGrid, width: int, height: int) -> tuple[float, float] | None:
    """Ground size of the centre pixel (x, y) in metres along the WGS 84 ellipsoid."""
    from pyproj import Geod

    middle = (width / 2, height / 2)
    try:
        centre, right, below = grid.to_lonlat([middle, (middle[0] + 1, middle[1]),
                                               (middle[0], middle[1] + 1)])
    except Exception:  # see footprint
        return None
    geod = Geod(ellps="WGS84")
    sizes = (geod.inv(*centre, *right)[2], geod.inv(*centre, *below)[2])
    return sizes if all(math.isfinite(size) and size > 0 for size in sizes) else None
