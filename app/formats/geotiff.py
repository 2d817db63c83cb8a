"""GeoTIFF images read with tifffile (pixels, GeoKeys) and placed on Earth with pyproj: elevation models
(one band, GDAL's nodata shown black) and RGB or multi-band pictures. The footprint is recorded in the
header as longitude/latitude numbers (GeoLonMin ... GeoCentreLat), never as `sky`, which is celestial."""

from __future__ import annotations

import enum
import math
from pathlib import Path

import numpy as np
import pyvips

from app.exceptions import FormatError
from app.formats.base import Plane, Reader, check_size
from app.formats.geo import USER_DEFINED, WKT_CAP, GeoGrid, footprint, geo_grid, metres_per_pixel
from app.formats.tiff import TEXT_CAP, bitpix, kind, lazy_page, open_tiff, reason, shown_bands, tag_header
from app.store.records import HeaderValue

NODATA_TAG = 42113  # GDAL_NODATA: the value of pixels that hold no data, as ASCII text
_MODEL_TAGS = {"ModelPixelScale": 16, "ModelTiepoint": 60, "ModelTransformation": 16}
_LINEAR_UNITS = {"metre": "m", "meter": "m", "foot": "ft"}


class GeoTiffReader(Reader):
    format = "geotiff"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return False  # the GeoKeys may lie anywhere in the file: see claims

    @classmethod
    def claims(cls, path: Path, head: bytes) -> bool:
        return kind(path, head) == "geotiff"

    def __init__(self, path: Path, *, max_pixels: int) -> None:
        super().__init__(path, max_pixels=max_pixels)
        self._tif = open_tiff(path)
        self._page = self._tif.pages.first

    def close(self) -> None:
        self._tif.close()

    def planes(self) -> list[Plane]:
        page = self._page
        width, height = int(page.imagewidth), int(page.imagelength)
        check_size(self.path, "the image", width, height, self.max_pixels)
        header: dict[str, HeaderValue] = {"WIDTH": width, "HEIGHT": height,
                                          "BANDS": int(page.samplesperpixel),
                                          "DTYPE": np.dtype(page.dtype).name}
        header.update(tag_header(page))
        comments: dict[str, str] = {}
        notes = []
        self._geokeys(header, comments)
        nodata = self.nodata()
        if nodata is not None:
            header["GDAL_NODATA"] = nodata
            comments["GDAL_NODATA"] = "pixels of this value hold no data: shown black, not scaled"
        grid = geo_grid(header, width, height)
        if grid is None:
            notes.append(self._unknown(header))
        else:
            self._place(grid, header, comments, width, height)
        pages = self._pages()
        if pages > 1:
            notes.append(f"{pages} pages; page 1 shown")
        if int(page.samplesperpixel) > 1 and not (self._rgb() and int(page.samplesperpixel) in (3, 4)):
            notes.append(f"{page.samplesperpixel} bands; band 1 shown")
        name = str(header.get("DocumentName") or "").strip()
        return [Plane(hdu=0, name=name or self.path.name, width=width, height=height,
                      bitpix=bitpix(page.dtype), header=header, comments=comments,
                      note="; ".join(note for note in notes if note))]

    def _geokeys(self, header: dict[str, HeaderValue], comments: dict[str, str]) -> None:
        """The GeoKeys by name (codes as numbers, their meaning as the comment), the model tags as
        space-separated numbers, and the CRS (EPSG code, name, WKT) when pyproj knows it."""
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            keys = self._tif.geotiff_metadata or {}
        except Exception as error:  # tifffile's parsing of a damaged GeoKey directory
            header["GeoKeyError"] = f"the GeoKey directory cannot be read: {reason(error)}"
            keys = {}
        for name, value in keys.items():
            if name in _MODEL_TAGS:
                flat = np.asarray(value, dtype=float).ravel()[:_MODEL_TAGS[name]]
                header[name] = " ".join(f"{number:.17g}" for number in flat)
            elif isinstance(value, enum.IntEnum):  # a code of the GeoTIFF spec, its meaning as comment
                header[name] = int(value)
                comments[name] = str(value.name)
            elif isinstance(value, bool | int | float):
                header[name] = value
            elif isinstance(value, str) and len(value) <= TEXT_CAP:
                header[name] = value.strip("|").strip()
        model = header.get("GTModelTypeGeoKey")
        code = header.get("ProjectedCSTypeGeoKey") if model == 1 else header.get("GeographicTypeGeoKey")
        if not isinstance(code, int) and model not in (1, 2):
            code = header.get("ProjectedCSTypeGeoKey", header.get("GeographicTypeGeoKey"))
        if not isinstance(code, int) or code in (0, USER_DEFINED):
            return
        header["GeoEPSG"] = code
        try:
            crs = CRS.from_epsg(code)
        except CRSError:
            return
        header["GeoCRSName"] = crs.name
        wkt = crs.to_wkt()
        header["GeoCRSWKT"] = wkt if len(wkt) < WKT_CAP else wkt[:WKT_CAP - 1]
        if len(wkt) >= WKT_CAP:
            comments["GeoCRSWKT"] = f"cut to {WKT_CAP - 1} characters; GeoEPSG names the CRS in full"

    def _unknown(self, header: dict[str, HeaderValue]) -> str:
        """The note of a GeoTIFF that cannot be placed on Earth."""
        code = header.get("GeoEPSG", header.get("ProjectedCSTypeGeoKey", header.get("GeographicTypeGeoKey")))
        if code == USER_DEFINED:
            what = "user-defined (32767) without parameters"
        elif isinstance(code, int) and code:
            what = f"EPSG:{code}, a code pyproj does not know"
        else:
            what = "not given by the GeoKeys"
        if not ("ModelTransformation" in header or "ModelPixelScale" in header):
            return "no ModelPixelScale/ModelTiepoint or ModelTransformation: no map coordinates"
        return f"the coordinate reference system ({what}) is unknown: no map coordinates"

    def _place(self, grid: GeoGrid, header: dict[str, HeaderValue], comments: dict[str, str], width: int,
               height: int) -> None:
        """Footprint in longitude/latitude and the pixel size for the scale bar."""
        placed = footprint(grid, width, height)
        if placed is None:
            header["GeoError"] = "the corners of the image fall outside the CRS's domain: no footprint"
            return
        header.update(placed)
        comments["GeoCentreLon"] = "WGS 84 longitude of the image centre (degrees east)"
        comments["GeoCentreLat"] = "WGS 84 latitude of the image centre (degrees north)"
        crs = grid.crs()
        a, b, _, d, e, _ = grid.affine
        size_x, size_y = math.hypot(a, d), math.hypot(b, e)
        axis = crs.axis_info[0] if crs.axis_info else None
        if crs.is_projected and axis is not None and axis.unit_conversion_factor:
            unit = _LINEAR_UNITS.get(axis.unit_name.lower())
            if unit is None:  # e.g. the US survey foot: in metres, which the readout always understands
                size_x, size_y, unit = (size_x * axis.unit_conversion_factor,
                                        size_y * axis.unit_conversion_factor, "m")
            header.update({"PhysicalSizeX": size_x, "PhysicalSizeY": size_y, "PhysicalSizeXUnit": unit,
                           "PhysicalSizeYUnit": unit})
            comments["PhysicalSizeX"] = f"pixel width in the CRS's linear unit ({axis.unit_name})"
            comments["PhysicalSizeY"] = f"pixel height in the CRS's linear unit ({axis.unit_name})"
        elif crs.is_geographic:
            ground = metres_per_pixel(grid, width, height)
            if ground is not None:
                header.update({"PhysicalSizeX": ground[0], "PhysicalSizeY": ground[1],
                               "PhysicalSizeXUnit": "m", "PhysicalSizeYUnit": "m"})
                comments["PhysicalSizeX"] = ("metres per pixel at the centre latitude (the CRS is "
                                             "geographic, in degrees)")
                comments["PhysicalSizeY"] = comments["PhysicalSizeX"]

    def nodata(self) -> float | None:
        tag = self._page.tags.get(NODATA_TAG)
        if tag is None:
            return None
        text = tag.value.decode("latin-1") if isinstance(tag.value, bytes) else str(tag.value)
        try:
            value = float(text.strip().strip("\x00"))
        except ValueError:
            return None
        return value if not math.isnan(value) else None

    def _rgb(self) -> bool:
        return str(getattr(self._page.photometric, "name", "")) == "RGB"

    def _pages(self) -> int:
        """Pages that are images of their own: not GDAL's overviews (reduced-resolution pages)."""
        count = 0
        for page in self._tif.pages:
            if not int(getattr(page, "subfiletype", 0)) & 1:
                count += 1
        return count

    def pixel_bytes(self) -> int:
        page = self._page
        return int(page.imagewidth) * int(page.imagelength) * int(page.samplesperpixel) * \
            int(np.dtype(page.dtype).itemsize)

    def pixels(self, plane: Plane, index: int = 0) -> pyvips.Image:
        if index:
            raise FormatError(f"{self.path.name}: plane {index + 1} asked of an image with one plane")
        image = lazy_page(self.path, 0, self._page)
        rgb = self._rgb() and image.bands in (3, 4)
        nodata = self.nodata()
        if nodata is not None and rgb:
            # a colour pixel whose bands all hold the nodata value: black, as transparent pixels are shown
            empty = (image[:3] == nodata).bandand()
            image = empty.ifthenelse(0, image)
        shown, _ = shown_bands(image, rgb)
        if nodata is not None and not rgb:
            # NaN: rendered black and left out of the interval, as FITS blanks are
            floating = shown if str(shown.format) in {"float", "double"} else shown.cast("float")
            shown = (shown == nodata).ifthenelse(float("nan"), floating)
        return shown

